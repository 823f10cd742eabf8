"""File checksums: the one sha256 used by fitted-parameter files, manifests and data checks."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_version(path: str | Path) -> tuple[str, int, int]:
    """(path, mtime in ns, size): a cache key that changes when the file is rewritten."""
    st = Path(path).stat()
    return str(path), st.st_mtime_ns, st.st_size


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
