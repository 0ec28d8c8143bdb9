"""Hypothesis strategies and oracles for the traces part of kvfabric (filled in by its owner)."""
