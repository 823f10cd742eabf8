"""Calibrated hardware models: GPU catalog, LLM latency/power, training energy, edge devices."""
