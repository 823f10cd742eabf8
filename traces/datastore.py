"""The real data files: registry, where they are found, checksummed downloads, the user cache.

The registry (`data_registry.json`, shipped in the package, built from the facts in
`../shared/data/upstream.toml` by `scripts/build_data_registry.py`) names every real data file
by its path under the data folder (`llm/azure_llm_2023_conv.csv`) with its upstream repository,
commit, path, URL, sha256 and size, licence and citation, and for the two files published as
pickles the converter that rebuilds them (`traces/convert.py`).

Where `shared:NAME` is found, first hit wins:
  1. `$ORRERY_DATA` (a folder laid out like ../shared/data; `ORRERY_SHARED_DATA` is the older name),
  2. the project's `../shared/data`, when present,
  3. the user cache: `$ORRERY_CACHE_DIR`, else platformdirs' user cache dir for orrery + `/data`.
With `ORRERY_AUTO_FETCH=1` (what `orrery run --fetch` sets) a registered file found nowhere is
downloaded into the cache first.

Downloads go through pooch (streaming, hash check before the file is moved into place, so a
mismatched or cut-short download leaves nothing in the cache). `ORRERY_DATA_MIRROR` replaces
the upstream host for every file: a base URL (`<base>/<repo>/<commit>/<path>`) or a folder laid
out the same way. The Azure LLM traces of 2024 have no published hash: their sha256 is recorded
in the cache (`tofu_hashes.json`) at the first download and checked afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Any

from orrery.core.errors import OrreryInputError
from orrery.traces.convert import DataIntegrityError, convert

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
REGISTRY_FILE = Path(__file__).with_name("data_registry.json")
TOFU_FILE = "tofu_hashes.json"
UPSTREAM_SUBDIR = ".upstream"  # raw upstream bytes of converted files, inside the cache
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

__all__ = [
    "DataFetchError",
    "DataIntegrityError",
    "DataEntry",
    "registry",
    "cache_dir",
    "search_dirs",
    "locate",
    "find",
    "fetch",
    "verify",
    "select",
    "fetch_hint",
    "auto_fetch_enabled",
]


class DataFetchError(OrreryInputError):
    """A data file could not be downloaded (host unreachable, HTTP error, cut short)."""


@dataclass(frozen=True)
class DataEntry:
    """One registered data file (facts from upstream.toml; see the module docstring)."""

    name: str
    repo: str
    commit: str
    path: str
    url: str
    sha256: str | None  # of the file as orrery uses it; None: trust on first use
    bytes: int | None
    upstream_sha256: str | None
    upstream_bytes: int | None
    license: str
    citation: str
    converter: str | None = None
    convert: str | None = None
    approx_bytes: int | None = None
    trust_on_first_use: bool = False

    @property
    def size_bytes(self) -> int | None:
        return self.bytes if self.bytes is not None else self.approx_bytes


@lru_cache(maxsize=1)
def _shipped_registry() -> dict[str, DataEntry]:
    raw = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))["files"]
    return {name: DataEntry(name=name, **e) for name, e in raw.items()}


def registry() -> dict[str, DataEntry]:
    """Every registered data file by name (tests replace this function)."""
    return _shipped_registry()


def entry(name: str) -> DataEntry:
    reg = registry()
    if name not in reg:
        raise OrreryInputError(
            f"unknown data file {name!r}; `orrery data list` shows the {len(reg)} registered files"
        )
    return reg[name]


# ----------------------------------------------------------------------------- where files are


def cache_dir() -> Path:
    """The per-user data cache: `$ORRERY_CACHE_DIR` or platformdirs' cache dir for orrery + /data."""
    env = os.environ.get("ORRERY_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("orrery")) / "data"


def search_dirs() -> list[tuple[str, Path]]:
    """(label, folder) in resolution order; only folders that apply (the cache always does)."""
    out: list[tuple[str, Path]] = []
    env = os.environ.get("ORRERY_DATA") or os.environ.get("ORRERY_SHARED_DATA")
    if env:
        out.append(("$ORRERY_DATA", Path(env).expanduser().resolve()))
    if SHARED_DIR.is_dir():
        out.append(("shared", SHARED_DIR))
    out.append(("cache", cache_dir()))
    return out


def locate(name: str) -> tuple[str, Path] | None:
    """(label, path) of the first folder that holds `name`, or None."""
    for label, folder in search_dirs():
        p = folder / name
        if p.is_file():
            return label, p.resolve()
    return None


def auto_fetch_enabled() -> bool:
    return os.environ.get("ORRERY_AUTO_FETCH", "").strip().lower() in ("1", "true", "yes", "on")


def fetch_hint(name: str) -> str:
    """What to run to get `name` (or why it cannot be fetched)."""
    if name in registry():
        return (f"fetch it with `orrery data fetch {name}` (or run with --fetch / ORRERY_AUTO_FETCH=1)")
    return "it is not a registered data file (`orrery data list` shows those orrery can fetch)"


def find(name: str) -> Path | None:
    """Path of `name` where resolution finds it, downloading it first under ORRERY_AUTO_FETCH."""
    hit = locate(name)
    if hit:
        return hit[1]
    if auto_fetch_enabled() and name in registry():
        return fetch(name)
    return None


# ----------------------------------------------------------------------------- downloads


class _Bar:
    """A rich progress bar with the interface pooch drives (total, update, reset, close)."""

    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task(label, total=None)
        self.progress.start()
        self._total: int | None = None

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value or None
        self.progress.update(self.task, total=self._total)

    def update(self, n: int) -> None:
        self.progress.update(self.task, advance=n)

    def reset(self) -> None:
        self.progress.reset(self.task, total=self._total)

    def close(self) -> None:
        self.progress.stop()


def _source(e: DataEntry, upstream_path: str | None = None) -> tuple[str, bool]:
    """(URL or local file, is_local) the upstream bytes of `e` come from, honouring the mirror."""
    path = upstream_path or e.path
    mirror = os.environ.get("ORRERY_DATA_MIRROR", "").strip()
    if not mirror:
        return e.url, False
    if _URL_RE.match(mirror):
        return f"{mirror.rstrip('/')}/{e.repo}/{e.commit}/{path}", False
    return str(Path(mirror).expanduser().resolve() / e.repo / e.commit / path), True


def _copy_from_folder(url: str, output_file: Any, pooch: Any) -> None:  # noqa: ARG001 - pooch's signature
    """A pooch downloader for a mirror folder: copies the file (pooch checks the hash and moves it)."""
    src = Path(url)
    if not src.is_file():
        raise DataFetchError(f"mirror folder has no file {src} (ORRERY_DATA_MIRROR lays files out as <repo>/<commit>/<path>)")
    with src.open("rb") as fin, open(output_file, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def _retrieve(e: DataEntry, known_sha256: str | None, dest: Path, progress: bool) -> Path:
    """Download `e`'s upstream bytes to `dest` via pooch, checked against `known_sha256`."""
    import pooch
    import requests

    logging.getLogger("pooch").setLevel(logging.WARNING)
    src, local = _source(e)
    bar = _Bar(e.name) if progress and sys.stderr.isatty() and not local else False
    downloader = _copy_from_folder if local else pooch.HTTPDownloader(progressbar=bar, timeout=60)
    known = f"sha256:{known_sha256}" if known_sha256 else None
    where = f"{src} (ORRERY_DATA_MIRROR)" if os.environ.get("ORRERY_DATA_MIRROR") else src
    try:
        out = pooch.retrieve(src, known_hash=known, fname=dest.name, path=dest.parent,
                             downloader=downloader, progressbar=False)
    except OrreryInputError:
        raise
    except ValueError as err:  # pooch: the downloaded bytes' hash differs
        raise DataIntegrityError(
            f"{e.name}: downloaded bytes from {where} do not match the recorded sha256 "
            f"{known_sha256}; refused, nothing was cached ({' '.join(str(err).split())[:200]})"
        ) from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
        raise DataFetchError(f"{e.name}: the download from {where} was cut short ({err}); nothing was "
                             "cached; try again") from None
    except requests.exceptions.HTTPError as err:
        raise DataFetchError(f"{e.name}: {where} answered {err}; nothing was cached") from None
    except requests.exceptions.RequestException as err:
        raise DataFetchError(
            f"{e.name}: cannot download {where}: {type(err).__name__}: {err}; check the network, or "
            "set ORRERY_DATA_MIRROR to a reachable base URL or a folder laid out as <repo>/<commit>/<path>"
        ) from None
    finally:
        if bar:
            bar.close()
    return Path(out)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tofu_path() -> Path:
    return cache_dir() / TOFU_FILE


def tofu_hashes() -> dict[str, dict[str, Any]]:
    p = _tofu_path()
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def _record_tofu(e: DataEntry, path: Path) -> str:
    import pooch

    digest = pooch.file_hash(str(path), alg="sha256")
    table = tofu_hashes()
    table[e.name] = {"sha256": digest, "bytes": path.stat().st_size, "url": e.url}
    _atomic_write(_tofu_path(), (json.dumps(table, indent=1, sort_keys=True) + "\n").encode())
    return digest


def expected_sha256(e: DataEntry) -> str | None:
    """The hash `e` must have: the registry's, or for trust-on-first-use the recorded one."""
    if e.sha256:
        return e.sha256
    rec = tofu_hashes().get(e.name)
    return rec["sha256"] if rec else None


def fetch(name: str, *, progress: bool = True, force: bool = False) -> Path:
    """Download (and convert) registered file `name` into the cache; return its cached path.

    A file already cached with the right hash is not downloaded again (cache hit) unless `force`.
    """
    e = entry(name)
    target = cache_dir() / e.name
    if force:
        target.unlink(missing_ok=True)
        (cache_dir() / UPSTREAM_SUBDIR / e.repo / e.commit / e.path).unlink(missing_ok=True)
    if e.converter:
        if target.is_file() and _sha256(target) == e.sha256:
            return target
        raw_dest = cache_dir() / UPSTREAM_SUBDIR / e.repo / e.commit / e.path
        raw = _retrieve(e, e.upstream_sha256, raw_dest, progress)
        data = convert(e.converter, raw.read_bytes(), e.upstream_sha256 or "", e.name)
        import hashlib

        got = hashlib.sha256(data).hexdigest()
        if got != e.sha256:
            raise DataIntegrityError(f"{e.name}: converted file has sha256 {got}, expected {e.sha256}; "
                                     "not cached (the converter or the upstream bytes changed)")
        _atomic_write(target, data)
        return target
    known = expected_sha256(e)
    out = _retrieve(e, known, target, progress)
    if known is None:
        _record_tofu(e, out)
    return out


def _sha256(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str  # "ok" | "mismatch" | "missing" | "unrecorded"
    where: str  # label of the folder it was found in ("" when missing)
    path: Path | None
    detail: str = ""


def verify(name: str) -> Verdict:
    """Check the file resolution finds for `name` against its recorded sha256."""
    e = entry(name)
    hit = locate(name)
    if hit is None:
        return Verdict(name, "missing", "", None, fetch_hint(name))
    label, path = hit
    want = expected_sha256(e)
    if want is None:
        return Verdict(name, "unrecorded", label, path,
                       "no hash recorded yet (it was not downloaded by orrery); re-fetch to record one")
    got = _sha256(path)
    if got != want:
        return Verdict(name, "mismatch", label, path, f"sha256 {got}, expected {want}")
    return Verdict(name, "ok", label, path)


def select(patterns: list[str]) -> list[str]:
    """Registered names matching each pattern: an exact name, a folder prefix (`fl`), or a glob."""
    reg = registry()
    out: list[str] = []
    for pat in patterns:
        pat = pat.removeprefix("shared:").strip("/")
        hits = [n for n in reg if n == pat or n.startswith(pat + "/") or fnmatch(n, pat)]
        if not hits:
            raise OrreryInputError(
                f"no registered data file matches {pat!r}; `orrery data list` shows the {len(reg)} names"
            )
        out.extend(h for h in sorted(hits) if h not in out)
    return out
