"""Topology builders (networkx) and preset TOML files."""
