"""Plug-in modules: domains or policies defined outside orrery, imported before a study runs.

Named by `--plugin MODULE` options and the `ORRERY_PLUGINS` environment variable (a comma
list). The runner ships the list to every worker; the report imports it to find a plug-in
domain's own plots. Kept apart so the runner and the report need not import each other.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable

from orrery.core.errors import OrreryInputError

PLUGINS_ENV = "ORRERY_PLUGINS"


def plugin_modules(extra: Iterable[str] = ()) -> list[str]:
    """Modules to import before running: `--plugin` options plus $ORRERY_PLUGINS (comma list)."""
    env = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    out: list[str] = []
    for m in [*env, *extra]:
        if m not in out:
            out.append(m)
    return out


def load_plugins(modules: Iterable[str]) -> None:
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as err:
            if err.name and m.startswith(err.name):
                raise OrreryInputError(f"plugin module {m!r} not importable: {err}") from None
            raise
