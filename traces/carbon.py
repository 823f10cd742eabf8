"""Grid carbon-intensity traces: loaders for real formats and a fitted synthetic default.

Formats:
- Electricity Maps hourly CSV (`Datetime (UTC)`, `Carbon Intensity gCO₂eq/kWh (direct)`, ...
  `(LCA)`), one row per hour;
- the Chase prototype's 30-minute CSV (`location,timestamp,duration,value[,hist]`, ISO
  timestamps with an offset, duration in minutes).
Timestamps become UTC. Duplicated timestamps and gaps are reported (`CarbonTrace.report`) and
handled as the user chooses: `duplicates="error"|"first"|"mean"`, `gaps="error"|"ffill"|"interpolate"`.

Synthetic default (`synthetic:<zone>`): a diurnal profile plus AR(1) noise,
    ci(h) = mean + sum_k (a_k cos(2 pi k h / 24) + b_k sin(2 pi k h / 24)) + x_h,
    x_h = phi x_{h-1} + sigma e_h,
with parameters fitted to the real traces by `fit_synthetic` and committed in `SYNTHETIC_PARAMS`
below, so shipped studies run with no data folder.

A trace is piecewise constant over its intervals and, when a run outlives it, repeats from its
start (documented so runs stay well defined for any horizon).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from orrery.core.errors import OrreryInputError, TraceFormatError, UnknownNameError, require_file

EM_TIME = "Datetime (UTC)"
EM_DIRECT = "Carbon Intensity gCO₂eq/kWh (direct)"
EM_LCA = "Carbon Intensity gCO₂eq/kWh (LCA)"
CHASE_COLUMNS = ("location", "timestamp", "duration", "value")


@dataclass(frozen=True)
class CarbonTrace:
    """Carbon intensity (g/kWh) per interval; `values[k]` holds over [k*dt, (k+1)*dt)."""

    values_g_per_kwh: np.ndarray
    interval_s: float
    start_utc: pd.Timestamp
    zone: str = ""
    report: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        v = np.asarray(self.values_g_per_kwh, float)
        if v.ndim != 1 or len(v) == 0:
            raise OrreryInputError(f"carbon trace {self.zone!r} has no values")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise OrreryInputError(f"carbon trace {self.zone!r} has negative or non-finite values")
        if not self.interval_s > 0:
            raise OrreryInputError(f"carbon trace interval must be > 0 s, got {self.interval_s}")
        object.__setattr__(self, "values_g_per_kwh", v)
        object.__setattr__(self, "_cum", np.concatenate([[0.0], np.cumsum(v) * self.interval_s]))

    @property
    def duration_s(self) -> float:
        return len(self.values_g_per_kwh) * self.interval_s

    def index_at(self, t_s: float) -> int:
        return int(math.floor((t_s % self.duration_s) / self.interval_s + 1e-12)) % len(self.values_g_per_kwh)

    def value_at(self, t_s: float) -> float:
        return float(self.values_g_per_kwh[self.index_at(t_s)])

    def _cumulative(self, t_s: np.ndarray) -> np.ndarray:
        """Integral of intensity over [0, t] (g/kWh x s), repeating the trace."""
        t = np.asarray(t_s, float)
        whole, rem = np.divmod(t, self.duration_s)
        k = np.floor(rem / self.interval_s).astype(int)
        k = np.minimum(k, len(self.values_g_per_kwh) - 1)
        part = self._cum[k] + (rem - k * self.interval_s) * self.values_g_per_kwh[k]
        return whole * self._cum[-1] + part

    def integral(self, t0_s: float | np.ndarray, t1_s: float | np.ndarray) -> np.ndarray | float:
        """Integral of intensity over [t0, t1] in g/kWh x s (vectorised)."""
        return self._cumulative(t1_s) - self._cumulative(t0_s)

    def carbon_g(self, power_w: float | np.ndarray, t0_s, t1_s) -> np.ndarray | float:
        """Emissions of a constant draw over [t0, t1]: W x (g/kWh x s) / 3.6e6 J per kWh."""
        return np.asarray(power_w) * self.integral(t0_s, t1_s) / 3.6e6

    def history(self, t_s: float, n: int) -> tuple[tuple[float, float], ...]:
        """The last n intervals starting at or before t (times relative to the run's t=0)."""
        k_now = int(math.floor(t_s / self.interval_s + 1e-12))
        ks = range(k_now - n + 1, k_now + 1)
        return tuple((k * self.interval_s, self.value_at(k * self.interval_s)) for k in ks)

    def shifted(self, offset_s: float) -> CarbonTrace:
        """The same trace starting `offset_s` later (a whole number of intervals)."""
        k = int(round(offset_s / self.interval_s)) % len(self.values_g_per_kwh)
        return CarbonTrace(np.roll(self.values_g_per_kwh, -k), self.interval_s,
                           self.start_utc + pd.Timedelta(seconds=k * self.interval_s), self.zone, self.report)


def _regularise(path: Path, times: pd.Series, values: pd.Series, interval_s: float, duplicates: str,
                gaps: str, first_line: int = 2) -> tuple[np.ndarray, pd.Timestamp, dict]:
    if duplicates not in ("error", "first", "mean"):
        raise OrreryInputError(f"duplicates={duplicates!r}; expected 'error', 'first' or 'mean'")
    if gaps not in ("error", "ffill", "interpolate"):
        raise OrreryInputError(f"gaps={gaps!r}; expected 'error', 'ffill' or 'interpolate'")
    df = pd.DataFrame({"t": times, "v": values})
    df["line"] = np.arange(len(df)) + first_line
    bad = df["t"].isna()
    if bad.any():
        raise TraceFormatError(path, "unparseable timestamp", line=int(df.loc[bad, "line"].iloc[0]),
                               expected="an ISO 8601 date-time")
    badv = ~np.isfinite(df["v"].to_numpy(float)) | (df["v"].to_numpy(float) < 0)
    if badv.any():
        raise TraceFormatError(path, "missing, negative or non-numeric carbon intensity",
                               line=int(df.loc[badv, "line"].iloc[0]), expected="a number >= 0 (g/kWh)")
    df = df.sort_values("t", kind="stable")
    dup = df["t"].duplicated(keep="first")
    n_dup = int(dup.sum())
    if n_dup and duplicates == "error":
        raise TraceFormatError(path, f"{n_dup} duplicated timestamp(s), first {df.loc[dup, 't'].iloc[0]}",
                               line=int(df.loc[dup, "line"].iloc[0]),
                               expected="unique timestamps (or duplicates='first'/'mean')")
    if duplicates == "mean":
        df = df.groupby("t", as_index=False)["v"].mean()
    else:
        df = df[~dup]
    t0 = df["t"].iloc[0]
    offs = (df["t"] - t0).dt.total_seconds().to_numpy() / interval_s
    if np.any(np.abs(offs - np.round(offs)) > 1e-6):
        raise TraceFormatError(path, f"timestamps are not on a {interval_s:g} s grid")
    k = np.round(offs).astype(int)
    full = np.full(k[-1] + 1, np.nan)
    full[k] = df["v"].to_numpy(float)
    n_gap = int(np.isnan(full).sum())
    if n_gap and gaps == "error":
        first = int(np.flatnonzero(np.isnan(full))[0])
        raise TraceFormatError(path, f"{n_gap} missing interval(s), first at "
                               f"{t0 + pd.Timedelta(seconds=first * interval_s)}",
                               expected="a gap-free trace (or gaps='ffill'/'interpolate')")
    s = pd.Series(full)
    s = s.ffill() if gaps == "ffill" else s.interpolate(limit_direction="both")
    return s.to_numpy(float), t0, {"duplicates": n_dup, "gaps": n_gap, "rows": int(len(values))}


def load_electricitymaps_csv(path: str | Path, *, column: str = "direct", duplicates: str = "error",
                             gaps: str = "interpolate") -> CarbonTrace:
    """Electricity Maps hourly export; `column` 'direct' or 'lca'."""
    p = require_file(path, "carbon trace")
    df = pd.read_csv(p)
    col = {"direct": EM_DIRECT, "lca": EM_LCA}.get(column)
    if col is None:
        raise OrreryInputError(f"column={column!r}; expected 'direct' or 'lca'")
    for c in (EM_TIME, col):
        if c not in df.columns:
            raise TraceFormatError(p, f"missing column {c!r}", line=1, expected="the Electricity Maps hourly CSV header")
    times = pd.to_datetime(df[EM_TIME], utc=True, errors="coerce")
    vals = pd.to_numeric(df[col], errors="coerce")
    values, t0, rep = _regularise(p, times, vals, 3600.0, duplicates, gaps)
    zone = str(df["Zone Id"].iloc[0]) if "Zone Id" in df.columns and len(df) else p.stem
    return CarbonTrace(values, 3600.0, t0, zone, rep)


def load_chase_csv(path: str | Path, *, duplicates: str = "error", gaps: str = "interpolate") -> CarbonTrace:
    """The Chase prototype's 30-minute trace (`location,timestamp,duration,value[,hist]`)."""
    p = require_file(path, "carbon trace")
    df = pd.read_csv(p)
    missing = [c for c in CHASE_COLUMNS if c not in df.columns]
    if missing:
        raise TraceFormatError(p, f"missing columns {missing}", line=1, expected=", ".join(CHASE_COLUMNS))
    dur = pd.to_numeric(df["duration"], errors="coerce")
    if dur.isna().any() or dur.nunique() != 1 or not dur.iloc[0] > 0:
        raise TraceFormatError(p, "durations differ between rows or are not positive", column="duration",
                               expected="one positive interval length in minutes")
    times = pd.to_datetime(df["timestamp"], utc=True, errors="coerce", format="ISO8601")
    vals = pd.to_numeric(df["value"], errors="coerce")
    values, t0, rep = _regularise(p, times, vals, float(dur.iloc[0]) * 60.0, duplicates, gaps)
    return CarbonTrace(values, float(dur.iloc[0]) * 60.0, t0, str(df["location"].iloc[0]), rep)


def load_carbon_csv(path: str | Path, **kw) -> CarbonTrace:
    """Either format, recognised by its header."""
    p = require_file(path, "carbon trace")
    with open(p, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    if EM_TIME in header:
        return load_electricitymaps_csv(p, **kw)
    if all(c in header for c in CHASE_COLUMNS):
        kw.pop("column", None)
        return load_chase_csv(p, **kw)
    raise TraceFormatError(p, "unrecognised carbon trace header", line=1,
                           expected=f"an Electricity Maps CSV ({EM_TIME!r}, ...) or a Chase CSV ({', '.join(CHASE_COLUMNS)})")


# ----------------------------------------------------------------------------------------------
# Synthetic diurnal generator
# ----------------------------------------------------------------------------------------------

N_HARMONICS = 2

# Fitted by `fit_synthetic` to ../shared/data/carbon (direct intensity); see tests/traces/test_carbon.py.
SYNTHETIC_PARAMS: dict[str, dict] = {
    # electricitymaps_US-CAL-CISO_2022_hourly.csv, direct
    "US-CAL-CISO": {"interval_s": 3600.0, "mean": 194.5992, "harmonics": [[-18.9063, 56.1688], [12.7255, 11.8781]],
                    "phi": 0.9612, "sigma": 12.5889, "min": 53.11, "max": 342.12},
    # electricitymaps_ES_2022_hourly.csv, direct
    "ES": {"interval_s": 3600.0, "mean": 166.7573, "harmonics": [[25.6342, 3.5742], [-11.1623, 0.4645]],
           "phi": 0.9861, "sigma": 8.4287, "min": 40.28, "max": 317.54},
    # chase_miso_2022-10.csv (30-minute, MISO Mason City)
    "MISO": {"interval_s": 1800.0, "mean": 683.1114, "harmonics": [[10.9572, -31.9736], [21.0524, 9.7746]],
             "phi": 0.8175, "sigma": 10.1438, "min": 577.3325, "max": 726.8973},
}


def fit_synthetic(trace: CarbonTrace) -> dict:
    """Diurnal harmonics by least squares on hour-of-day (UTC), then AR(1) on the residual."""
    v = trace.values_g_per_kwh
    t_h = (trace.start_utc.hour + trace.start_utc.minute / 60.0) + np.arange(len(v)) * trace.interval_s / 3600.0
    cols = [np.ones_like(t_h)]
    for k in range(1, N_HARMONICS + 1):
        cols += [np.cos(2 * np.pi * k * t_h / 24), np.sin(2 * np.pi * k * t_h / 24)]
    A = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(A, v, rcond=None)
    r = v - A @ coef
    phi = float(np.clip(np.dot(r[1:], r[:-1]) / max(np.dot(r[:-1], r[:-1]), 1e-12), -0.99, 0.99))
    sigma = float(np.std(r[1:] - phi * r[:-1]))
    return {"interval_s": trace.interval_s, "mean": float(coef[0]),
            "harmonics": [[float(coef[1 + 2 * i]), float(coef[2 + 2 * i])] for i in range(N_HARMONICS)],
            "phi": phi, "sigma": sigma, "min": float(v.min()), "max": float(v.max())}


def synthetic_trace(params: dict, duration_s: float, seed: int = 0, zone: str = "synthetic") -> CarbonTrace:
    """A trace of the given length from fitted parameters; deterministic in `seed`."""
    dt = float(params["interval_s"])
    n = max(1, int(math.ceil(duration_s / dt)))
    t_h = np.arange(n) * dt / 3600.0
    base = np.full(n, params["mean"])
    for k, (a, b) in enumerate(params["harmonics"], start=1):
        base += a * np.cos(2 * np.pi * k * t_h / 24) + b * np.sin(2 * np.pi * k * t_h / 24)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(0xCA4B,)))
    phi, sigma = params["phi"], params["sigma"]
    x = np.empty(n)
    x[0] = rng.normal(0, sigma / math.sqrt(max(1 - phi * phi, 1e-6)))
    e = rng.normal(0, sigma, n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    v = np.clip(base + x, 0.5 * params["min"], 1.5 * params["max"])
    return CarbonTrace(v, dt, pd.Timestamp("2022-01-01", tz="UTC"), zone, {"synthetic": True})


def load_carbon_trace(spec: str, *, duration_s: float = 7 * 86400.0, seed: int = 0, column: str = "direct",
                      duplicates: str = "error", gaps: str = "interpolate") -> CarbonTrace:
    """`synthetic:<zone>` (embedded default), `constant:<g/kWh>`, `shared:<path>` or a CSV path."""
    if spec.startswith("synthetic:"):
        zone = spec.split(":", 1)[1]
        if zone not in SYNTHETIC_PARAMS:
            raise UnknownNameError("synthetic carbon zone", zone, list(SYNTHETIC_PARAMS))
        return synthetic_trace(SYNTHETIC_PARAMS[zone], duration_s, seed, zone)
    if spec.startswith("constant:"):
        try:
            v = float(spec.split(":", 1)[1])
        except ValueError:
            raise OrreryInputError(f"carbon trace {spec!r}: expected constant:<g/kWh>") from None
        return CarbonTrace(np.array([v]), 3600.0, pd.Timestamp("2022-01-01", tz="UTC"), "constant")
    from orrery.traces.paths import resolve_data_path

    return load_carbon_csv(resolve_data_path(spec), column=column, duplicates=duplicates, gaps=gaps)
