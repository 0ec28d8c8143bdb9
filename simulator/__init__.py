"""kvfabric's simulator: the engine and its models (network, GPU, KV cache, cost model)."""

__version__ = "0.1.0"
