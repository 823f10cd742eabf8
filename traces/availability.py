"""Device availability over time: interval traces, a diurnal generator, and batched check-ins.

Schema (shared by the loaders and the generator): intervals `(device, start_s, end_s)`, a
device being available (charging, idle, on Wi-Fi) during `[start_s, end_s)`, intervals of one
device never overlapping. `Availability` keeps them as arrays sorted by start.

Default generator (no data needed). Published facts it is shaped after (SOURCES.md): the
FedScale trace of 136k phones of an input-method app over one week, a device counting as
available while charging, strongly diurnal. Model: each device has a local-time offset, a
propensity to charge overnight, nightly sessions (start around 22:30 local, median 6.5 h) and
short daytime top-ups (about one a day, median 35 min). With the committed parameters about
a third of the devices are available at the night peak and under a tenth in the afternoon
(`diurnal_profile()` measures it). Those levels are our assumption, not measured: pass your
own `DiurnalParams` or a real trace (`load_interval_csv`, `fedscale_to_intervals`) to change them.

Check-ins: an available, idle device checks in when its interval starts and again every
`recheckin_s` while it stays available (as FL clients retry); `CheckinStream` produces those
check-ins window by window with numpy, never one process per device.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orrery.core.errors import TraceFormatError, require_file

DAY_S = 86400.0
RUN_SORT_MIN = 4096  # chunks with at least this many check-ins are sorted by merging runs


@dataclass(frozen=True)
class Availability:
    """Availability intervals sorted by start; `n_devices` devices (ids 0..n-1)."""

    device: np.ndarray  # int32
    start_s: np.ndarray  # float64
    end_s: np.ndarray  # float64
    n_devices: int

    def __post_init__(self) -> None:
        if not (len(self.device) == len(self.start_s) == len(self.end_s)):
            raise ValueError("availability arrays differ in length")

    def __len__(self) -> int:
        return len(self.start_s)

    @property
    def max_duration_s(self) -> float:
        return float((self.end_s - self.start_s).max()) if len(self) else 0.0

    def available_count(self, times_s: np.ndarray) -> np.ndarray:
        """How many devices are available at each time (intervals of a device never overlap)."""
        t = np.asarray(times_s, dtype=float)
        started = np.searchsorted(np.sort(self.start_s), t, side="right")
        ended = np.searchsorted(np.sort(self.end_s), t, side="right")
        return started - ended

    def is_available(self, device: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """For each (device, time) pair: is that device available then? (used by tests)."""
        device = np.asarray(device)
        times_s = np.asarray(times_s, dtype=float)
        order = np.lexsort((self.start_s, self.device))
        dev_sorted, st, en = self.device[order], self.start_s[order], self.end_s[order]
        key = dev_sorted.astype(np.float64) * 1e9 + st
        q = device.astype(np.float64) * 1e9 + times_s
        idx = np.searchsorted(key, q, side="right") - 1
        ok = idx >= 0
        idx = np.maximum(idx, 0)
        return ok & (dev_sorted[idx] == device) & (st[idx] <= times_s) & (times_s < en[idx])



def from_arrays(device, start_s, end_s, n_devices: int | None = None) -> Availability:
    """Build an `Availability` (merging overlapping intervals of a device, sorting by start)."""
    device = np.asarray(device)
    # device ids as int32 where they fit (the same values and order, half the memory at 10M devices)
    small = len(device) == 0 or (int(device.min()) >= 0 and int(device.max()) < 2**31 - 1)
    device = device.astype(np.int32 if small else np.int64, copy=False)
    start_s = np.asarray(start_s, dtype=np.float64)
    end_s = np.asarray(end_s, dtype=np.float64)
    n = int(device.max()) + 1 if n_devices is None and len(device) else int(n_devices or 0)
    if len(device):
        order = order_by_device_start(device, start_s)
        d, s, e = device[order], start_s[order], end_s[order]
        del order
        # running max of end within each device (offset per device keeps it monotone globally);
        # computed in place: the same operations as (e - base) + d * span, accumulate, - d * span, + base
        span = float(max(e.max(), 1.0) - min(s.min(), 0.0) + 1.0)
        base = min(s.min(), 0.0)
        off = d * span
        run = e - base
        run += off
        np.maximum.accumulate(run, out=run)
        run -= off
        run += base
        del off
        new = np.ones(len(d), dtype=bool)
        # prev_end[i] = run[i - 1]
        new[1:] = (d[1:] != d[:-1]) | (s[1:] >= run[:-1])
        del run
        starts_idx = np.flatnonzero(new)
        del new
        d, s = d[starts_idx], s[starts_idx]
        e = np.maximum.reduceat(e, starts_idx)
        del starts_idx
        order = np.argsort(s, kind="stable")
        device, start_s, end_s = d[order], s[order], e[order]
    return Availability(device.astype(np.int32, copy=False), start_s, end_s, n)


def order_by_device_start(device: np.ndarray, start_s: np.ndarray) -> np.ndarray:
    """`np.lexsort((start_s, device))` (by device, then start, ties in input order), faster
    when every device has few intervals: a stable sort by device (quick on the generator's
    output, runs of ascending ids), then each device's starts sorted as one short row of a
    padded matrix (+inf padding sorts last), a block of devices at a time. Falls back to
    lexsort for non-finite starts, widely spread ids or devices with many intervals."""
    n = len(device)
    if n < 2 or not np.isfinite(start_s).all():
        return np.lexsort((start_s, device))
    p1 = np.argsort(device, kind="stable")
    d1 = device[p1]
    lo, hi = int(d1[0]), int(d1[-1])
    if hi - lo > 4 * n + 1024:
        return np.lexsort((start_s, device))
    counts = np.bincount((d1 - lo).astype(np.int64, copy=False))
    maxk = int(counts.max())
    if maxk > 64:
        return np.lexsort((start_s, device))
    s1 = start_s[p1]
    off = np.cumsum(counts) - counts
    pos = np.empty(n, dtype=np.int64)
    cols = np.arange(maxk)
    rows_per = max(1, (1 << 21) // maxk)
    for g0 in range(0, len(counts), rows_per):
        g1 = min(len(counts), g0 + rows_per)
        c = counts[g0:g1]
        e0 = int(off[g0])
        e1 = int(off[g1 - 1] + c[-1])
        if e1 == e0:
            continue
        m = np.full((g1 - g0, maxk), np.inf)
        m[np.repeat(np.arange(g1 - g0), c), np.arange(e1 - e0) - np.repeat(off[g0:g1] - e0, c)] = s1[e0:e1]
        a = np.argsort(m, axis=1, kind="stable")
        pos[e0:e1] = (off[g0:g1, None] + a)[cols[None, :] < c[:, None]]
    return p1[pos]


# ----------------------------------------------------------------------------- generator
@dataclass(frozen=True)
class DiurnalParams:
    """Parameters of the default diurnal availability model (hours are local time)."""

    tz_sigma_h: float = 1.0  # spread of local-time offsets around the scenario's clock
    night_prob_a: float = 2.0  # per-device probability of charging overnight ~ Beta(a, b)
    night_prob_b: float = 1.6
    night_start_mean_h: float = 22.5
    night_start_sigma_h: float = 1.5
    night_dur_median_h: float = 6.5
    night_dur_sigma: float = 0.35  # log-normal sigma
    day_sessions_per_day: float = 1.0
    day_start_lo_h: float = 7.0
    day_start_hi_h: float = 22.0
    day_dur_median_h: float = 0.6
    day_dur_sigma: float = 0.8
    max_dur_h: float = 12.0
    min_dur_s: float = 60.0


DEFAULT_DIURNAL = DiurnalParams()


def diurnal_availability(n_devices: int, horizon_s: float, rng: np.random.Generator,
                         params: DiurnalParams = DEFAULT_DIURNAL, start_hour: float = 0.0) -> Availability:
    """Draw charging sessions for `n_devices` over `[0, horizon_s)`; t=0 is `start_hour` o'clock."""
    p = params
    n = int(n_devices)
    n_days = int(math.ceil(horizon_s / DAY_S)) + 2  # one day of lead-in, one after
    tz_h = rng.normal(0.0, p.tz_sigma_h, n)
    night_p = rng.beta(p.night_prob_a, p.night_prob_b, n)
    devs, starts, durs = [], [], []
    for day in range(-1, n_days - 1):
        # nightly session
        has = rng.random(n) < night_p
        idx = np.flatnonzero(has)
        st_h = rng.normal(p.night_start_mean_h, p.night_start_sigma_h, len(idx))
        du_h = p.night_dur_median_h * np.exp(p.night_dur_sigma * rng.standard_normal(len(idx)))
        devs.append(idx)
        starts.append((day * 24.0 + st_h - tz_h[idx] - start_hour) * 3600.0)
        durs.append(du_h * 3600.0)
        # daytime top-ups
        k = rng.poisson(p.day_sessions_per_day, n)
        idx = np.repeat(np.arange(n), k)
        st_h = rng.uniform(p.day_start_lo_h, p.day_start_hi_h, len(idx))
        du_h = p.day_dur_median_h * np.exp(p.day_dur_sigma * rng.standard_normal(len(idx)))
        devs.append(idx)
        starts.append((day * 24.0 + st_h - tz_h[idx] - start_hour) * 3600.0)
        durs.append(du_h * 3600.0)
    d = np.concatenate(devs).astype(np.int32 if n < 2**31 - 1 else np.int64)
    del devs
    s = np.concatenate(starts)
    del starts
    du = np.clip(np.concatenate(durs), p.min_dur_s, p.max_dur_h * 3600.0)
    del durs
    e = s + du
    del du
    keep = (e > 0.0) & (s < horizon_s)
    d, s, e = d[keep], np.maximum(s[keep], 0.0), np.minimum(e[keep], horizon_s)
    del keep
    return from_arrays(d, s, e, n)


def diurnal_profile(av: Availability, horizon_s: float, step_s: float = 900.0) -> tuple[np.ndarray, np.ndarray]:
    """(hour of day, mean fraction of devices available) averaged over the days of `av`."""
    t = np.arange(0.0, horizon_s, step_s)
    frac = av.available_count(t) / max(av.n_devices, 1)
    hour = (t % DAY_S) / 3600.0
    hours = np.unique(hour)
    return hours, np.array([frac[hour == h].mean() for h in hours])


# ----------------------------------------------------------------------------- loaders
def load_interval_csv(path: str | Path, n_devices: int | None = None) -> Availability:
    """Read an `ID,start,end` CSV (seconds). IDs may be any strings; they are numbered in order
    of first appearance. With `n_devices` larger than the trace, device i replays trace id
    `i mod k` (k ids in the file), as FL simulators map a population onto a smaller trace."""
    p = require_file(path, "availability file")
    fast = _load_interval_csv_fast(p)
    if fast is not None:
        return replicate(fast, n_devices)
    ids: dict[str, int] = {}
    dev, st, en = [], [], []
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        # Venn/FedScale files written by pandas carry an unnamed index column first
        skip = 1 if len(header) == 4 and header[0] in ("", "unnamed: 0", "index") else 0
        header = header[skip:]
        if len(header) != 3 or header[1:] != ["start", "end"] or header[0] not in ("id", "client_id", "device"):
            raise TraceFormatError(p, f"bad header {header}", line=1, expected="ID,start,end (optionally after an index column)")
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) != 3 + skip:
                raise TraceFormatError(p, f"{len(row)} fields", line=lineno,
                                       expected=f"{3 + skip} fields {'index,' if skip else ''}ID,start,end")
            row = row[skip:]
            vals = []
            for col, raw in (("start", row[1]), ("end", row[2])):
                try:
                    v = float(raw)
                except ValueError:
                    raise TraceFormatError(p, f"not a number: {raw.strip()!r}", line=lineno, column=col,
                                           expected="seconds as a number") from None
                if not math.isfinite(v) or v < 0:
                    raise TraceFormatError(p, f"bad time {raw.strip()!r}", line=lineno, column=col,
                                           expected="a finite time >= 0 s")
                vals.append(v)
            if vals[1] <= vals[0]:
                raise TraceFormatError(p, f"end {vals[1]} <= start {vals[0]}", line=lineno, column="end",
                                       expected="end > start")
            dev.append(ids.setdefault(row[0].strip(), len(ids)))
            st.append(vals[0])
            en.append(vals[1])
    if not dev:
        raise TraceFormatError(p, "no intervals", expected="at least one ID,start,end row")
    return replicate(from_arrays(dev, st, en, len(ids)), n_devices)


def _load_interval_csv_fast(p: Path) -> Availability | None:
    """A well-formed interval CSV read with pandas (150k rows in a fraction of a second); None
    when anything is off, so the row-by-row reader reports the problem with its line."""
    import pandas as pd

    with p.open(newline="") as f:
        header = [h.strip().lower() for h in next(csv.reader(f), [])]
    skip = 1 if len(header) == 4 and header[0] in ("", "unnamed: 0", "index") else 0
    cols = header[skip:]
    if len(cols) != 3 or cols[1:] != ["start", "end"] or cols[0] not in ("id", "client_id", "device"):
        return None
    try:
        df = pd.read_csv(p, skiprows=1, header=None, usecols=[skip, skip + 1, skip + 2],
                         names=list(range(3 + skip)), dtype={skip: str, skip + 1: np.float64, skip + 2: np.float64},
                         skip_blank_lines=True, engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    if len(df) == 0 or df.isna().to_numpy().any():
        return None
    st, en = df[skip + 1].to_numpy(), df[skip + 2].to_numpy()
    if not (np.isfinite(st).all() and np.isfinite(en).all() and (st >= 0).all() and (en > st).all()):
        return None
    codes, uniq = pd.factorize(df[skip].str.strip(), sort=False)  # numbered in order of first appearance
    return from_arrays(codes, st, en, len(uniq))


def replay(av: Availability, period_s: float, horizon_s: float) -> Availability:
    """Repeat the intervals every `period_s` until `horizon_s` (Venn replays its 5-day client
    trace NUM_WEEK times with a period of 432000 s, src/config.py `load_device_state`); the
    intervals are first clipped to one period so copies never overlap."""
    if period_s <= 0:
        raise ValueError("period_s must be > 0")
    keep = av.start_s < period_s
    d, s, e = av.device[keep], av.start_s[keep], np.minimum(av.end_s[keep], period_s)
    reps = max(1, math.ceil(horizon_s / period_s))
    off = np.repeat(np.arange(reps) * period_s, len(s))
    return from_arrays(np.tile(d, reps), np.tile(s, reps) + off, np.tile(e, reps) + off, av.n_devices)


def replicate(av: Availability, n_devices: int | None) -> Availability:
    """Map `n_devices` devices onto a trace of k devices: device i replays trace device i mod k."""
    if n_devices is None or n_devices == av.n_devices:
        return av
    k = av.n_devices
    reps = -(-n_devices // k)
    d = np.concatenate([av.device.astype(np.int64) + r * k for r in range(reps)])
    s = np.tile(av.start_s, reps)
    e = np.tile(av.end_s, reps)
    keep = d < n_devices
    order = np.argsort(s[keep], kind="stable")
    return Availability(d[keep][order].astype(np.int32), s[keep][order], e[keep][order], n_devices)


def fedscale_to_intervals(trace: Mapping, source: str = "<fedscale>") -> list[tuple[str, float, float]]:
    """Convert FedScale's per-client `{"active": [...], "inactive": [...]}` lists to intervals.

    FedScale records, for each client, the times it became active and inactive; the i-th
    active time pairs with the i-th inactive time. A trailing active time without an inactive
    one lasts until the client's `finish_time` (when given) and is dropped otherwise.
    """
    out: list[tuple[str, float, float]] = []
    if not isinstance(trace, Mapping):
        raise TraceFormatError(source, f"top level is {type(trace).__name__}",
                               expected="a mapping client id -> {active: [...], inactive: [...]}")
    for cid, rec in trace.items():
        if not isinstance(rec, Mapping) or "active" not in rec or "inactive" not in rec:
            raise TraceFormatError(source, f"client {cid!r} has no active/inactive lists",
                                   column=str(cid), expected="{'active': [...], 'inactive': [...]}")
        act, ina = list(rec["active"]), list(rec["inactive"])
        if len(ina) > len(act) or len(act) > len(ina) + 1:
            raise TraceFormatError(source, f"client {cid!r}: {len(act)} active vs {len(ina)} inactive times",
                                   column=str(cid), expected="equally many (or one more active)")
        if len(act) == len(ina) + 1:
            fin = rec.get("finish_time")
            if fin is None:
                act = act[:-1]
            else:
                ina = ina + [fin]
        for i, (a, b) in enumerate(zip(act, ina, strict=True)):
            try:
                a, b = float(a), float(b)
            except (TypeError, ValueError):
                raise TraceFormatError(source, f"client {cid!r}: non-numeric time in pair {i}",
                                       column=str(cid), expected="numbers (s)") from None
            if not (math.isfinite(a) and math.isfinite(b)) or b <= a:
                raise TraceFormatError(source, f"client {cid!r}: inactive {b} not after active {a} (pair {i})",
                                       column=str(cid), expected="inactive > active")
            out.append((str(cid), a, b))
    if not out:
        raise TraceFormatError(source, "no availability intervals", expected="at least one client interval")
    return out


def load_fedscale(path: str | Path) -> list[tuple[str, float, float]]:
    """Read FedScale's client behaviour trace (JSON, or the original pickle: trusted files only)."""
    p = require_file(path, "FedScale trace")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text())
        else:
            with p.open("rb") as f:
                data = pickle.load(f)  # noqa: S301 - FedScale ships pickles; trusted input only
    except (json.JSONDecodeError, pickle.UnpicklingError, EOFError) as err:
        raise TraceFormatError(p, f"cannot parse: {err}", expected="JSON or a FedScale pickle") from None
    return fedscale_to_intervals(data, source=str(p))


def write_interval_csv(intervals: list[tuple[str, float, float]], path: str | Path) -> Path:
    p = Path(path)
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "start", "end"])
        for cid, a, b in intervals:
            w.writerow([cid, repr(float(a)), repr(float(b))])
    return p


# ----------------------------------------------------------------------------- check-ins
class CheckinStream:
    """Check-ins of available devices, produced chunk by chunk and handed out by time window.

    `take(t0, t1)` returns `(device, time, interval_end)` of the check-ins in `[t0, t1)`,
    sorted by time; calls must move forward in time. Memory stays bounded by one chunk.
    """

    def __init__(self, av: Availability, recheckin_s: float, chunk_s: float = 3600.0):
        if recheckin_s <= 0:
            raise ValueError("recheckin_s must be > 0")
        self.av = av
        self.period = float(recheckin_s)
        self.chunk_s = float(chunk_s)
        self.max_dur = av.max_duration_s
        self._c0 = 0.0
        self._c1 = 0.0
        self._dev = np.empty(0, np.int32)
        self._t = np.empty(0)
        self._end = np.empty(0)
        self._ptr = 0
        self.total = 0
        self._act: np.ndarray | None = None  # intervals overlapping the loaded chunk (indices)
        self._act_lo = self._act_hi = 0

    def _load(self, c0: float) -> None:
        """The check-ins of the chunk [c0, c0 + chunk_s), sorted by time (ties in interval order).

        Two speed-ups over the plain load (scan every interval that may check in, stable-sort
        every check-in; tests/traces/test_checkin_chunks.py keeps it to test against), with the
        same result bit for bit: the intervals
        overlapping the chunk are carried over from the previous chunk when chunks follow each
        other (only the intervals starting in the new chunk are scanned), and the sort merges
        sorted runs (per check-in index within an interval: the intervals that started before
        the chunk, sorted once by their first check-in, and those starting in it, already in
        start order) instead of sorting every check-in; where two check-ins share a time the
        plain stable sort decides, so ties keep the reference's order."""
        av, R = self.av, self.period
        c1 = c0 + self.chunk_s
        lo = int(np.searchsorted(av.start_s, c0 - self.max_dur, side="left"))
        hi = int(np.searchsorted(av.start_s, c1, side="left"))
        if self._act is not None and self._c1 == c0 and lo >= self._act_lo:
            prev = self._act[int(np.searchsorted(self._act, lo)):]
            prev = prev[av.end_s[prev] > c0]
            new = np.arange(self._act_hi, hi, dtype=np.int64)
            idx = np.concatenate([prev, new[av.end_s[self._act_hi:hi] > c0]])
        else:
            idx = lo + np.flatnonzero(av.end_s[lo:hi] > c0)
        self._act, self._act_lo, self._act_hi = idx, lo, hi
        s, e, d = av.start_s[idx], av.end_s[idx], av.device[idx]
        k0 = np.maximum(0.0, np.ceil((c0 - s) / R))
        first = s + k0 * R
        cnt = np.maximum(0.0, np.ceil((np.minimum(e, c1) - first) / R)).astype(np.int64)
        total = int(cnt.sum())
        rep = np.repeat(np.arange(len(cnt)), cnt)
        off = np.cumsum(cnt) - cnt
        j = np.arange(total) - np.repeat(off, cnt)
        t = first[rep] + j * R
        order = self._order_by_runs(t, first, cnt, off, k0 > 0) if total >= RUN_SORT_MIN else None
        if order is None:
            order = np.argsort(t, kind="stable")
        self._t = t[order]
        ro = rep[order]
        self._dev = d[ro]
        self._end = e[ro]
        self._ptr = 0
        self._c0, self._c1 = c0, c1

    @staticmethod
    def _order_by_runs(t, first, cnt, off, old) -> np.ndarray | None:
        """`argsort(t, kind="stable")`, faster: the check-ins are laid out in sorted runs (per
        index k within an interval, the intervals that started before the chunk by first
        check-in, then those starting in it, whose first check-ins are their starts, in start
        order), which a stable sort merges fast; check-ins sharing a time are then put back in
        their positions' order, as the stable sort of the plain layout has them."""
        io = np.flatnonzero(old)
        io = io[np.argsort(first[io], kind="stable")]
        inew = np.flatnonzero(~old)
        parts = []
        for k in range(int(cnt.max()) if len(cnt) else 0):
            for ii in (io, inew):
                sel = ii[cnt[ii] > k]
                if len(sel):
                    parts.append(off[sel] + k)
        if not parts:
            return None
        cand = np.concatenate(parts)
        if len(cand) != len(t):
            return None
        order = cand[np.argsort(t[cand], kind="stable")]
        ts = t[order]
        eq = ts[1:] == ts[:-1]
        if eq.any():  # ties: within each group of equal times, positions ascending
            tied = np.zeros(len(ts), dtype=bool)
            tied[1:] |= eq
            tied[:-1] |= eq
            sub = np.flatnonzero(tied)
            tv = ts[sub]
            group = np.cumsum(np.concatenate([[True], tv[1:] != tv[:-1]]))
            o = order[sub]
            order[sub] = o[np.lexsort((o, group))]
        return order

    def take(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.peek(t0, t1)
        self.total += len(out[0])
        return out

    def peek(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The check-ins of `[t0, t1)` without counting them as handed out (an event-driven
        caller may consume only a prefix and look at the rest again later)."""
        parts = []
        t = t0
        while t < t1:
            if not (self._c0 <= t < self._c1):
                self._load(math.floor(t / self.chunk_s) * self.chunk_s)
            hi_t = min(t1, self._c1)
            a = np.searchsorted(self._t, t, side="left")
            b = np.searchsorted(self._t, hi_t, side="left")
            if b > a:
                parts.append((self._dev[a:b], self._t[a:b], self._end[a:b]))
            t = hi_t
        if not parts:
            return np.empty(0, np.int32), np.empty(0), np.empty(0)
        if len(parts) == 1:
            out = parts[0]
        else:
            out = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
        return out


def venn_standin_intervals(n_rows: int = 150_000, days: int = 5, seed: int = 2024, amp: float = 0.6,
                           peak_hour: float = 2.0, dur_median_s: float = 600.0,
                           dur_sigma: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for the client trace of SymbioticLab/Venn's simulator (its
    trace/fedscale_clients_7000000_3_info.csv is a Git LFS object, not in the snapshot):
    `n_rows` availability intervals, one per client, over `days` days, to be written as
    `,ID,start,end` and replayed every `days` days (Venn's `load_device_state`). Starts follow
    a diurnal intensity 1 + amp cos(2 pi (t - peak) / 1 day) (charging peaks at night, as in
    the FedScale trace), by rejection sampling; durations are lognormal (median `dur_median_s`,
    log-sigma `dur_sigma`) clipped to [30 s, 8 h]. These shape constants are this project's
    assumption (the generator the side-by-side runs with Venn's simulator used, the project's
    shared/tools/gen_venn_inputs.py, draws the same numbers for the same seed), not measured.
    Returns (start_s, end_s) as whole seconds, sorted by start."""
    if n_rows < 1 or days < 1:
        raise ValueError("n_rows and days must be >= 1")
    rng = np.random.default_rng(seed)
    horizon = days * DAY_S
    need, parts = n_rows, []
    while need > 0:
        t = rng.uniform(0, horizon, size=int(need * 1.8) + 1000)
        lam = (1 + amp * np.cos(2 * np.pi * (t - peak_hour * 3600) / DAY_S)) / (1 + amp)
        keep = t[rng.uniform(size=t.size) < lam]
        parts.append(keep[:need])
        need -= min(need, keep.size)
    start = np.sort(np.concatenate(parts)).astype(np.int64)
    dur = np.clip(rng.lognormal(np.log(dur_median_s), dur_sigma, size=start.size), 30, 8 * 3600).astype(np.int64)
    return start.astype(np.float64), (start + dur).astype(np.float64)
