"""`orrery trace check`: validate a user's own trace file against its documented format.

One checker per kind (formats in docs/traces/<kind>.md): it reads the file row by row, collects
every bad row with its 1-based file line and column (up to `max_errors`, counting the rest),
and measures what a study would see (rows, span, rates). A file with no bad rows is then also
loaded by the very loader the simulator uses, so "check passes" means "the simulator reads it".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from orrery.core.errors import OrreryInputError, TraceFormatError

KINDS = ("llm", "carbon", "availability", "failures")
LLM_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
EM_TIME = "Datetime (UTC)"
EM_DIRECT = "Carbon Intensity gCO₂eq/kWh (direct)"
CHASE_COLUMNS = ("location", "timestamp", "duration", "value")
AVAIL_IDS = ("id", "client_id", "device")


@dataclass
class Problem:
    line: int | None
    column: str | None
    message: str

    def text(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        if self.column:
            where += f", column {self.column!r}"
        return f"{where}: {self.message}"


@dataclass
class TraceReport:
    """What `check_trace` found: bad rows (capped), their total, and summary figures."""

    path: str
    kind: str
    format: str = ""
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    max_errors: int = 20

    @property
    def ok(self) -> bool:
        return self.n_problems == 0

    def add(self, line: int | None, column: str | None, message: str) -> None:
        self.n_problems += 1
        if len(self.problems) < self.max_errors:
            self.problems.append(Problem(line, column, message))

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.kind} trace" + (f" ({self.format})" if self.format else "")]
        out.append(f"  rows: {self.rows}")
        for k, v in self.summary.items():
            out.append(f"  {k}: {_fmt(v)}")
        out += [f"  note: {n}" for n in self.notes]
        if self.ok:
            out.append("OK: the file matches the documented format")
        else:
            out.append(f"{self.n_problems} bad row(s)" + (
                f", first {len(self.problems)} shown" if self.n_problems > len(self.problems) else "") + ":")
            out += [f"  {p.text()}" for p in self.sorted_problems()]
        return out

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.line or 0))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "format": self.format, "ok": self.ok,
                "rows": self.rows, "summary": self.summary, "notes": self.notes,
                "n_problems": self.n_problems,
                "problems": [p.__dict__ for p in self.sorted_problems()]}

    def error(self) -> TraceFormatError:
        p = self.sorted_problems()[0]
        more = f" ({self.n_problems - 1} more bad row(s) listed above)" if self.n_problems > 1 else ""
        return TraceFormatError(self.path, p.message + more, line=p.line, column=p.column,
                                expected=f"the {self.kind} format of docs/traces/{self.kind}.md")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line, fields) of every non-blank, non-comment CSV record."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        line = 1
        for rec in reader:
            start, line = line, reader.line_num + 1
            if not rec or not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
                continue
            yield start, [x.strip() for x in rec]


def _start(path: Path, rep: TraceReport, empty: str) -> tuple[Iterator[tuple[int, list[str]]], tuple[int, list[str]]] | None:
    """The row iterator and its first row; None (reported) when the file has no rows."""
    it = _rows(path)
    first = next(it, None)
    if first is None:
        rep.add(1, None, empty)
        return None
    return it, first


def _parse_time(text: str) -> datetime | None:
    """An ISO-8601 date-time (any fraction digits, optional Z/offset) as naive UTC, or None."""
    t = text.strip()
    if not t:
        return None
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        frac = t.find(".")  # fromisoformat before 3.11 and some writers disagree on >6 digits
        if frac < 0:
            return None
        end = frac + 1
        while end < len(t) and t[end].isdigit():
            end += 1
        try:
            dt = datetime.fromisoformat(t[:frac] + t[frac:end][:7] + t[end:])
        except ValueError:
            return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _number(rep: TraceReport, line: int, col: str, raw: str, *, integer: bool = False,
            positive: bool = False) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        rep.add(line, col, f"{raw!r} is not a number" if raw else "empty field")
        return None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        rep.add(line, col, f"{raw!r} is {'not positive' if positive else 'negative or not finite'}")
        return None
    if integer and v != int(v):
        rep.add(line, col, f"{raw!r} is not a whole number")
        return None
    return v


def _header(rep: TraceReport, header: list[str], need: tuple[str, ...]) -> dict[str, int] | None:
    idx = {h: i for i, h in enumerate(header)}
    missing = [c for c in need if c not in idx]
    if missing:
        rep.add(1, missing[0], f"header {header} lacks {', '.join(map(repr, missing))}")
        return None
    return idx


def _span(rep: TraceReport, t: np.ndarray, unit: str = "s") -> None:
    if len(t):
        span = float(t[-1] - t[0])
        rep.summary[f"span_{unit}"] = span
        rep.summary["span"] = f"{span / 3600:.1f} h ({span / 86400:.2f} days)"


# ----------------------------------------------------------------------------- llm


def _check_llm(path: Path, rep: TraceReport) -> None:
    rep.format = "Azure LLM inference: TIMESTAMP,ContextTokens,GeneratedTokens"
    started = _start(path, rep, "file is empty (expected a header TIMESTAMP,ContextTokens,GeneratedTokens)")
    if started is None:
        return
    it, first = started
    idx = _header(rep, first[1], LLM_COLUMNS)
    if idx is None:
        return
    ts: list[float] = []
    prompt: list[int] = []
    out: list[int] = []
    t0: datetime | None = None
    prev: tuple[float, str] | None = None
    width = len(first[1])
    for line, rec in it:
        rep.rows += 1
        if len(rec) < width:
            rep.add(line, None, f"{len(rec)} field(s), the header has {width}")
            continue
        raw = rec[idx["TIMESTAMP"]]
        dt = _parse_time(raw)
        p = _number(rep, line, "ContextTokens", rec[idx["ContextTokens"]], integer=True)
        o = _number(rep, line, "GeneratedTokens", rec[idx["GeneratedTokens"]], integer=True)
        if dt is None:
            rep.add(line, "TIMESTAMP", f"unparsable timestamp {raw!r} (expected e.g. '2023-11-16 18:15:46.6805900')")
            continue
        t0 = t0 or dt
        t = (dt - t0).total_seconds()
        if prev is not None and t < prev[0]:
            rep.add(line, "TIMESTAMP", f"{raw!r} is earlier than the previous row's {prev[1]!r} (rows must be in time order)")
        prev = (t, raw)
        if p is not None and o is not None:
            ts.append(t)
            prompt.append(int(p))
            out.append(int(o))
    if not rep.rows:
        rep.add(2, None, "no data rows after the header")
        return
    t = np.asarray(ts)
    if t0 is not None:
        rep.summary["first"] = t0.isoformat(sep=" ")
    _span(rep, t)
    if len(t) > 1 and t[-1] > t[0]:
        rep.summary["mean_rate_rps"] = (len(t) - 1) / float(t[-1] - t[0])
        per_min = np.bincount((t // 60).astype(np.int64))
        rep.summary["peak_rate_rps_1min"] = float(per_min.max()) / 60.0
    if prompt:
        rep.summary["prompt_tokens_mean"] = float(np.mean(prompt))
        rep.summary["output_tokens_mean"] = float(np.mean(out))
        rep.summary["prompt_tokens_max"] = int(np.max(prompt))
        rep.summary["output_tokens_max"] = int(np.max(out))


# ----------------------------------------------------------------------------- carbon


def _check_carbon(path: Path, rep: TraceReport) -> None:
    started = _start(path, rep, "file is empty")
    if started is None:
        return
    it, first = started
    header = first[1]
    if EM_TIME in header:
        rep.format = "Electricity Maps hourly CSV"
        idx = _header(rep, header, (EM_TIME, EM_DIRECT))
        tcol, vcol, interval_s = EM_TIME, EM_DIRECT, 3600.0
    elif all(c in header for c in CHASE_COLUMNS):
        rep.format = "Chase CSV: location,timestamp,duration,value"
        idx = _header(rep, header, CHASE_COLUMNS)
        tcol, vcol, interval_s = "timestamp", "value", None
    else:
        rep.add(1, None, f"unrecognised header {header}; expected an Electricity Maps CSV "
                         f"({EM_TIME!r}, {EM_DIRECT!r}, ...) or location,timestamp,duration,value")
        return
    if idx is None:
        return
    times: list[float] = []
    values: list[float] = []
    seen: dict[float, int] = {}
    t0: datetime | None = None
    for line, rec in it:
        rep.rows += 1
        if len(rec) < len(header):
            rep.add(line, None, f"{len(rec)} field(s), the header has {len(header)}")
            continue
        dt = _parse_time(rec[idx[tcol]])
        v = _number(rep, line, vcol, rec[idx[vcol]])
        if interval_s is None or "duration" in idx:
            d = _number(rep, line, "duration", rec[idx["duration"]], positive=True) if "duration" in idx else None
            if d is not None:
                if interval_s is None:
                    interval_s = d * 60.0
                elif d * 60.0 != interval_s:
                    rep.add(line, "duration", f"{rec[idx['duration']]!r} min differs from the first row's "
                                              f"{interval_s / 60:g} min (one interval length per file)")
        if dt is None:
            rep.add(line, tcol, f"unparsable timestamp {rec[idx[tcol]]!r} (expected ISO 8601)")
            continue
        t0 = t0 or dt
        t = (dt - t0).total_seconds()
        if t in seen:
            rep.add(line, tcol, f"duplicated timestamp {rec[idx[tcol]]!r} (also on line {seen[t]})")
            continue
        seen[t] = line
        if interval_s and abs(t / interval_s - round(t / interval_s)) > 1e-6:
            rep.add(line, tcol, f"{rec[idx[tcol]]!r} is off the {interval_s:g} s grid of the first row")
        if v is not None:
            times.append(t)
            values.append(v)
    if not rep.rows:
        rep.add(2, None, "no data rows after the header")
        return
    t = np.sort(np.asarray(times))
    _span(rep, t)
    if interval_s:
        rep.summary["interval_s"] = interval_s
        if len(t):
            n_gap = int(round((t[-1] - t[0]) / interval_s)) + 1 - len(t)
            if n_gap > 0:
                rep.notes.append(f"{n_gap} missing interval(s): the simulator interpolates them "
                                 "(gaps='interpolate'); pass gaps='error' to refuse")
    if values:
        v = np.asarray(values)
        rep.summary["mean_g_per_kwh"] = float(v.mean())
        rep.summary["min_g_per_kwh"] = float(v.min())
        rep.summary["max_g_per_kwh"] = float(v.max())


# ----------------------------------------------------------------------------- availability


def _check_availability(path: Path, rep: TraceReport) -> None:
    rep.format = "availability intervals: ID,start,end (seconds)"
    started = _start(path, rep, "file is empty (expected a header ID,start,end)")
    if started is None:
        return
    it, first = started
    header = [h.lower() for h in first[1]]
    if len(header) != 3 or header[1:] != ["start", "end"] or header[0] not in AVAIL_IDS:
        rep.add(1, None, f"bad header {first[1]} (expected ID,start,end; the first column may "
                         "also be named client_id or device)")
        return
    per_dev: dict[str, list[tuple[float, float, int]]] = {}
    for line, rec in it:
        rep.rows += 1
        if len(rec) != 3:
            rep.add(line, None, f"{len(rec)} field(s), expected 3: ID,start,end")
            continue
        dev = rec[0]
        if not dev:
            rep.add(line, header[0], "empty device id")
        s = _number(rep, line, "start", rec[1])
        e = _number(rep, line, "end", rec[2])
        if s is None or e is None or not dev:
            continue
        if e <= s:
            rep.add(line, "end", f"end {rec[2]} <= start {rec[1]}")
            continue
        per_dev.setdefault(dev, []).append((s, e, line))
    for ivs in per_dev.values():
        ivs.sort()
        for (s0, e0, l0), (s1, _e1, l1) in zip(ivs, ivs[1:], strict=False):
            if s1 < e0:
                rep.add(l1, "start", f"interval starting at {s1:g} s overlaps the same device's "
                                     f"interval on line {l0} ({s0:g}..{e0:g} s)")
    if not rep.rows:
        rep.add(2, None, "no data rows after the header")
        return
    starts = np.array([s for v in per_dev.values() for s, _, _ in v])
    ends = np.array([e for v in per_dev.values() for _, e, _ in v])
    rep.summary["devices"] = len(per_dev)
    if len(starts):
        span = float(ends.max() - starts.min())
        rep.summary["span_s"] = span
        rep.summary["span"] = f"{span / 3600:.1f} h ({span / 86400:.2f} days)"
        rep.summary["interval_mean_s"] = float((ends - starts).mean())
        rep.summary["available_fraction_mean"] = float((ends - starts).sum() / (span * len(per_dev))) if span > 0 else 0.0
        if span > 0:
            rep.summary["intervals_per_device_per_day"] = len(starts) / len(per_dev) / (span / 86400)


# ----------------------------------------------------------------------------- failures


def _check_failures(path: Path, rep: TraceReport) -> None:
    started = _start(path, rep, "file is empty")
    if started is None:
        return
    it, first = started
    rec0 = first[1]
    if len(rec0) == 3 and rec0[1] in ("add", "remove"):
        _check_events(rep, [first, *it])
    elif len(rec0) == 3 and "-" in rec0[0] and ":" in rec0[1]:
        _check_counts(rep, [first, *it])
    else:
        rep.add(first[0], None, f"unrecognised first line {','.join(rec0)[:60]!r}: expected "
                                "'ms,add|remove,node' events or 'YYYY-MM-DD, HH:MM:SS, count' samples")


def _check_events(rep: TraceReport, rows: list[tuple[int, list[str]]]) -> None:
    rep.format = "node events: ms,add|remove,node (no header)"
    present: set[str] = set()
    last = -math.inf
    adds = removes = peak = 0
    times: list[float] = []
    for line, rec in rows:
        rep.rows += 1
        if len(rec) != 3:
            rep.add(line, None, f"{len(rec)} field(s), expected 3: ms,add|remove,node")
            continue
        ms = _number(rep, line, "ms", rec[0])
        kind, node = rec[1], rec[2]
        if kind not in ("add", "remove"):
            rep.add(line, "kind", f"event kind {kind!r} (expected 'add' or 'remove')")
            continue
        if not node:
            rep.add(line, "node", "empty node name")
            continue
        if ms is None:
            continue
        if ms < last:
            rep.add(line, "ms", f"time {rec[0]} goes backwards (previous {last:g})")
        last = max(last, ms)
        if kind == "add":
            if node in present:
                rep.add(line, "node", f"node {node!r} added twice")
            present.add(node)
            adds += 1
        else:
            if node not in present:
                rep.add(line, "node", f"node {node!r} removed but not present")
            present.discard(node)
            removes += 1
        peak = max(peak, len(present))
        times.append(ms / 1000.0)
    t = np.asarray(times)
    _span(rep, t)
    rep.summary.update({"adds": adds, "removes": removes, "peak_nodes": peak})
    if len(t) > 1 and t[-1] > t[0]:
        rep.summary["removes_per_hour"] = removes / ((t[-1] - t[0]) / 3600)


def _check_counts(rep: TraceReport, rows: list[tuple[int, list[str]]]) -> None:
    rep.format = "instance counts: YYYY-MM-DD, HH:MM:SS, count (no header)"
    t0: datetime | None = None
    last = -math.inf
    counts: list[int] = []
    times: list[float] = []
    for line, rec in rows:
        rep.rows += 1
        if len(rec) != 3:
            rep.add(line, None, f"{len(rec)} field(s), expected 3: date, time, count")
            continue
        try:
            dt = datetime.strptime(f"{rec[0]} {rec[1]}", "%Y-%m-%d %H:%M:%S")
        except ValueError:
            rep.add(line, "date/time", f"bad timestamp {rec[0]!r} {rec[1]!r} (expected YYYY-MM-DD, HH:MM:SS)")
            dt = None
        c = _number(rep, line, "count", rec[2], integer=True)
        if dt is None or c is None:
            continue
        t0 = t0 or dt
        t = (dt - t0).total_seconds()
        if t < last:
            rep.add(line, "date/time", "timestamp goes backwards")
        last = max(last, t)
        times.append(t)
        counts.append(int(c))
    t = np.asarray(times)
    _span(rep, t)
    if counts:
        c = np.asarray(counts)
        rep.summary.update({"count_min": int(c.min()), "count_max": int(c.max()),
                            "count_mean": float(c.mean()),
                            "decreases": int((np.diff(c) < 0).sum())})


# ----------------------------------------------------------------------------- entry point

CHECKERS: dict[str, Callable[[Path, TraceReport], None]] = {
    "llm": _check_llm,
    "carbon": _check_carbon,
    "availability": _check_availability,
    "failures": _check_failures,
}

_LOAD_LIMIT_BYTES = 200_000_000  # larger files are only scanned (the loaders hold them in memory)


def _load_with_simulator(path: Path, kind: str) -> None:
    if kind == "llm":
        from orrery.traces.llm import load_azure_llm as load
    elif kind == "carbon":
        from orrery.traces.carbon import load_carbon_csv as load
    elif kind == "availability":
        from orrery.traces.availability import load_interval_csv as load
    else:
        from orrery.traces.nodes import load_node_trace as load
    load(path)


def check_trace(path: str | Path, kind: str, *, max_errors: int = 20) -> TraceReport:
    """Validate `path` as a `kind` trace; the report lists bad rows with their file lines."""
    if kind not in CHECKERS:
        raise OrreryInputError(f"unknown trace kind {kind!r}; expected one of {', '.join(KINDS)}")
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"trace file not found: {p}")
    rep = TraceReport(str(p), kind, max_errors=max(1, max_errors))
    try:
        CHECKERS[kind](p, rep)
    except UnicodeDecodeError as err:
        rep.add(None, None, f"not UTF-8 text ({err.reason} at byte {err.start})")
    except csv.Error as err:
        rep.add(None, None, f"not a readable CSV: {err}")
    if rep.ok and p.stat().st_size <= _LOAD_LIMIT_BYTES:
        try:
            _load_with_simulator(p, kind)
        except TraceFormatError as err:
            rep.add(err.line, err.column, f"the simulator's loader refuses it: {err}")
        except OrreryInputError as err:
            rep.add(None, None, f"the simulator's loader refuses it: {err}")
    return rep
