"""Workloads: the request trace schema, real-trace loaders, generators, sparse selection, spans."""
