"""Resolve user-given data paths, including the `shared:` prefix for the real data files.

Scenarios name data files as plain paths (relative to the current directory) or as
`shared:<name>` (`shared:llm/azure_llm_2023_conv.csv`), so a shipped study can point at the
real traces without a machine-specific location. `shared:NAME` resolves, first hit wins, in
`$ORRERY_DATA`, the project's `../shared/data` (when present) and the user cache
(`orrery data fetch` fills it); see `orrery.traces.datastore`. This module is the one place
that resolution happens.
"""

from __future__ import annotations

from pathlib import Path

from orrery.core.errors import OrreryInputError
from orrery.traces import datastore

SHARED_PREFIX = "shared:"
REPO_ROOT = datastore.REPO_ROOT


def shared_data_dir() -> Path:
    """The first folder `shared:` names are looked up in (see `datastore.search_dirs`)."""
    return datastore.search_dirs()[0][1]


def _shared_name(text: str) -> str:
    rel = text[len(SHARED_PREFIX) :].strip().lstrip("/\\")
    if not rel:
        raise OrreryInputError(f"data path {text!r} names no file after 'shared:'")
    return rel.replace("\\", "/")


def data_path(s: str | Path) -> Path:
    """Absolute path a data path names (`shared:` resolved), whether or not the file exists.

    A `shared:` name found in no folder resolves to where the first folder would hold it (and,
    under ORRERY_AUTO_FETCH=1, is downloaded into the cache first when it is registered).
    """
    text = str(s).strip()
    if not text:
        raise OrreryInputError("data path is empty (expected a file path or 'shared:<path>')")
    if text.startswith(SHARED_PREFIX):
        name = _shared_name(text)
        found = datastore.find(name)
        return found if found is not None else (shared_data_dir() / name).resolve()
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    return path.resolve()


def resolve_data_path(s: str | Path) -> Path:
    """Absolute path of an existing data file; `shared:x/y.csv` is looked up as described above.

    Raises `OrreryInputError` naming the given string, where it was looked for and, for a
    registered file, the command that fetches it, so a missing file fails at load time.
    """
    path = data_path(s)
    text = str(s).strip()
    if not path.is_file():
        if text.startswith(SHARED_PREFIX):
            name = _shared_name(text)
            looked = ", ".join(f"{label} {folder}" for label, folder in datastore.search_dirs())
            raise OrreryInputError(
                f"data file not found: {text!r} (looked in {looked}); {datastore.fetch_hint(name)}"
            )
        raise OrreryInputError(f"data file not found: {text!r} -> {path}")
    return path
