"""Resolve user-given data paths, including the `shared:` prefix for the shared real data.

Scenarios name trace files as plain paths (relative to the current directory) or as
`shared:<sub/path>`, meaning `<repo>/../shared/data/<sub/path>`, so a shipped study can point at
the real traces without hard-coding a machine-specific location. `ORRERY_SHARED_DATA`
overrides where `shared:` points (e.g. on a cluster with the data elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from orrery.sim.errors import OrreryInputError

SHARED_PREFIX = "shared:"
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Where `shared:` paths point: `$ORRERY_SHARED_DATA` or `<repo>/../shared/data`."""
    env = os.environ.get("ORRERY_SHARED_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def data_path(s: str | Path) -> Path:
    """Absolute path a data path names (`shared:` resolved), whether or not the file exists."""
    text = str(s).strip()
    if not text:
        raise OrreryInputError("data path is empty (expected a file path or 'shared:<path>')")
    if text.startswith(SHARED_PREFIX):
        rel = text[len(SHARED_PREFIX) :].lstrip("/\\")
        if not rel:
            raise OrreryInputError(f"data path {text!r} names no file after 'shared:'")
        path = shared_data_dir() / rel
    else:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
    return path.resolve()


def resolve_data_path(s: str | Path) -> Path:
    """Absolute path of an existing data file; `shared:x/y.csv` means the shared data folder.

    Raises `OrreryInputError` naming both the given string and the resolved path if the file
    is missing, so a typo in a scenario fails at load time rather than mid-run.
    """
    path = data_path(s)
    text = str(s).strip()
    if not path.is_file():
        where = (
            f" (shared data folder: {shared_data_dir()})" if text.startswith(SHARED_PREFIX) else ""
        )
        raise OrreryInputError(f"data file not found: {text!r} -> {path}{where}")
    return path
