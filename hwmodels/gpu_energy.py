"""Training energy models of GPUs, fitted to public measurements.

Three models, each fitted by `hwmodels/fit_gpu_energy.py` and committed as JSON under
`hwmodels/params/`. The JSON holds fitted parameters, their fit errors (on fitted and held-out
points), the ranges they were fitted on and the source files' sha256 - never the measured
points themselves (the data stay in `../shared/data`, see its SOURCES.md):

(a) `PowerLimitModel`: GPU power limit -> (time per epoch or iteration, average power) for one
    workload. Why parametric: the Zeus sweeps have 5-9 limits per workload; a smooth model lets
    the simulator and the policies ask about any limit in the GPU's range.
      average power  P(pl) = smooth-min(m * pl, P_sat)   (a GPU draws up to its cap, then saturates)
      time           T(pl) = t_inf + A * exp(-pl / w)    (throttling slows the job sharply at low caps)
    Two sources: `power_limit_models(gpu)` (the committed fit, no data needed) and
    `measured_power_limit_models(path, gpu)`, which reads a sweep CSV at run time (a Zeus
    sweep such as `shared:gpu/zeus_power_limit_sweep_v100.csv`, or a Perseus whole-pipeline
    sweep `shared:gpu/perseus_zeus_global_A100.csv`) and interpolates the measured points
    linearly (exact at every profiled limit, which is where Zeus and Chase operate). The
    training simulator picks one with `workload.power_model = "fit" | "measured"`.
(b) `ComputationModel`: one pipeline computation (stage x forward/backward): time over SM
    frequency t(f) = alpha + beta / f and energy over time e(t) = a * exp(b t) + c, fitted on
    the Pareto-optimal profiled points (Perseus). `load_computations(name)` rebuilds it from
    the committed fit on the GPU's clock grid; `load_computations("shared:gpu/....csv")` uses
    the real profile (every profiled point) instead.
(c) blocking power: a GPU waiting on a peer draws `GPUSpec.blocking_w` (84 W A100, 70 W A40).

Everything here is plain numpy/scipy so policies can reuse the pure functions without simpy.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from orrery.core.errors import OrreryInputError, TraceFormatError, require_file

PARAMS_DIR = Path(__file__).resolve().parent / "params"
POWER_LIMIT_PARAMS = PARAMS_DIR / "gpu_energy_power_limit.json"
STAGE_PARAMS = PARAMS_DIR / "gpu_energy_stage_profile.json"


def mape(pred: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute percentage error (%)."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    return float(np.mean(np.abs(pred - actual) / np.abs(actual)) * 100.0)


# ----------------------------------------------------------------------------------------------
# (a) power limit -> time, power
# ----------------------------------------------------------------------------------------------


def _softmin(x: np.ndarray, cap: float, s: float) -> np.ndarray:
    """Smooth min(x, cap) with softness s (W)."""
    s = max(float(s), 1e-6)
    z = (x - cap) / s
    return x - s * np.logaddexp(0.0, z)


def power_curve(pl_w: np.ndarray, m: float, p_sat_w: float, s_w: float) -> np.ndarray:
    return _softmin(m * np.asarray(pl_w, float), p_sat_w, s_w)


def time_curve(pl_w: np.ndarray, t_inf: float, pl_knee_w: float, gamma: float, s_w: float) -> np.ndarray:
    """t = t_inf · (pl_knee / softmin(pl, pl_knee))^gamma: below the knee the power cap slows
    the GPU (time grows as a power of the missing watts); above it the GPU runs unthrottled and
    more headroom buys nothing (the sweeps show a sharp knee that an exponential smooths away)."""
    return t_inf * (pl_knee_w / _softmin(np.asarray(pl_w, float), pl_knee_w, s_w)) ** gamma


@dataclass(frozen=True)
class PowerLimitModel:
    """Time per unit of work (epoch or iteration) and average power as functions of power limit.

    A fitted model has `power`/`time` coefficients and no `measured` points; a measured model
    (built from a data file at run time, never from the committed JSON) has the measured
    (power limit, time, power) points, sorted by limit, interpolated linearly, and no curves.
    """

    key: str
    gpu: str
    power: tuple[float, float, float] | None  # m, p_sat_w, s_w (None: measured model)
    time: tuple[float, ...] | None  # t_inf_s, pl_knee_w, gamma, s_w (None: measured model)
    pl_min_w: float
    pl_max_w: float
    unit: str = "epoch"
    fit_error: dict = field(default_factory=dict, compare=False)
    measured: tuple[tuple[float, float, float], ...] = ()
    source: str = "fit"  # "fit" or the data file the measured points came from

    def time_s(self, pl_w: float | np.ndarray) -> np.ndarray | float:
        pl = self._check(pl_w)
        if self.measured:
            m = np.asarray(self.measured)
            return np.interp(pl, m[:, 0], m[:, 1])
        return time_curve(pl, *self.time)

    def power_w(self, pl_w: float | np.ndarray) -> np.ndarray | float:
        pl = self._check(pl_w)
        if self.measured:
            m = np.asarray(self.measured)
            return np.interp(pl, m[:, 0], m[:, 2])
        return np.minimum(power_curve(pl, *self.power), pl)

    def energy_j(self, pl_w: float | np.ndarray) -> np.ndarray | float:
        return self.time_s(pl_w) * self.power_w(pl_w)

    def _check(self, pl_w):
        pl = np.asarray(pl_w, float)
        if np.any(pl < self.pl_min_w - 1e-9) or np.any(pl > self.pl_max_w + 1e-9):
            what = "fitted" if not self.measured else "measured"
            raise OrreryInputError(
                f"power limit {pl_w} W outside the {what} range "
                f"[{self.pl_min_w}, {self.pl_max_w}] W of {self.key} on {self.gpu}"
            )
        return pl if pl.ndim else float(pl)


def fit_power_limit(pl_w: np.ndarray, time_s: np.ndarray, power_w: np.ndarray) -> tuple[tuple, tuple]:
    """Least-squares fit of the power and time curves (relative error, robust starting points)."""
    from scipy.optimize import least_squares

    pl, t, p = (np.asarray(a, float) for a in (pl_w, time_s, power_w))
    x0p = [float(np.clip(np.max(p / pl), 0.06, 1.4)), float(np.clip(p.max(), 11.0, 1999.0)), 10.0]
    rp = least_squares(
        lambda q: (power_curve(pl, *q) - p) / p, x0p,
        bounds=([0.05, 10.0, 0.5], [1.5, 2000.0, 200.0]),
    )
    best = None
    for k0 in np.quantile(pl, [0.3, 0.5, 0.7]):
        for g0 in (1.0, 2.0):
            x0t = [float(t.min()), float(k0), g0, 10.0]
            try:
                rt = least_squares(
                    lambda q: (time_curve(pl, *q) - t) / t, x0t,
                    bounds=([0.0, 0.5 * float(pl.min()), 0.05, 1.0], [np.inf, 1.5 * float(pl.max()), 6.0, 100.0]),
                )
            except ValueError:
                continue
            if best is None or rt.cost < best.cost:
                best = rt
    assert best is not None
    return tuple(float(v) for v in rp.x), tuple(float(v) for v in best.x)


SWEEP_COLUMNS = ("dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power")
GLOBAL_SWEEP_COLUMNS = ("model_name", "dp", "tp", "pp", "num_microbatches", "power_limit_0", "time", "energy")
MIN_SWEEP_POINTS = 4  # fewer distinct limits than this: no model for the workload


def _read_csv(p: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise TraceFormatError(p, f"not a CSV file: {err}") from None


def _check_positive(p: Path, df: pd.DataFrame, columns) -> None:
    for c in columns:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(vals.to_numpy(float)) | (vals.to_numpy(float) <= 0))
        if len(bad):
            raise TraceFormatError(p, f"non-positive or non-numeric value {df[c].iloc[bad[0]]!r}",
                                   line=int(bad[0]) + 2, column=c, expected="a positive number")
        df[c] = vals


def load_power_limit_sweep(path: str | Path) -> pd.DataFrame:
    """A Zeus power-limit sweep CSV, checked column by column."""
    p = require_file(path, "power-limit sweep")
    df = _read_csv(p)
    missing = [c for c in SWEEP_COLUMNS if c not in df.columns]
    if missing:
        raise TraceFormatError(p, f"missing columns {missing}", line=1, expected=", ".join(SWEEP_COLUMNS))
    _check_positive(p, df, ("power_limit", "time_per_epoch", "average_power"))
    return df


def load_global_power_sweep(path: str | Path) -> pd.DataFrame:
    """A Perseus whole-pipeline power-limit sweep CSV (iteration time and energy per limit)."""
    p = require_file(path, "pipeline power-limit sweep")
    df = _read_csv(p)
    missing = [c for c in GLOBAL_SWEEP_COLUMNS if c not in df.columns]
    if missing:
        raise TraceFormatError(p, f"missing columns {missing}", line=1, expected=", ".join(GLOBAL_SWEEP_COLUMNS))
    _check_positive(p, df, ("dp", "tp", "pp", "num_microbatches", "power_limit_0", "time", "energy"))
    return df


def workload_key(dataset: str, network: str, batch_size: int, optimizer: str) -> str:
    return f"{dataset}/{network}/b{int(batch_size)}/{optimizer}"


def sweep_points(df: pd.DataFrame) -> dict[str, dict]:
    """Per workload key of a Zeus sweep: sorted `power_limit_w`, `time_s`, `power_w` arrays.

    Repeated limits are averaged; workloads with fewer than `MIN_SWEEP_POINTS` limits are left out.
    """
    out = {}
    for (ds, net, bs, opt), g in df.groupby(["dataset", "network", "batch_size", "optimizer"]):
        g = g.groupby("power_limit", as_index=False)[["time_per_epoch", "average_power"]].mean()
        g = g.sort_values("power_limit")
        if len(g) < MIN_SWEEP_POINTS:
            continue
        out[workload_key(ds, net, bs, opt)] = {
            "power_limit_w": g["power_limit"].to_numpy(float), "time_s": g["time_per_epoch"].to_numpy(float),
            "power_w": g["average_power"].to_numpy(float), "unit": "epoch"}
    return out


def global_sweep_points(df: pd.DataFrame) -> dict[str, dict]:
    """Per model of a Perseus global sweep (key `perseus/<model>`): iteration time and per-GPU power."""
    out = {}
    for name, g in df.groupby("model_name"):
        n_gpu = int(g["dp"].iloc[0] * g["tp"].iloc[0] * g["pp"].iloc[0])
        g = g.groupby("power_limit_0", as_index=False)[["time", "energy"]].mean().sort_values("power_limit_0")
        if len(g) < MIN_SWEEP_POINTS:
            continue
        t = g["time"].to_numpy(float)
        out[f"perseus/{name}"] = {
            "power_limit_w": g["power_limit_0"].to_numpy(float), "time_s": t,
            "power_w": g["energy"].to_numpy(float) / t / n_gpu, "unit": "iteration", "n_gpus": n_gpu,
            "num_microbatches": int(df.loc[df["model_name"] == name, "num_microbatches"].iloc[0])}
    return out


def read_sweep_points(path: str | Path) -> dict[str, dict]:
    """Measured points of a sweep CSV of either format (told apart by its header)."""
    p = require_file(path, "power-limit sweep")
    head = _read_csv(p).columns
    if "model_name" in head:
        return global_sweep_points(load_global_power_sweep(p))
    return sweep_points(load_power_limit_sweep(p))


@lru_cache(maxsize=4)
def _load_json(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"fitted parameters not found: {p} (run python -m hwmodels.fit_gpu_energy)")
    return json.loads(p.read_text())


def power_limit_models(gpu: str) -> dict[str, PowerLimitModel]:
    """Committed (fitted) power-limit models for one GPU family ('v100', 'a40', 'a100'), by workload key."""
    data = _load_json(str(POWER_LIMIT_PARAMS))
    g = gpu.lower()
    if g not in data["gpus"]:
        raise OrreryInputError(f"no fitted power-limit models for GPU {gpu!r}; fitted: {sorted(data['gpus'])}")
    out = {}
    for key, d in data["gpus"][g].items():
        out[key] = PowerLimitModel(
            key=key, gpu=g, power=tuple(d["power"]), time=tuple(d["time"]),
            pl_min_w=d["pl_min_w"], pl_max_w=d["pl_max_w"], unit=d.get("unit", "epoch"),
            fit_error=d.get("fit_error", {}),
        )
    return out


# The real sweep each GPU family's models were fitted on (`shared:` paths, read only on request).
MEASURED_SWEEPS = {
    "v100": "shared:gpu/zeus_power_limit_sweep_v100.csv",
    "a40": "shared:gpu/zeus_power_limit_sweep_a40.csv",
    "a100": "shared:gpu/perseus_zeus_global_A100.csv",
}


@lru_cache(maxsize=8)
def _measured_models(path: str, gpu: str, _mtime_ns: int, _size: int) -> dict[str, PowerLimitModel]:
    out = {}
    for key, d in read_sweep_points(path).items():
        pl, t, p = d["power_limit_w"], d["time_s"], d["power_w"]
        out[key] = PowerLimitModel(
            key=key, gpu=gpu, power=None, time=None, pl_min_w=float(pl.min()), pl_max_w=float(pl.max()),
            unit=d["unit"], measured=tuple(zip(pl.tolist(), t.tolist(), p.tolist(), strict=True)), source=path,
        )
    if not out:
        raise TraceFormatError(path, f"no workload with at least {MIN_SWEEP_POINTS} distinct power limits")
    return out


def measured_power_limit_models(path: str | Path | None, gpu: str) -> dict[str, PowerLimitModel]:
    """Power-limit models that interpolate the measured points of a sweep CSV, read at run time.

    `path` is a file path or `shared:<sub/path>`; None means the real sweep of the GPU family
    (`MEASURED_SWEEPS`). A missing file raises `OrreryInputError`, a malformed one
    `TraceFormatError` (file, line, column, what was expected).
    """
    from orrery.traces.paths import resolve_data_path

    g = gpu.lower()
    if path is None:
        if g not in MEASURED_SWEEPS:
            raise OrreryInputError(f"no measured power-limit sweep known for GPU {gpu!r}; "
                                   f"known: {sorted(MEASURED_SWEEPS)} (or give the CSV path)")
        path = MEASURED_SWEEPS[g]
    p = resolve_data_path(path)
    st = p.stat()
    return _measured_models(str(p), g, st.st_mtime_ns, st.st_size)


def get_power_limit_model(gpu: str, key: str, models: dict[str, PowerLimitModel] | None = None) -> PowerLimitModel:
    """One workload's model: from `models` if given, else from the committed fit."""
    models = power_limit_models(gpu) if models is None else models
    if key not in models:
        from orrery.core.errors import UnknownNameError

        raise UnknownNameError(f"{gpu} workload", key, list(models))
    return models[key]


# ----------------------------------------------------------------------------------------------
# (b) per-computation time-energy over SM frequency
# ----------------------------------------------------------------------------------------------

PROFILE_COLUMNS = ("stage", "instruction", "frequency", "time", "energy")


def load_stage_profile(path: str | Path) -> pd.DataFrame:
    """A Perseus stage profile CSV (stage, instruction, frequency MHz, time s, energy J)."""
    p = require_file(path, "stage profile")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise TraceFormatError(p, f"not a CSV file: {err}") from None
    missing = [c for c in PROFILE_COLUMNS if c not in df.columns]
    if missing:
        raise TraceFormatError(p, f"missing columns {missing}", line=1, expected=", ".join(PROFILE_COLUMNS))
    for c in ("stage", "frequency", "time", "energy"):
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0) | ((vals == 0) & (c != "stage")))
        if len(bad):
            raise TraceFormatError(p, f"bad value {df[c].iloc[bad[0]]!r}", line=int(bad[0]) + 2,
                                   column=c, expected="a positive number")
        df[c] = vals
    bad_ins = ~df["instruction"].isin(["forward", "backward"])
    if bad_ins.any():
        i = int(np.flatnonzero(bad_ins.to_numpy())[0])
        raise TraceFormatError(p, f"unknown instruction {df['instruction'].iloc[i]!r}", line=i + 2,
                               column="instruction", expected="'forward' or 'backward'")
    df["stage"] = df["stage"].astype(int)
    dup = df.duplicated(["stage", "instruction", "frequency"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise TraceFormatError(p, "duplicate (stage, instruction, frequency) row", line=i + 2)
    stages = sorted(df["stage"].unique())
    if stages != list(range(len(stages))):
        raise TraceFormatError(p, f"stages {stages} are not 0..N-1", column="stage")
    return df


def pareto_mask(times: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """True for points no other point beats in both time and energy (ties kept once)."""
    t, e = np.asarray(times, float), np.asarray(energies, float)
    order = np.lexsort((e, t))  # by time, then energy
    keep = np.zeros(len(t), bool)
    best_e = np.inf
    for i in order:
        if e[i] < best_e:
            keep[i] = True
            best_e = e[i]
    return keep


def exp_energy(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * np.exp(b * np.asarray(t, float)) + c


def _best_curve_fit(fun, x: np.ndarray, y: np.ndarray, starts, valid=None) -> tuple[np.ndarray | None, float]:
    """Least-squares `fun(x, *p)` to `y` from each start in `starts`; of the converged fits that
    `valid(p)` accepts, the one with the smallest squared error, and that error ((None, inf)
    when there is none)."""
    from scipy.optimize import curve_fit

    best, best_err = None, np.inf
    for p0 in starts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(fun, x, y, p0=p0, maxfev=20000)
        except RuntimeError:
            continue
        err = float(np.sum((fun(x, *p) - y) ** 2))
        if err < best_err and (valid is None or valid(p)):
            best, best_err = p, err
    return best, best_err


def fit_exp_energy(times: np.ndarray, energies: np.ndarray) -> tuple[float, float, float]:
    """Fit e = a exp(b t) + c (b < 0: slower is cheaper) by nonlinear least squares."""
    t, e = np.asarray(times, float), np.asarray(energies, float)
    if len(t) < 3:
        # Too few points for three parameters: a line through them is the honest answer.
        if len(t) == 1:
            return 0.0, -1.0, float(e[0])
        slope = (e[-1] - e[0]) / (t[-1] - t[0])
        b = -1.0 / max(t.mean(), 1e-9)
        a = slope / (b * np.exp(b * t.mean()))
        return float(a), float(b), float(e.mean() - a * np.exp(b * t.mean()))
    span = max(t.max() - t.min(), 1e-9)
    starts = []
    for k in (1.0, 3.0, 10.0):  # a, c by linear least squares for each decay rate b0
        b0 = -k / span
        x = np.exp(b0 * t)
        (a0, c0), *_ = np.linalg.lstsq(np.vstack([x, np.ones_like(x)]).T, e, rcond=None)
        starts.append([a0, b0, c0])
    best, _ = _best_curve_fit(exp_energy, t, e, starts)
    if best is None:
        raise OrreryInputError("exponential energy fit failed to converge")
    return tuple(float(v) for v in best)


CLOCK_SOFTNESS = 0.03  # softness of the clock saturation, as a fraction of the maximum clock


def freq_time(freq_mhz, alpha_s: float, beta_s_mhz: float, f_sat_mhz: float | None = None,
              soft_mhz: float | None = None) -> np.ndarray:
    """t(f) = alpha + beta / f_eff, f_eff = softmin(f, f_sat): the clock-bound part scales with
    1/f until the clock stops paying off (near the top the GPU hits its power or thermal limit
    and a higher clock setting no longer runs faster). No `f_sat_mhz`: plain alpha + beta / f."""
    f = np.asarray(freq_mhz, float)
    if f_sat_mhz is not None:
        f = _softmin(f, f_sat_mhz, soft_mhz or CLOCK_SOFTNESS * f_sat_mhz)
    return alpha_s + beta_s_mhz / f


def fit_freq_time(freq_mhz: np.ndarray, times: np.ndarray) -> tuple[float, float, float, float]:
    """Fit `freq_time`: (alpha_s, beta_s_mhz, f_sat_mhz, soft_mhz), by least squares.

    Starts from the plain alpha + beta / f line (f_sat far above the clocks) and from a
    saturation at the top clock, and keeps the better; the line is the fallback."""
    f, t = np.asarray(freq_mhz, float), np.asarray(times, float)
    A = np.vstack([np.ones_like(f), 1.0 / f]).T
    (alpha, beta), *_ = np.linalg.lstsq(A, t, rcond=None)
    soft = CLOCK_SOFTNESS * float(f.max())
    best = (float(alpha), float(beta), 10.0 * float(f.max()), soft)
    best_err = float(np.sum((freq_time(f, *best) - t) ** 2))
    p, err = _best_curve_fit(lambda x, a, b, fs: freq_time(x, a, b, fs, soft), f, t,
                             [[alpha, beta, float(f.max())], [alpha, beta, 0.95 * float(f.max())]],
                             valid=lambda q: q[2] > 0)
    if p is not None and err < best_err:
        best = (float(p[0]), float(p[1]), float(p[2]), soft)
    return best


@dataclass(frozen=True)
class ComputationModel:
    """One pipeline computation's choices: Pareto-optimal (frequency, time, energy) points.

    `freqs_mhz`, `times_s`, `energies_j` are sorted by time ascending (frequency descending);
    `exp` is the fitted e(t) = a exp(b t) + c used by the frontier solver.
    """

    name: str
    freqs_mhz: tuple[float, ...]
    times_s: tuple[float, ...]
    energies_j: tuple[float, ...]
    exp: tuple[float, float, float]
    # Every profiled point (Pareto-dominated ones too, e.g. the maximum clock), by frequency
    # descending: what a GPU really does when told to run at that clock.
    all_freqs_mhz: tuple[float, ...] = ()
    all_times_s: tuple[float, ...] = ()
    all_energies_j: tuple[float, ...] = ()

    def at_frequency(self, f_mhz: float) -> tuple[float, float]:
        """(time, energy) at a clock: the profiled point, or linear interpolation between two."""
        f = np.asarray(self.all_freqs_mhz or self.freqs_mhz, float)
        t = np.asarray(self.all_times_s or self.times_s, float)
        e = np.asarray(self.all_energies_j or self.energies_j, float)
        o = np.argsort(f)
        fc = float(np.clip(f_mhz, f[o][0], f[o][-1]))
        return float(np.interp(fc, f[o], t[o])), float(np.interp(fc, f[o], e[o]))

    def energy_at(self, t_s: float | np.ndarray) -> np.ndarray:
        return exp_energy(t_s, *self.exp)


def computation_models_from_profile(df: pd.DataFrame) -> dict[tuple[int, str], ComputationModel]:
    """Pareto-filter each (stage, instruction) of a profile and fit its exponential."""
    out = {}
    for (s, ins), full in df.groupby(["stage", "instruction"], sort=True):
        full = full.sort_values("frequency", ascending=False)
        g = full[pareto_mask(full["time"].to_numpy(), full["energy"].to_numpy())].sort_values("time")
        a, b, c = fit_exp_energy(g["time"].to_numpy(), g["energy"].to_numpy())
        out[(int(s), str(ins))] = ComputationModel(
            name=f"stage{s}/{ins}",
            freqs_mhz=tuple(float(v) for v in g["frequency"]),
            times_s=tuple(float(v) for v in g["time"]),
            energies_j=tuple(float(v) for v in g["energy"]),
            exp=(a, b, c),
            all_freqs_mhz=tuple(full["frequency"].astype(float)),
            all_times_s=tuple(full["time"].astype(float)),
            all_energies_j=tuple(full["energy"].astype(float)),
        )
    return out


def clock_grid(lo_mhz: float, hi_mhz: float, step_mhz: float) -> np.ndarray:
    """The GPU's SM clocks from `hi_mhz` down to `lo_mhz` in `step_mhz` steps (both ends kept)."""
    n = int(round((hi_mhz - lo_mhz) / step_mhz))
    return np.unique(np.append(hi_mhz - step_mhz * np.arange(n + 1), lo_mhz))[::-1]


def computation_models_from_params(profile: str) -> dict[tuple[int, str], ComputationModel]:
    """Embedded default: rebuild the computations from the committed fit (no data needed).

    The choices are the GPU's clocks (`freq_step_mhz` apart) over the range where the profile's
    Pareto-optimal clocks lie; times come from the saturating t(f) (`freq_time`) and energies
    from the exponential fit, then Pareto-filtered (a fitted curve is monotone, so all survive).
    The maximum clock (the baseline) is evaluated on the same curves: the saturation keeps its
    time (and so its energy) where the profile has it, but the fit does not know that the real
    maximum clock is slightly Pareto-dominated - use the real profile (`shared:` CSV) for that.
    """
    data = _load_json(str(STAGE_PARAMS))
    if profile not in data["profiles"]:
        raise OrreryInputError(f"no fitted stage profile {profile!r}; fitted: {sorted(data['profiles'])}")
    prof = data["profiles"][profile]
    step = float(prof["freq_step_mhz"])
    out = {}
    for name, d in prof["computations"].items():
        s, ins = name.split("/")
        lo, hi = d["pareto_freq_range_mhz"]
        f = clock_grid(float(lo), float(hi), step)
        fmax = float(d["freq_max_mhz"])
        fall = np.array(sorted({fmax, *f.tolist()}, reverse=True))
        tfit = (d["alpha_s"], d["beta_s_mhz"], d.get("f_sat_mhz"), d.get("soft_mhz"))
        tall = freq_time(fall, *tfit)
        eall = exp_energy(tall, *d["exp"])
        t = freq_time(f, *tfit)
        e = exp_energy(t, *d["exp"])
        keep = pareto_mask(t, e)
        order = np.argsort(t[keep])
        out[(int(s), ins)] = ComputationModel(
            name=f"stage{s}/{ins}",
            freqs_mhz=tuple(f[keep][order].tolist()),
            times_s=tuple(t[keep][order].tolist()),
            energies_j=tuple(e[keep][order].tolist()),
            exp=tuple(d["exp"]),
            all_freqs_mhz=tuple(fall.tolist()),
            all_times_s=tuple(tall.tolist()),
            all_energies_j=tuple(eall.tolist()),
        )
    return out


def stage_profile_info(profile: str) -> dict:
    """Metadata of a committed stage profile fit: gpu, blocking_w, source, fit errors."""
    data = _load_json(str(STAGE_PARAMS))
    if profile not in data["profiles"]:
        raise OrreryInputError(f"no fitted stage profile {profile!r}; fitted: {sorted(data['profiles'])}")
    return {k: v for k, v in data["profiles"][profile].items() if k != "computations"}


def load_computations(profile: str) -> dict[tuple[int, str], ComputationModel]:
    """`profile` is a committed profile name (e.g. 'bloom-a100_sxm': the fit, no data needed) or a
    CSV path (`shared:gpu/perseus_stage_profile_bloom+a100_sxm_bf16.csv`: the real profile, read now)."""
    if profile in _load_json(str(STAGE_PARAMS))["profiles"]:
        return computation_models_from_params(profile)
    from orrery.traces.paths import resolve_data_path

    return computation_models_from_profile(load_stage_profile(resolve_data_path(profile)))
