"""Results store: one Parquet file per run, written atomically, plus the study manifest.

`DIR/runs/<run-id>.parquet` holds the run's primary table; its key-value metadata holds JSON
of the run (id, group, seed, scenario and its hash, metrics, result digest) and each series
table as an Arrow IPC stream, so one file is the whole run. A file is written to a temporary
name in the same folder and renamed into place (`os.replace`), so a killed process leaves
either a whole run or no run, never half of one. Resume keeps every file that reads back and
matches its scenario hash and its inputs' hash (the parameter and data files the run read);
anything else is discarded and re-run. A checksum over the file's metadata (run JSON, series
tables, column names, row count) catches a corrupted footer that Parquet's page checksums miss.

A results folder belongs to one study (and scale) and to one writer at a time: `lock()` takes
an exclusive `flock` on `DIR/.orrery.lock`; file-system failures become `ResultsFolderError`
(bad input, exit status 2) naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from orrery.core.errors import OrreryInputError

META_KEY = b"orrery.run"
SERIES_PREFIX = b"orrery.series."
CHECKSUM_KEY = b"orrery.checksum"
FORMAT_VERSION = 3  # 2: a checksum covers the metadata and series; 3: "group" is the label, "values" the dict
LOCK_NAME = ".orrery.lock"
# what a run writes into a results folder (removed by `clear_outputs`, i.e. `--force`)
OUTPUT_NAMES = ("manifest.json", "summary.csv", "metrics.csv", "metrics.parquet", "report.md", "report.html")


class ResultsFolderError(OrreryInputError):
    """The results folder cannot be used: not a folder, not writable, full, locked, or another study's."""


class CorruptRunError(ValueError):
    """A run file that does not read back whole (checksum mismatch, truncated, not a run file)."""


def fs_error(path: str | Path, action: str, err: OSError) -> ResultsFolderError:
    """A file-system failure as bad input naming the path (disk full, read-only, not a folder)."""
    why = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a path component is a file, not a folder",
        errno.EEXIST: "exists and is not a folder",
    }.get(err.errno or 0, err.strerror or str(err))
    return ResultsFolderError(f"cannot {action} {path}: {why}")


@dataclass
class RunRecord:
    """One stored run, as `read_run` returns it (and as domain `plots` hooks receive it)."""

    run_id: str
    group: str  # the group's label, e.g. "policy=andes,workload.rate_rps=2.0" (as in every table)
    values: dict[str, Any]  # the group's independent-variable values, incl. "policy" (and "case")
    seed: int
    scenario: dict[str, Any]
    metrics: dict[str, float]
    table: pd.DataFrame
    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    scenario_hash: str = ""
    domain: str = ""
    digest: str = ""
    inputs_hash: str = ""  # hash of the parameter and data files the run read


def result_digest(metrics: dict[str, float], table: pd.DataFrame, series: dict[str, pd.DataFrame]) -> str:
    """A content hash of a run's result: equal digests mean bit-identical metrics and tables."""
    h = hashlib.sha256()
    h.update(json.dumps({k: float(v) for k, v in sorted(metrics.items())}, allow_nan=True).encode())
    for name, df in [("__table__", table), *sorted(series.items())]:
        h.update(name.encode())
        h.update(json.dumps([str(c) for c in df.columns]).encode())
        h.update(json.dumps([str(t) for t in df.dtypes]).encode())
        if len(df):
            h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _frame_to_ipc(df: pd.DataFrame) -> bytes:
    t = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return sink.getvalue().to_pybytes()


def _ipc_to_frame(buf: bytes) -> pd.DataFrame:
    with ipc.open_stream(pa.py_buffer(buf)) as r:
        return r.read_all().to_pandas()


def encode_run(
    *,
    run_id: str,
    group: str,
    values: dict[str, Any],
    seed: int,
    scenario: dict[str, Any],
    scenario_hash: str,
    domain: str,
    metrics: dict[str, float],
    table: pd.DataFrame,
    series: dict[str, pd.DataFrame],
    digest: str,
    inputs_hash: str = "",
) -> bytes:
    """The bytes of a run's Parquet file (built where the run ran; written by the driver)."""
    t = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    meta = dict(t.schema.metadata or {})
    meta[META_KEY] = json.dumps(
        {
            "format": FORMAT_VERSION,
            "run_id": run_id,
            "group": group,
            "values": values,
            "seed": seed,
            "scenario": scenario,
            "scenario_hash": scenario_hash,
            "domain": domain,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "series": sorted(series),
            "digest": digest,
            "inputs_hash": inputs_hash,
        },
        allow_nan=True,
    ).encode()
    for name, df in series.items():
        meta[SERIES_PREFIX + name.encode()] = _frame_to_ipc(df)
    meta[CHECKSUM_KEY] = _meta_checksum(meta, t.column_names, t.num_rows).encode()
    t = t.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink, write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def _meta_checksum(meta: dict[bytes, bytes], columns: list[str], num_rows: int) -> str:
    """sha256 over every metadata entry but the checksum, the column names and the row count."""
    h = hashlib.sha256()
    for k in sorted(meta):
        if k != CHECKSUM_KEY:
            h.update(len(k).to_bytes(8, "little") + k + len(meta[k]).to_bytes(8, "little") + meta[k])
    h.update(json.dumps([list(columns), int(num_rows)]).encode())
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never a mix.

    A failure (disk full, read-only folder) removes the temporary file and raises
    `ResultsFolderError` naming the path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise fs_error(path, "write", err) from None


def read_meta(path: str | Path) -> dict[str, Any]:
    """The run's JSON metadata only (fast: reads the footer)."""
    md = pq.read_schema(path).metadata or {}
    if META_KEY not in md:
        raise ValueError(f"{path}: not an orrery run file (no {META_KEY.decode()} metadata)")
    return json.loads(md[META_KEY])


def read_run(path: str | Path) -> RunRecord:
    """Read one run file back: every page checksum and the metadata checksum verified.

    Raises `CorruptRunError` for anything that is not a whole run file."""
    try:
        t = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise CorruptRunError(f"{path}: unreadable run file ({err})") from None
    md = t.schema.metadata or {}
    if META_KEY not in md:
        raise CorruptRunError(f"{path}: not an orrery run file (no {META_KEY.decode()} metadata)")
    if md.get(CHECKSUM_KEY, b"").decode(errors="replace") != _meta_checksum(md, t.column_names, t.num_rows):
        raise CorruptRunError(f"{path}: checksum mismatch (metadata or series corrupted, or an old format)")
    m = json.loads(md[META_KEY])
    if isinstance(m.get("group"), dict):  # format 1 files: "group" held the values, "group_label" the label
        m["values"], m["group"] = m["group"], m.get("group_label", "")
    series = {name: _ipc_to_frame(md[SERIES_PREFIX + name.encode()]) for name in m["series"]}
    table = t.replace_schema_metadata({k: v for k, v in md.items() if k == b"pandas"}).to_pandas()
    return RunRecord(
        run_id=m["run_id"],
        group=m["group"],
        values=m["values"],
        seed=m["seed"],
        scenario=m["scenario"],
        metrics=m["metrics"],
        table=table,
        series=series,
        scenario_hash=m["scenario_hash"],
        domain=m.get("domain", ""),
        digest=m.get("digest", ""),
        inputs_hash=m.get("inputs_hash", ""),
    )


class ResultsStore:
    """A study's results folder: `runs/`, `manifest.json`, `summary.csv`, `plots/`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.plots_dir = self.root / "plots"
        self.manifest_path = self.root / "manifest.json"
        self.summary_path = self.root / "summary.csv"
        self.report_path = self.root / "report.md"

    def prepare(self) -> None:
        """Create `runs/` (a clear error if the path is a file or not writable)."""
        if self.root.exists() and not self.root.is_dir():
            raise ResultsFolderError(f"results folder {self.root} is a file, not a folder; choose another --out")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise fs_error(self.runs_dir, "create the results folder", err) from None
        if not os.access(self.root, os.W_OK | os.X_OK) or not os.access(self.runs_dir, os.W_OK | os.X_OK):
            raise ResultsFolderError(f"cannot write to results folder {self.root}: permission denied")
        for tmp in self.runs_dir.glob(".*.tmp"):  # left by a killed writer (we hold the lock)
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, wait: bool = False, poll_s: float = 0.5) -> Iterator[None]:
        """Hold `DIR/.orrery.lock` (flock, exclusive) while writing; another writer gets a clear
        `ResultsFolderError`, or waits for it with `wait=True`. The kernel drops the lock when
        the holder dies, so a killed run never leaves the folder locked."""
        if self.root.exists() and not self.root.is_dir():
            raise ResultsFolderError(f"results folder {self.root} is a file, not a folder; choose another --out")
        path = self.root / LOCK_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise fs_error(path, "create the lock file", err) from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                        raise ResultsFolderError(
                            f"results folder {self.root} is in use by another orrery run ({holder}); "
                            "wait for it to finish, pass --wait to wait for it, or choose another --out"
                        ) from None
                    time.sleep(poll_s)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the flock

    def check_owner(self, identity: dict[str, Any], force: bool = False) -> None:
        """Refuse a folder that holds another study's results (or scale) unless `force`, which
        removes the old runs and outputs first. `identity`: {"name": ..., "scale": ...}."""
        manifest = self.load_manifest()
        old = manifest.get("study") if isinstance(manifest.get("study"), dict) else None
        has_runs = self.runs_dir.is_dir() and any(self.runs_dir.glob("*.parquet"))
        if old is None and not has_runs and not (self.manifest_path.exists() and not manifest):
            return
        old_id = {"name": old.get("name"), "scale": old.get("scale")} if old else None
        if old_id == identity:
            return
        if not force:
            held = (f"study {old_id['name']!r}" + (f" at scale {old_id['scale']!r}" if old_id["scale"] else "")
                    if old_id else "results of an unknown study (run files without a readable manifest.json)")
            want = f"study {identity['name']!r}" + (f" at scale {identity['scale']!r}" if identity["scale"] else "")
            raise ResultsFolderError(
                f"results folder {self.root} holds {held}, not {want}; choose another --out, "
                "or pass --force to delete the old results and start over"
            )
        self.clear_outputs()

    def clear_outputs(self) -> None:
        """Delete what a run wrote here (runs, plots, summary, manifest, report), nothing else."""
        try:
            for p in [*self.runs_dir.glob("*.parquet"), *self.runs_dir.glob(".*.tmp"), *self.plots_dir.glob("*")]:
                if p.is_file():
                    p.unlink()
            for name in OUTPUT_NAMES:
                (self.root / name).unlink(missing_ok=True)
        except OSError as err:
            raise fs_error(self.root, "clear the old results in", err) from None

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.parquet"

    def write(self, run_id: str, data: bytes) -> Path:
        p = self.run_path(run_id)
        write_atomic(p, data)
        return p

    def finished(self, run_id: str, scenario_hash: str, inputs_hash: str | None = None) -> RunRecord | None:
        """The stored run if it is whole and matches `scenario_hash` (and `inputs_hash`, the
        hash of the parameter and data files it read); else discard it (None)."""
        p = self.run_path(run_id)
        if not p.exists():
            return None
        try:
            rec = read_run(p)
            if (rec.scenario_hash == scenario_hash and rec.run_id == run_id
                    and (inputs_hash is None or rec.inputs_hash == inputs_hash)):
                return rec
        except Exception:  # noqa: BLE001 - any unreadable file is discarded and re-run
            pass
        p.unlink(missing_ok=True)
        return None

    def records(self, skipped: list[str] | None = None) -> list[RunRecord]:
        """Every run file that reads back whole; corrupt ones are listed in `skipped` (when
        given: `path: why`) instead of raising."""
        out = []
        for p in sorted(self.runs_dir.glob("*.parquet")):
            try:
                out.append(read_run(p))
            except CorruptRunError as err:
                if skipped is None:
                    raise
                skipped.append(str(err))
        return out

    def load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {}
        try:
            m = json.loads(self.manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return m if isinstance(m, dict) else {}

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=False, default=str).encode())


# ----------------------------------------------------------------------------- provenance

PROVENANCE_PACKAGES = (
    "orrery-sim", "numpy", "scipy", "simpy", "pandas", "pyarrow", "pydantic", "networkx",
    "matplotlib", "rich", "scikit-learn", "dask", "distributed",
)  # fmt: skip


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_version() -> dict[str, Any]:
    """The git commit (and whether the tree has local changes) or the package version."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            status = subprocess.run(
                ["git", "status", "--porcelain"],
                cwd=repo, capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            return {
                "git_commit": commit.stdout.strip(),
                "dirty": bool(status.stdout.strip()),
                "package_version": _orrery_version(),
            }
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git_commit": None, "dirty": None, "package_version": _orrery_version()}


DISTRIBUTION = "orrery-sim"


def _orrery_version() -> str | None:
    try:
        return importlib_metadata.version(DISTRIBUTION)
    except importlib_metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
