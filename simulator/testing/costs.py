"""Hypothesis strategies and oracles for the costs part of kvfabric (filled in by its owner)."""
