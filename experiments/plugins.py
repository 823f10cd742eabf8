"""Plug-ins: third-party policies and domains, and where each registered policy came from.

A plug-in is a module that registers policies (`@register(domain, name)`) or domains
(`register_domain(...)`) when imported. orrery imports:

- every entry point of the group `orrery.plugins` of the installed distributions
  (`importlib.metadata`; a `module:function` entry point is imported and then called), once per
  process; set ORRERY_NO_ENTRY_POINTS=1 to skip them (e.g. to rule out a broken plug-in);
- the modules named by `--plugin MODULE` (repeatable) and $ORRERY_PLUGINS (comma list).

A plug-in published as a distribution declares, in its pyproject.toml:

    [project.entry-points."orrery.plugins"]
    my_policies = "my_package.orrery_plugin"

`orrery list` shows each policy's origin: built in, an entry point (with its distribution and
version) or a `--plugin` module. The runner ships the module list to every worker; the report
imports it to find a plug-in domain's own plots. Kept apart so the runner and the report need
not import each other.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from orrery.core.errors import OrreryInputError

GROUP = "orrery.plugins"
PLUGINS_ENV = "ORRERY_PLUGINS"
NO_ENTRY_POINTS_ENV = "ORRERY_NO_ENTRY_POINTS"
BUILTIN = "built-in"

_SOURCES: dict[str, str] = {}  # module (prefix) -> where it came from
_FAILED: dict[str, str] = {}  # entry point -> error
_ENTRY_POINTS_LOADED = False


def plugin_modules(extra: Iterable[str] = ()) -> list[str]:
    """Modules to import before running: `--plugin` options plus $ORRERY_PLUGINS (comma list)."""
    env = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    out: list[str] = []
    for m in [*env, *extra]:
        if m not in out:
            out.append(m)
    return out


def load_entry_points() -> dict[str, str]:
    """Import every `orrery.plugins` entry point once per process; returns {name: origin}.

    A plug-in that fails to load is reported (a warning, and in `orrery list`) and skipped: a
    broken third-party package must not stop orrery.
    """
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED or os.environ.get(NO_ENTRY_POINTS_ENV) == "1":
        return {}
    _ENTRY_POINTS_LOADED = True
    loaded = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        who = f"{dist.name} {dist.version}" if dist is not None else "an installed distribution"
        origin = f"entry point {ep.name!r} ({who})"
        module = ep.value.partition(":")[0].strip()
        _SOURCES.setdefault(module, origin)
        try:
            obj = ep.load()
            if ":" in ep.value and callable(obj):
                obj()  # a `module:function` entry point: the function registers
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            _FAILED[ep.name] = f"{type(err).__name__}: {err}"
            warnings.warn(f"orrery plug-in {origin} failed to load: {err!r}", stacklevel=2)
            continue
        loaded[ep.name] = origin
    return loaded


def load_plugins(modules: Iterable[str]) -> None:
    """Entry-point plug-ins (once), then the named modules (`--plugin`, $ORRERY_PLUGINS)."""
    load_entry_points()
    env = set(m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))
    for m in modules:
        _SOURCES.setdefault(m, f"${PLUGINS_ENV}" if m in env else f"--plugin {m}")
        try:
            importlib.import_module(m)
        except ImportError as err:
            if err.name and m.startswith(err.name):
                raise OrreryInputError(f"plugin module {m!r} not importable: {err}") from None
            raise


def origin_of(obj: Any) -> str:
    """Where a registered policy (class) or domain came from: built-in, an entry point or a module."""
    module = getattr(obj, "__module__", "") or ""
    if module == "orrery" or module.startswith("orrery."):
        return BUILTIN
    best = ""
    for src in _SOURCES:
        if (module == src or module.startswith(src + ".")) and len(src) > len(best):
            best = src
    return _SOURCES[best] if best else f"module {module}"


def failed_plugins() -> dict[str, str]:
    """Entry points that failed to load: name -> error."""
    return dict(_FAILED)
