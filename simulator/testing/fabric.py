"""Hypothesis strategies and oracles for the fabric part of kvfabric (filled in by its owner)."""
