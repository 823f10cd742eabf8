"""Foundations every layer may import: the error family, the strict config base, file hashing.

`orrery.core` imports nothing else from orrery, so traces, workloads, hwmodels, policies, sim,
realbackend and experiments can all raise the same `OrreryInputError` family (CLI exit 2).
"""
