"""Results store: one Parquet file per run, written atomically, plus the study manifest.

`DIR/runs/<run-id>.parquet` holds the run's primary table; its key-value metadata holds JSON
of the run (id, group, seed, scenario and its hash, metrics, result digest) and each series
table as an Arrow IPC stream, so one file is the whole run. A file is written to a temporary
name in the same folder and renamed into place (`os.replace`), so a killed process leaves
either a whole run or no run, never half of one. Resume keeps every file that reads back and
matches its scenario hash; anything else is discarded and re-run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

META_KEY = b"orrery.run"
SERIES_PREFIX = b"orrery.series."
FORMAT_VERSION = 1


@dataclass
class RunRecord:
    """One stored run, as `read_run` returns it (and as domain `plots` hooks receive it)."""

    run_id: str
    group: dict[str, Any]  # independent-variable values, incl. "policy" (and "case")
    seed: int
    scenario: dict[str, Any]
    metrics: dict[str, float]
    table: pd.DataFrame
    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    scenario_hash: str = ""
    group_label: str = ""
    domain: str = ""
    digest: str = ""


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
    group: dict[str, Any],
    group_label: str,
    seed: int,
    scenario: dict[str, Any],
    scenario_hash: str,
    domain: str,
    metrics: dict[str, float],
    table: pd.DataFrame,
    series: dict[str, pd.DataFrame],
    digest: str,
) -> bytes:
    """The bytes of a run's Parquet file (built where the run ran; written by the driver)."""
    t = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    meta = dict(t.schema.metadata or {})
    meta[META_KEY] = json.dumps(
        {
            "format": FORMAT_VERSION,
            "run_id": run_id,
            "group": group,
            "group_label": group_label,
            "seed": seed,
            "scenario": scenario,
            "scenario_hash": scenario_hash,
            "domain": domain,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "series": sorted(series),
            "digest": digest,
        },
        allow_nan=True,
    ).encode()
    for name, df in series.items():
        meta[SERIES_PREFIX + name.encode()] = _frame_to_ipc(df)
    t = t.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink, write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The run's JSON metadata only (fast: reads the footer)."""
    md = pq.read_schema(path).metadata or {}
    if META_KEY not in md:
        raise ValueError(f"{path}: not an orrery run file (no {META_KEY.decode()} metadata)")
    return json.loads(md[META_KEY])


def read_run(path: str | Path) -> RunRecord:
    """Read one run file back (every page checksum verified)."""
    t = pq.read_table(path, page_checksum_verification=True)
    md = t.schema.metadata or {}
    if META_KEY not in md:
        raise ValueError(f"{path}: not an orrery run file (no {META_KEY.decode()} metadata)")
    m = json.loads(md[META_KEY])
    series = {name: _ipc_to_frame(md[SERIES_PREFIX + name.encode()]) for name in m["series"]}
    table = t.replace_schema_metadata({k: v for k, v in md.items() if k == b"pandas"}).to_pandas()
    return RunRecord(
        run_id=m["run_id"],
        group=m["group"],
        seed=m["seed"],
        scenario=m["scenario"],
        metrics=m["metrics"],
        table=table,
        series=series,
        scenario_hash=m["scenario_hash"],
        group_label=m.get("group_label", ""),
        domain=m.get("domain", ""),
        digest=m.get("digest", ""),
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
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.runs_dir.glob(".*.tmp"):  # left by a killed writer
            tmp.unlink(missing_ok=True)

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.parquet"

    def write(self, run_id: str, data: bytes) -> Path:
        p = self.run_path(run_id)
        write_atomic(p, data)
        return p

    def finished(self, run_id: str, scenario_hash: str) -> RunRecord | None:
        """The stored run if it is whole and matches `scenario_hash`; else discard it (None)."""
        p = self.run_path(run_id)
        if not p.exists():
            return None
        try:
            rec = read_run(p)
            if rec.scenario_hash == scenario_hash and rec.run_id == run_id:
                return rec
        except Exception:  # noqa: BLE001 - any unreadable file is discarded and re-run
            pass
        p.unlink(missing_ok=True)
        return None

    def records(self) -> list[RunRecord]:
        return [read_run(p) for p in sorted(self.runs_dir.glob("*.parquet"))]

    def load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {}
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=False, default=str).encode())


# ----------------------------------------------------------------------------- provenance

PROVENANCE_PACKAGES = (
    "orrery", "numpy", "scipy", "simpy", "pandas", "pyarrow", "pydantic", "networkx",
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


def _orrery_version() -> str | None:
    try:
        return importlib_metadata.version("orrery")
    except importlib_metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
