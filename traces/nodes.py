"""Node-availability traces (spot preemptions, failures) normalised to one event schema.

Schema (`NodeTrace.events`, a DataFrame sorted by time, stable within a timestamp):
    time_s (float, from the start of the trace), kind ("add" | "remove"), node (str)

Sources:
- `ms,add|remove,nodeN` CSVs (Bamboo / Oobleck artifacts, `../shared/data/failures/spot_*.csv`);
- `date, time, count` instance counts (Bamboo's GCP trace, `gcp_a100_spot_count_2021-12.txt`):
  a rising count adds fresh nodes, a falling count removes the most recently added ones (a
  deterministic choice: the file says how many, not which);
- `synthetic_trace(...)`: a seeded generator (per-interval add / remove probabilities), the
  embedded default, so shipped studies run without any data file. With `p_remove=1, p_add=0`
  it reproduces the shape of Oobleck's synthetic traces (one node lost per interval).

Malformed files raise `TraceFormatError` naming the file, line, column and what was expected.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from orrery.core.errors import TraceFormatError

KINDS = ("add", "remove")


@dataclass(frozen=True)
class NodeTrace:
    """A node-availability trace; `events` follows the module's schema."""

    events: pd.DataFrame
    source: str

    @property
    def duration_s(self) -> float:
        return float(self.events["time_s"].iloc[-1]) if len(self.events) else 0.0

    def max_nodes(self) -> int:
        return int(self.node_counts()["nodes"].max()) if len(self.events) else 0

    def node_counts(self) -> pd.DataFrame:
        """Number of nodes present after each event (time_s, nodes)."""
        step = np.where(self.events["kind"].to_numpy() == "add", 1, -1)
        return pd.DataFrame({"time_s": self.events["time_s"].to_numpy(), "nodes": np.cumsum(step)})


def _validate(rows: list[tuple[float, str, str, int]], path: str) -> pd.DataFrame:
    """Check membership consistency (no double add, no remove of an absent node)."""
    present: set[str] = set()
    last_t = -np.inf
    for t, kind, node, line in rows:
        if t < last_t:
            raise TraceFormatError(path, f"time {t} goes backwards (previous {last_t})",
                                   line=line, column="time", expected="non-decreasing times")
        last_t = t
        if kind == "add":
            if node in present:
                raise TraceFormatError(path, f"node {node!r} added twice", line=line,
                                       column="node", expected="add of an absent node")
            present.add(node)
        else:
            if node not in present:
                raise TraceFormatError(path, f"node {node!r} removed but not present", line=line,
                                       column="node", expected="remove of a present node")
            present.discard(node)
    return pd.DataFrame({
        "time_s": np.array([r[0] for r in rows], dtype=float),
        "kind": np.array([r[1] for r in rows], dtype=object),
        "node": np.array([r[2] for r in rows], dtype=object),
    })


def load_event_csv(path: str | Path) -> NodeTrace:
    """Load an `ms,add|remove,nodeN` CSV (no header; blank lines and `#` comments skipped)."""
    p = Path(path)
    rows: list[tuple[float, str, str, int]] = []
    with p.open(newline="") as f:
        for lineno, rec in enumerate(csv.reader(f), start=1):
            if not rec or not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
                continue
            if len(rec) != 3:
                raise TraceFormatError(p, f"{len(rec)} fields", line=lineno,
                                       expected="3 fields: ms,add|remove,node")
            ms_txt, kind, node = (x.strip() for x in rec)
            try:
                ms = float(ms_txt)
            except ValueError:
                raise TraceFormatError(p, f"time {ms_txt!r} is not a number", line=lineno,
                                       column="ms", expected="milliseconds as a number") from None
            if not np.isfinite(ms) or ms < 0:
                raise TraceFormatError(p, f"time {ms_txt!r} is negative or not finite",
                                       line=lineno, column="ms", expected="milliseconds >= 0")
            if kind not in KINDS:
                raise TraceFormatError(p, f"event kind {kind!r}", line=lineno, column="kind",
                                       expected="'add' or 'remove'")
            if not node:
                raise TraceFormatError(p, "empty node name", line=lineno, column="node",
                                       expected="a node name such as node7")
            rows.append((ms / 1000.0, kind, node, lineno))
    if not rows:
        raise TraceFormatError(p, "no events", expected="at least one 'ms,add,node' line")
    return NodeTrace(_validate(rows, str(p)), str(p))


def load_count_file(path: str | Path) -> NodeTrace:
    """Load a `date, time, count` instance-count file into add/remove events."""
    p = Path(path)
    samples: list[tuple[float, int, int]] = []
    t0: datetime | None = None
    with p.open() as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = [x.strip() for x in line.split(",")]
            if len(parts) != 3:
                raise TraceFormatError(p, f"{len(parts)} fields", line=lineno,
                                       expected="3 fields: YYYY-MM-DD, HH:MM:SS, count")
            try:
                ts = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y-%m-%d %H:%M:%S")
            except ValueError:
                raise TraceFormatError(p, f"bad timestamp {parts[0]!r} {parts[1]!r}", line=lineno,
                                       column="date/time", expected="YYYY-MM-DD, HH:MM:SS") from None
            try:
                count = int(parts[2])
            except ValueError:
                raise TraceFormatError(p, f"count {parts[2]!r} is not an integer", line=lineno,
                                       column="count", expected="a non-negative integer") from None
            if count < 0:
                raise TraceFormatError(p, f"negative count {count}", line=lineno, column="count",
                                       expected="a non-negative integer")
            t0 = t0 or ts
            t = (ts - t0).total_seconds()
            if samples and t < samples[-1][0]:
                raise TraceFormatError(p, "timestamp goes backwards", line=lineno,
                                       column="date/time", expected="non-decreasing timestamps")
            samples.append((t, count, lineno))
    if not samples:
        raise TraceFormatError(p, "no samples", expected="lines 'YYYY-MM-DD, HH:MM:SS, count'")
    rows: list[tuple[float, str, str, int]] = []
    alive: list[str] = []
    next_id = 1
    for t, count, lineno in samples:
        while len(alive) < count:
            name = f"node{next_id}"
            next_id += 1
            alive.append(name)
            rows.append((t, "add", name, lineno))
        while len(alive) > count:
            rows.append((t, "remove", alive.pop(), lineno))
    return NodeTrace(_validate(rows, str(p)), str(p))


def sniff_format(path: str | Path) -> str:
    """'events' or 'count' from the first non-blank line."""
    p = Path(path)
    with p.open() as f:
        for raw in f:
            line = raw.strip()
            if line and not line.startswith("#"):
                parts = [x.strip() for x in line.split(",")]
                if len(parts) == 3 and parts[1] in KINDS:
                    return "events"
                if len(parts) == 3 and "-" in parts[0] and ":" in parts[1]:
                    return "count"
                raise TraceFormatError(p, f"unrecognised first line {line[:60]!r}", line=1,
                                       expected="'ms,add|remove,node' or 'YYYY-MM-DD, HH:MM:SS, count'")
    raise TraceFormatError(p, "file is empty", expected="a node event or count trace")


def load_node_trace(path: str | Path, fmt: str = "auto") -> NodeTrace:
    """Load either format; `fmt` is 'auto', 'events' or 'count'."""
    if fmt == "auto":
        fmt = sniff_format(path)
    if fmt == "events":
        return load_event_csv(path)
    if fmt == "count":
        return load_count_file(path)
    raise ValueError(f"unknown trace format {fmt!r}; expected 'auto', 'events' or 'count'")


def synthetic_trace(
    *,
    n_initial: int = 30,
    interval_s: float = 3600.0,
    n_intervals: int = 15,
    p_remove: float = 1.0,
    p_add: float = 0.0,
    n_min: int = 1,
    n_max: int | None = None,
    rng: np.random.Generator | None = None,
    seed: int = 0,
) -> NodeTrace:
    """Seeded synthetic trace: all nodes at t=0, then at each interval boundary remove one
    random node with probability `p_remove` (never below `n_min`) and add a fresh one with
    probability `p_add` (never above `n_max`)."""
    if n_initial < 1 or interval_s <= 0 or n_intervals < 0:
        raise ValueError("need n_initial >= 1, interval_s > 0, n_intervals >= 0")
    if not (0 <= p_remove <= 1 and 0 <= p_add <= 1):
        raise ValueError("p_remove and p_add must be probabilities")
    g = rng if rng is not None else np.random.default_rng(seed)
    cap = n_max if n_max is not None else n_initial
    alive = [f"node{i + 1}" for i in range(n_initial)]
    rows = [(0.0, "add", n, 0) for n in alive]
    next_id = n_initial + 1
    for k in range(1, n_intervals + 1):
        t = k * interval_s
        u_remove, u_add, u_pick = g.random(3)
        if u_remove < p_remove and len(alive) > n_min:
            rows.append((t, "remove", alive.pop(int(u_pick * len(alive))), 0))
        if u_add < p_add and len(alive) < cap:
            name = f"node{next_id}"
            next_id += 1
            alive.append(name)
            rows.append((t, "add", name, 0))
    return NodeTrace(_validate(rows, "<synthetic>"), "synthetic")
