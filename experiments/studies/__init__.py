"""Shipped studies (`*.toml`, package data): `orrery run <name>` resolves `<name>.toml` here."""
