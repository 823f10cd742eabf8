"""Open tables of a study's results, readable without orrery (DuckDB, R, Excel, pandas).

- `DIR/metrics.parquet` and `DIR/metrics.csv`: long form, one row per run x metric, with
  `run_id, study, group, policy, <every independent variable as its own column>, [case], seed,
  metric, value`; `summary.csv` is these values aggregated per group and metric.
- `DIR/series/<name>.parquet`: every run's series `<name>` stacked, with the same identifying
  columns in front (`run_id, study, group, policy, <variables>, [case], seed`);
  `DIR/series/_table.parquet`: the runs' primary tables (one row per request, job, ...).

A value column of mixed types (a variable that is a number in one group and text in another,
or a list) is written as text (JSON), so every file has one type per column.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orrery.experiments.description import StudyDescription
from orrery.experiments.store import write_atomic

PRIMARY_TABLE = "_table"
SERIES_DIR = "series"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _column(values: list[Any]) -> list[Any]:
    """One type per column: numbers (None -> NaN), text, booleans, or JSON text for the rest."""
    present = [v for v in values if v is not None]
    if all(_is_num(v) for v in present):
        return [math.nan if v is None else float(v) if isinstance(v, float) else v for v in values]
    if all(isinstance(v, str) for v in present) or all(isinstance(v, bool) for v in present):
        return values
    return [None if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values]


def id_columns(study: StudyDescription) -> list[str]:
    """Identifying columns of every open table, in order."""
    cols = ["run_id", "study", "group", "policy"]
    cols += [v for v in study.variables if v != "policy"]
    if study.cases:
        cols.append("case")
    return [*cols, "seed"]


def _ids(study: StudyDescription, r: Any) -> dict[str, Any]:
    out = {"run_id": r.run_id, "study": study.name, "group": r.group,
           "policy": r.values.get("policy", r.scenario.get("policy"))}  # fmt: skip
    for v in study.variables:
        if v != "policy":
            out[v] = r.values.get(v)
    if study.cases:
        out["case"] = r.values.get("case")
    out["seed"] = r.seed
    return out


def metrics_frame(study: StudyDescription, records: Sequence[Any]) -> pd.DataFrame:
    """The long-form metrics table (every metric each run reported, not only the studied ones)."""
    cols = id_columns(study)
    rows: dict[str, list[Any]] = {c: [] for c in [*cols, "metric", "value"]}
    for r in records:
        ids = _ids(study, r)
        for m, v in r.metrics.items():
            for c in cols:
                rows[c].append(ids[c])
            rows["metric"].append(m)
            rows["value"].append(float(v))
    return pd.DataFrame({c: _column(v) if c in cols else v for c, v in rows.items()})


def stacked(study: StudyDescription, records: Sequence[Any], name: str) -> pd.DataFrame:
    """Series `name` (or the primary table, `PRIMARY_TABLE`) of every run, stacked."""
    cols = id_columns(study)
    parts = []
    for r in records:
        df = r.table if name == PRIMARY_TABLE else (r.series or {}).get(name)
        if df is None or not len(df):
            continue
        df = df.reset_index(drop=True)
        clash = [c for c in df.columns if c in cols]
        df = df.rename(columns={c: f"{c}_" for c in clash})  # the series' own column, kept
        ids = _ids(study, r)
        front = pd.DataFrame({c: _column([ids[c]] * len(df)) for c in cols})
        parts.append(pd.concat([front, df], axis=1))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    for c in cols:  # a variable may be a number in one run and text in another
        out[c] = _column(out[c].tolist())
    return out


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def write_tables(root: Path, study: StudyDescription, records: Sequence[Any]) -> list[Path]:
    """metrics.parquet, metrics.csv and series/<name>.parquet under `root`; returns the paths."""
    root = Path(root)
    written = []
    m = metrics_frame(study, records)
    write_atomic(root / "metrics.parquet", _parquet_bytes(m))
    write_atomic(root / "metrics.csv", m.to_csv(index=False).encode())
    written += [root / "metrics.parquet", root / "metrics.csv"]
    series_dir = root / SERIES_DIR
    names = sorted({n for r in records for n in (r.series or {})})
    for old in series_dir.glob("*.parquet") if series_dir.is_dir() else []:
        if old.stem not in {*names, PRIMARY_TABLE}:
            old.unlink()  # a series no run of this study has any more
    for name in [PRIMARY_TABLE, *names]:
        df = stacked(study, records, name)
        p = series_dir / f"{_SAFE.sub('-', name)}.parquet"
        write_atomic(p, _parquet_bytes(df))
        written.append(p)
    return written
