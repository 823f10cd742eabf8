"""Fault-tolerant pipeline training policies: Varuna, Bamboo, Oobleck."""
