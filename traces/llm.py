"""Loaders for LLM request traces: the Azure LLM inference trace and ShareGPT length stats.

Both return plain numpy arrays (read-only) so the serving simulator and the workload generators
can slice them without copies. Malformed input raises `TraceFormatError` naming the file, the
1-based file line, the column and what was expected, because a silently mis-parsed trace would
make every study built on it wrong.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orrery.core.errors import TraceFormatError

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
SHAREGPT_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class RequestTrace:
    """Timed requests: arrival (s, from the first request, sorted) and token counts."""

    arrival_s: np.ndarray  # float64
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    source: str

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("RequestTrace arrays must have the same length")

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass(frozen=True)
class LengthSamples:
    """Observed (prompt, output) token-count pairs, one row per request."""

    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    source: str

    def __post_init__(self) -> None:
        if len(self.prompt_tokens) != len(self.output_tokens):
            raise ValueError("LengthSamples arrays must have the same length")

    def __len__(self) -> int:
        return len(self.prompt_tokens)


# --- reading -----------------------------------------------------------------------------------

_FIELDS_RE = re.compile(r"line (\d+)")


def _read_table(
    path: str | Path, required: tuple[str, ...]
) -> tuple[pd.DataFrame, np.ndarray, Path]:
    """Read a CSV as strings; return the frame, the 1-based file line of each row, and the path.

    Blank lines are kept by the parser (then dropped here) so that row -> line stays exact.
    """
    p = Path(path)
    if not p.is_file():
        raise TraceFormatError(p, "file not found", expected="an existing CSV file")
    try:
        df = pd.read_csv(
            p,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
            quoting=csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError:
        raise TraceFormatError(
            p, "file is empty", line=1, expected="a header line " + ",".join(required)
        ) from None
    except pd.errors.ParserError as err:
        m = _FIELDS_RE.search(str(err))
        line = int(m.group(1)) if m else None
        raise TraceFormatError(
            p,
            f"cannot parse CSV: {err}",
            line=line,
            expected=f"{len(required)}+ comma-separated fields",
        ) from None
    except UnicodeDecodeError as err:
        raise TraceFormatError(
            p, f"not a text CSV file ({err.reason})", expected="UTF-8 text"
        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise TraceFormatError(
                p,
                f"missing column {col!r}; header has {list(df.columns)}",
                line=1,
                column=col,
                expected="header with columns " + ",".join(required),
            )
    df = df.loc[:, list(required)]
    lines = np.arange(len(df), dtype=np.int64) + 2  # header is line 1
    if len(df):
        filled = df.fillna("")
        blank = (filled == "").all(axis=1).to_numpy()
        if blank.any():
            df, lines = df.loc[~blank], lines[~blank]
    if len(df) == 0:
        raise TraceFormatError(
            p, "no data rows after the header", line=2, expected="at least one request row"
        )
    return df, lines, p


def _token_column(df: pd.DataFrame, lines: np.ndarray, path: Path, col: str) -> np.ndarray:
    """Parse a token-count column into int64, rejecting missing, non-numeric, fractional, negative."""
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    def shown(i: int) -> str:
        v = raw.iloc[i]
        empty = v is None or (isinstance(v, float) and np.isnan(v)) or v == ""
        return "(empty)" if empty else repr(v)

    finite = np.isfinite(values)
    for bad, what in (
        (~finite, "is not a number"),
        (finite & (values != np.floor(values)), "is not a whole number"),
        (finite & (values < 0), "is negative"),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            raise TraceFormatError(path, f"token count {shown(i)} {what}", line=int(lines[i]),
                                   column=col, expected="a non-negative integer")
    return values.astype(np.int64)


_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _numeric_timestamps(raw: pd.Series, numeric: np.ndarray, lines: np.ndarray, path: Path,
                        col: str) -> np.ndarray:
    """Timestamps given as seconds: all numeric, finite, >= 0 and non-decreasing; returned as
    seconds after the first request."""
    if not numeric.all():
        i = int(np.argmax(~numeric))
        raise TraceFormatError(path, f"timestamp {raw.iloc[i]!r} is not a number while earlier rows are "
                               "seconds", line=int(lines[i]), column=col,
                               expected="every timestamp in seconds, or every one a date-time")
    t = raw.astype(np.float64).to_numpy()
    for bad, what in ((~np.isfinite(t), "is not finite"), (t < 0, "is negative")):
        if bad.any():
            i = int(np.argmax(bad))
            raise TraceFormatError(path, f"timestamp {raw.iloc[i]!r} {what}", line=int(lines[i]), column=col,
                                   expected="seconds >= 0 (or a date-time like '2023-11-16 18:15:46.68')")
    dec = np.diff(t) < 0
    if dec.any():
        i = int(np.argmax(dec)) + 1
        raise TraceFormatError(path, f"timestamp {raw.iloc[i]!r} is earlier than the previous one "
                               f"{raw.iloc[i - 1]!r}", line=int(lines[i]), column=col,
                               expected="non-decreasing timestamps")
    return t - t[0]


def load_azure_llm(path: str | Path) -> RequestTrace:
    """Load an Azure LLM inference trace (`TIMESTAMP,ContextTokens,GeneratedTokens`).

    Timestamps (`2023-11-16 18:15:46.6805900`, any ISO-8601 precision, or bare numbers meaning
    seconds, which must be >= 0) become seconds after the first request. They must be non-decreasing: a reordered trace is reported, not re-sorted,
    because the row order is what the trace's publisher recorded.
    """
    df, lines, p = _read_table(path, AZURE_COLUMNS)
    col = "TIMESTAMP"
    raw_ts = df[col].astype(str).str.strip()
    numeric = raw_ts.str.fullmatch(_NUMBER_RE.pattern).to_numpy()
    if numeric.any():
        # bare numbers are seconds, never dates: ISO-8601 parsing would read "-5" as the year -5
        arrival_s = _numeric_timestamps(raw_ts, numeric, lines, p, col)
        prompt = _token_column(df, lines, p, "ContextTokens")
        output = _token_column(df, lines, p, "GeneratedTokens")
        return RequestTrace(_frozen(arrival_s), _frozen(prompt), _frozen(output), source=str(p))
    ts = pd.to_datetime(raw_ts, format="ISO8601", errors="coerce")
    bad = ts.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceFormatError(
            p,
            f"unparsable timestamp {raw_ts.iloc[i]!r}",
            line=int(lines[i]),
            column=col,
            expected="a timestamp like '2023-11-16 18:15:46.6805900'",
        )
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    dec = np.diff(ns) < 0
    if dec.any():
        i = int(np.argmax(dec)) + 1
        raise TraceFormatError(
            p,
            f"timestamp {raw_ts.iloc[i]!r} is earlier than the previous one {raw_ts.iloc[i - 1]!r}",
            line=int(lines[i]),
            column=col,
            expected="non-decreasing timestamps",
        )
    arrival_s = (ns - ns[0]).astype(np.float64) / 1e9
    prompt = _token_column(df, lines, p, "ContextTokens")
    output = _token_column(df, lines, p, "GeneratedTokens")
    return RequestTrace(_frozen(arrival_s), _frozen(prompt), _frozen(output), source=str(p))


def load_sharegpt_stats(path: str | Path) -> LengthSamples:
    """Load ShareGPT length stats (`num_prefill_tokens,num_decode_tokens,...`); extra columns ignored."""
    df, lines, p = _read_table(path, SHAREGPT_COLUMNS)
    prompt = _token_column(df, lines, p, "num_prefill_tokens")
    output = _token_column(df, lines, p, "num_decode_tokens")
    return LengthSamples(_frozen(prompt), _frozen(output), source=str(p))


# --- one day (or several) of a long trace ------------------------------------------------------

DAY_S = 86400.0
_CHUNK_ROWS = 1_000_000


def _line_timestamp(line: bytes) -> pd.Timestamp | None:
    """The UTC timestamp in the first field of a CSV data line, or None if it is not one."""
    field = line.split(b",", 1)[0].strip().decode("utf-8", "replace")
    try:
        ts = pd.Timestamp(field)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _offset_of_first_at_or_after(f, start: pd.Timestamp, lo: int, hi: int) -> int:
    """Byte offset of the first data line whose timestamp is >= start (file sorted by time).

    Bisection over byte offsets: each probe reads the first whole line after an offset, so a
    day of a week-long, gigabyte file is found in ~30 reads instead of a full scan.
    """
    while hi - lo > 1 << 16:
        mid = (lo + hi) // 2
        f.seek(mid)
        f.readline()  # the rest of a line cut by the seek
        pos = f.tell()
        ts = None
        while ts is None:
            line = f.readline()
            if not line:
                break
            ts = _line_timestamp(line)
        if ts is None or ts >= start:
            hi = mid
        else:
            lo = pos
    return lo


def load_azure_llm_window(
    path: str | Path, *, day: int | None = None, days: int = 1, every: int = 1
) -> RequestTrace:
    """Requests of calendar days `day .. day+days-1` of an Azure LLM trace, every `every`-th row.

    Day 0 is the UTC calendar day of the first request; arrivals are seconds from that day's
    midnight plus `day` days, so a replayed day keeps its time-of-day pattern. `day=None` keeps
    the whole trace (arrivals from the first request, as `load_azure_llm`). `every=k` keeps rows
    0, k, 2k, ... of the selection: a deterministic thinning that scales a fleet-wide trace (the
    2024 week holds 16.8M code and 27.3M conversation requests) down to a few replicas' load
    while keeping its diurnal shape. Reads the file in chunks; a day is located by bisection.
    """
    if every < 1 or days < 1 or (day is not None and day < 0):
        raise ValueError("day >= 0, days >= 1 and every >= 1 expected")
    p = Path(path)
    if day is None and every == 1:
        return load_azure_llm(p)
    with p.open("rb") as f:
        header = f.readline()
        cols = [c.strip() for c in header.decode("utf-8", "replace").strip().split(",")]
        for col in AZURE_COLUMNS:
            if col not in cols:
                raise TraceFormatError(p, f"missing column {col!r}; header has {cols}", line=1,
                                       column=col, expected="header with columns " + ",".join(AZURE_COLUMNS))
        data_start = f.tell()
        first = _line_timestamp(f.readline())
        if first is None:
            raise TraceFormatError(p, "unparsable first timestamp", line=2, column="TIMESTAMP",
                                   expected="a timestamp like '2024-05-10 00:00:00.0095750+00:00'")
        if day is None:
            origin, start, end = first, first, None
        else:
            origin = start = first.normalize() + pd.Timedelta(days=day)
            end = start + pd.Timedelta(days=days)
        size = p.stat().st_size
        offset = data_start if start <= first else _offset_of_first_at_or_after(f, start, data_start, size)
        f.seek(offset)
        reader = pd.read_csv(f, header=None, names=cols, usecols=list(AZURE_COLUMNS), dtype=str,
                             chunksize=_CHUNK_ROWS, skip_blank_lines=True)
        parts_t, parts_p, parts_o, kept = [], [], [], 0
        for chunk in reader:
            ts = pd.to_datetime(chunk["TIMESTAMP"].str.strip(), format="ISO8601", utc=True, errors="coerce")
            bad = ts.isna().to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise TraceFormatError(p, f"unparsable timestamp {chunk['TIMESTAMP'].iloc[i]!r} "
                                          f"(near byte {offset}; `orrery trace check {p} --kind llm` "
                                          "lists the line)", column="TIMESTAMP")
            t = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
            sel = t >= np.datetime64(start.to_datetime64())
            done = False
            if end is not None:
                before_end = t < np.datetime64(end.to_datetime64())
                done = not before_end.all()
                sel &= before_end
            idx = np.flatnonzero(sel)
            if idx.size:
                take = idx[(kept + np.arange(idx.size)) % every == 0]
                kept += idx.size
                tok = chunk.iloc[take]
                parts_t.append(t[take])
                parts_p.append(pd.to_numeric(tok["ContextTokens"], errors="coerce").to_numpy(float))
                parts_o.append(pd.to_numeric(tok["GeneratedTokens"], errors="coerce").to_numpy(float))
            if done:
                break
    if not parts_t:
        raise TraceFormatError(p, f"no requests on day {day} (the trace starts {first})",
                               expected="a day within the trace")
    t_all = np.concatenate(parts_t)
    if (np.diff(t_all.astype(np.int64)) < 0).any():
        raise TraceFormatError(p, "timestamps are not in order", column="TIMESTAMP",
                               expected="non-decreasing timestamps (`orrery trace check` lists the lines)")
    prompt, output = np.concatenate(parts_p), np.concatenate(parts_o)
    for name, v in (("ContextTokens", prompt), ("GeneratedTokens", output)):
        if not (np.isfinite(v) & (v >= 0) & (v == np.floor(v))).all():
            raise TraceFormatError(p, "a token count is missing, negative or fractional", column=name,
                                   expected="non-negative integers (`orrery trace check` lists the lines)")
    arrival_s = (t_all - np.datetime64(origin.to_datetime64())).astype(np.int64).astype(np.float64) / 1e9
    return RequestTrace(_frozen(arrival_s), _frozen(prompt.astype(np.int64)),
                        _frozen(output.astype(np.int64)), source=f"{p} (day {day}, days {days}, every {every})")
