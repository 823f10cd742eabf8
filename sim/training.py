"""Training energy and carbon simulator: one job (or N recurrences of one job) over time.

Three kinds of run, chosen by the scenario:
- DNN job (`workload.kind = "dnn"`): data-parallel training of a Zeus workload to its target
  epochs. Time flows in *windows*: the policy sets a power limit and asks to be called back after
  some steps or seconds; within a window the step time and power come from the power-limit
  model (`hwmodels.gpu_energy.PowerLimitModel`) with optional per-window noise. The model is
  the committed fit (`workload.power_model = "fit"`, the default: no data needed) or the real
  sweep read at run time (`"measured"`: the measured points, interpolated linearly; the file
  per GPU family is `workload.power_data_paths.<family>`, by default
  `shared:gpu/zeus_power_limit_sweep_<family>.csv`).
  Energy = power x time per window; carbon = power x integral of the intensity over the window.
- Recurring job (`recurrence.n_recurrences > 0`, Zeus' batch-size optimiser): one run is N
  recurrences of the same job; before each the policy picks a batch size; a recurrence ends at
  the target epochs, at `max_epochs` (batch sizes with no epochs-to-target entry never reach
  it) or early, once its cost passes the policy's `early_stop_cost`. Metrics sum over
  recurrences, which is what makes the optimiser's exploration cost visible.
- Pipeline job (`workload.kind = "pipeline"`, Perseus): `data_parallel` 1F1B pipelines; each
  iteration every pipeline runs its DAG at the planned SM clocks (profiled time and energy per
  computation), then all-reduce waits for the slowest pipeline. Every GPU draws blocking power
  whenever it is not computing, over the whole iteration. Pipelines listed as stragglers run
  `straggler_slowdown` x slower; Perseus is told the straggler's iteration time.

Carbon (g) = energy (J) x intensity (g/kWh) / 3.6e6, integrated over the trace (piecewise
constant, repeated if the run outlives it). The run starts `carbon.start_offset_s` into the
trace so that forecasters have history.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Discriminator, Field, Tag, model_validator

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError, ScenarioError
from orrery.core.files import file_version
from orrery.hwmodels.gpu_energy import (
    MEASURED_SWEEPS,
    PowerLimitModel,
    get_power_limit_model,
    load_computations,
    measured_power_limit_models,
    power_limit_models,
    workload_key,
)
from orrery.hwmodels.gpus import get_gpu
from orrery.policies.energy.base import (
    ComputationOption,
    EnergyDecision,
    EnergyView,
    Measurement,
    PipelineView,
    RecurrenceView,
    zeus_cost,
)
from orrery.policies.registry import make_policy
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import RNGStreams
from orrery.sim.recorder import Recorder
from orrery.sim.scenario import Scenario
from orrery.traces.carbon import CarbonTrace, load_carbon_trace
from orrery.workloads.training import DATASET_SIZES, DEFAULT_EPOCHS, epochs_to_target, pipeline_1f1b

GPU_FAMILY = {"V100-SXM2-32GB": "v100", "V100-PCIE-32GB": "v100", "A40": "a40", "A100-SXM4-80GB": "a100", "A100-SXM4-40GB": "a100"}


class DNNJob(Strict):
    kind: Literal["dnn"] = "dnn"
    dataset: str = Field("imagenet", description="dataset of the Zeus workload")
    network: str = Field("resnet50", description="network of the Zeus workload")
    batch_size: int = Field(128, gt=0, description="per-job batch size (samples)")
    optimizer: str = Field("adadelta", description="optimizer as in the power-limit sweep")
    epochs: float | None = Field(None, gt=0, description="epochs to train; None: epochs to target")
    steps_per_epoch: int | None = Field(None, gt=0, description="None: dataset size / batch size")
    n_gpus: int = Field(1, ge=1, description="data-parallel GPUs (identical)")
    time_noise: float = Field(0.0, ge=0, le=0.5, description="relative std of per-window step time")
    power_model: Literal["fit", "measured", "transfer"] = Field(
        "fit", description="'fit': the committed parametric fit (no data needed); 'measured': interpolate "
                           "the real power-limit sweep, read at run time from power_data_paths; 'transfer': a "
                           "workload measured only at the GPU's maximum limit (anchor_*), its curve from the GPU "
                           "family's shape (`orrery fit gpu-energy`; the scenario's hw_params or the shipped one)")
    anchor_time_per_epoch_s: float | None = Field(
        None, gt=0, description="power_model = 'transfer': time per epoch measured at the maximum power limit")
    anchor_power_w: float | None = Field(
        None, gt=0, description="power_model = 'transfer': average power per GPU measured at the maximum limit")
    power_data_paths: dict[str, str] = Field(
        default_factory=dict,
        description="power_model = 'measured' only: sweep CSV per GPU family (v100, a40, a100), a path or "
                    "shared:<path>; a family not listed reads " + ", ".join(
                        f"{k}: {v}" for k, v in MEASURED_SWEEPS.items()))

    @model_validator(mode="after")
    def _check_power_model(self):
        if self.power_data_paths and self.power_model != "measured":
            raise ValueError("power_data_paths is read only with power_model = 'measured'")
        anchors = (self.anchor_time_per_epoch_s, self.anchor_power_w)
        if self.power_model == "transfer" and None in anchors:
            raise ValueError("power_model = 'transfer' needs anchor_time_per_epoch_s and anchor_power_w "
                             "(the workload measured at the GPU's maximum power limit)")
        if self.power_model != "transfer" and anchors != (None, None):
            raise ValueError("anchor_time_per_epoch_s / anchor_power_w are read only with power_model = 'transfer'")
        bad = [k for k in self.power_data_paths if k not in MEASURED_SWEEPS]
        if bad:
            raise ValueError(f"power_data_paths: unknown GPU family {bad}; families: {sorted(MEASURED_SWEEPS)}")
        return self


class PipelineJob(Strict):
    kind: Literal["pipeline"] = "pipeline"
    profile: str = Field("bloom-a100_sxm", description="committed stage-profile fit or CSV path (shared:...)")
    n_microbatches: int = Field(16, ge=1, description="microbatches per iteration (1F1B)")
    data_parallel: int = Field(1, ge=1, description="pipelines in data parallel")
    iterations: int = Field(100, ge=1, description="training iterations")
    straggler_slowdown: float = Field(1.0, ge=1.0, le=5.0, description="slowdown factor of straggling pipelines")
    straggler_pipelines: list[int] = Field(default_factory=list, description="indices of straggling pipelines")


class CarbonConfig(Strict):
    trace: str = Field("synthetic:US-CAL-CISO", description="synthetic:<zone>, constant:<g/kWh>, shared:<path> or a CSV path")
    start_offset_s: float = Field(86400.0, ge=0, description="where in the trace the run starts (s)")
    column: Literal["direct", "lca"] = "direct"
    duplicates: Literal["error", "first", "mean"] = "error"
    gaps: Literal["error", "ffill", "interpolate"] = "interpolate"


class RecurrenceConfig(Strict):
    n_recurrences: int = Field(0, ge=0, description="0: a single run; N: N recurrences of the job")
    batch_sizes: list[int] = Field(default_factory=list, description="allowed sizes; empty: every size with data")
    max_epochs: float = Field(100.0, gt=0, description="a recurrence that has not reached its target stops here")


def _workload_kind(v) -> str:
    """`kind` selects the workload type; a table without it is a DNN job."""
    if isinstance(v, dict):
        return v.get("kind", "dnn")
    return getattr(v, "kind", "dnn")


class TrainingScenario(Scenario):
    domain: ClassVar[str] = "training"

    gpu: str = Field("v100-pcie", description="GPU name or alias (hwmodels.gpus)")
    eta: float = Field(0.5, ge=0, le=1, description="weight of energy in the reported Zeus cost")
    workload: Annotated[Annotated[DNNJob, Tag("dnn")] | Annotated[PipelineJob, Tag("pipeline")],
                        Discriminator(_workload_kind)] = Field(default_factory=DNNJob)
    carbon: CarbonConfig = Field(default_factory=CarbonConfig)
    recurrence: RecurrenceConfig = Field(default_factory=RecurrenceConfig)
    hw_params: str | None = Field(
        None, description="GPU energy shape file (`orrery fit gpu-energy --out FILE`) for power_model = "
                          "'transfer'; default: the shipped fit")

    @model_validator(mode="after")
    def _check(self):
        try:
            get_gpu(self.gpu)
        except OrreryInputError as err:
            raise ValueError(str(err)) from None
        w = self.workload
        if isinstance(w, PipelineJob):
            bad = [p for p in w.straggler_pipelines if not 0 <= p < w.data_parallel]
            if bad:
                raise ValueError(f"straggler_pipelines {bad} outside 0..{w.data_parallel - 1}")
            if self.recurrence.n_recurrences:
                raise ValueError("recurrences apply to DNN jobs, not pipeline jobs")
        elif w.power_model == "transfer" and self.recurrence.n_recurrences:
            raise ValueError("power_model = 'transfer' describes one batch size (its anchor); recurrences "
                             "choose among batch sizes: use power_model = 'fit' or 'measured'")
        return self


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------


def _trace(sc: TrainingScenario, horizon_s: float) -> CarbonTrace:
    tr = load_carbon_trace(sc.carbon.trace, duration_s=horizon_s + sc.carbon.start_offset_s + 86400.0,
                           seed=sc.seed, column=sc.carbon.column, duplicates=sc.carbon.duplicates,
                           gaps=sc.carbon.gaps)
    return tr.shifted(sc.carbon.start_offset_s)


def _family(gpu: str) -> str:
    spec = get_gpu(gpu)
    fam = GPU_FAMILY.get(spec.name)
    if fam is None:
        raise ScenarioError(f"gpu = {gpu!r}: no fitted power-limit models for {spec.name}; "
                            f"fitted: {sorted(set(GPU_FAMILY.values()))}")
    return fam


def _pl_models(sc: TrainingScenario) -> dict[str, PowerLimitModel]:
    """The scenario's power-limit models: the committed fit, or the measured sweep read now."""
    fam, w = _family(sc.gpu), sc.workload
    if w.power_model == "measured":
        return measured_power_limit_models(w.power_data_paths.get(fam), fam)
    return power_limit_models(fam)


def _transfer_model(sc: TrainingScenario) -> PowerLimitModel:
    """The job's curve from its maximum-limit measurement and the GPU family's shape, on the
    GPU's 25 W grid (interpolated linearly between, as a measured sweep)."""
    from orrery.hwmodels.gpu_energy import clock_grid
    from orrery.hwmodels.gpu_energy_transfer import (
        DEFAULT_PARAMS_PATH,
        load_transfer_params,
        power_limit_curve,
    )
    from orrery.traces.paths import resolve_data_path

    w, spec = sc.workload, get_gpu(sc.gpu)
    path = resolve_data_path(sc.hw_params) if sc.hw_params else DEFAULT_PARAMS_PATH
    curve = power_limit_curve(load_transfer_params(path), sc.gpu)
    lo, hi = spec.power_limit_min_w, spec.power_limit_max_w
    pl = clock_grid(lo, hi, 25.0)[::-1]  # ascending, both ends kept
    t, p = curve.predict(pl, hi, w.anchor_time_per_epoch_s, w.anchor_power_w)
    return PowerLimitModel(key=f"transfer/{w.dataset}/{w.network}", gpu=spec.fit_family, power=None, time=None,
                           pl_min_w=float(lo), pl_max_w=float(hi), unit="epoch",
                           measured=tuple(zip(pl.tolist(), t.tolist(), p.tolist(), strict=True)),
                           source=f"transfer:{path.name}:{curve.trust}")


def _dnn_model(sc: TrainingScenario, batch_size: int) -> PowerLimitModel:
    w = sc.workload
    if w.power_model == "transfer":
        return _transfer_model(sc)
    return get_power_limit_model(_family(sc.gpu), workload_key(w.dataset, w.network, batch_size, w.optimizer),
                                 _pl_models(sc))


def _pl_range(sc: TrainingScenario, model: PowerLimitModel) -> tuple[float, float]:
    """Power limits the GPU allows *and* the model was fitted on."""
    spec = get_gpu(sc.gpu)
    lo, hi = max(spec.power_limit_min_w, model.pl_min_w), min(spec.power_limit_max_w, model.pl_max_w)
    if lo > hi:
        raise ScenarioError(f"no power limit both allowed on {spec.name} and fitted for {model.key}")
    return lo, hi


WINDOW_COLUMNS = ("recurrence", "batch_size", "t_start_s", "t_end_s", "power_limit_w", "steps", "power_w",
                  "energy_j", "carbon_g", "ci_mean_g_per_kwh")
FORECAST_COLUMNS = ("t_s", "forecast_g_per_kwh", "actual_g_per_kwh", "persistence_g_per_kwh")


@dataclass(frozen=True)
class JobRun:
    """One execution of a DNN training job: the scenario, its power-limit model and carbon
    trace, where it starts (`t0_s`), how many steps it needs at which batch size, and, for
    recurring jobs, the recurrence index and view, the early-stop cost threshold and the first
    decision (the one that chose the batch size)."""

    sc: TrainingScenario
    model: PowerLimitModel
    trace: CarbonTrace
    total_steps: float
    batch_size: int
    t0_s: float = 0.0
    recurrence: int = 0
    rec_view: RecurrenceView | None = None
    early_stop_cost: float | None = None
    first: EnergyDecision | None = None
    horizon_s: float | None = None


def _run_dnn_once(job: JobRun, policy, rng: np.random.Generator, rec: Recorder) -> dict[str, float]:
    """Run one job to `job.total_steps`, recording its control windows (`windows`) and the
    policy's carbon forecasts (`forecast`) in `rec`; returns time, energy, carbon, steps, stopped."""
    sc, model, trace = job.sc, job.model, job.trace
    t0, total_steps, batch_size, recurrence = job.t0_s, job.total_steps, job.batch_size, job.recurrence
    early_stop_cost, horizon_s = job.early_stop_cost, job.horizon_s
    windows = rec.table("windows", WINDOW_COLUMNS)
    forecasts = rec.table("forecast", FORECAST_COLUMNS)
    spec = get_gpu(sc.gpu)
    lo, hi = _pl_range(sc, model)
    n_gpus = sc.workload.n_gpus
    steps_per_epoch = _steps_per_epoch(sc, batch_size)
    t, steps, energy, carbon = t0, 0.0, 0.0, 0.0
    noise_steps = 0.0  # sum of steps x their time-noise factor: the run's realised noise
    pl = hi
    last: Measurement | None = None
    decision = job.first
    stopped = False
    # the latest decision was a profiling one (warmup or a profiled limit)
    profiling = decision is not None and decision.info.get("phase") in ("warmup", "profile")
    hist_n = 60
    while steps < total_steps - 1e-9:
        if decision is None:
            view = EnergyView(
                time_s=t, gpu=spec.name, n_gpus=n_gpus, power_limit_min_w=lo, power_limit_max_w=hi,
                sm_clock_min_mhz=spec.sm_clock_min_mhz, sm_clock_max_mhz=spec.sm_clock_max_mhz,
                power_limit_w=pl, steps_done=int(steps), last_window=last,
                carbon_g_per_kwh=trace.value_at(t), carbon_history=trace.history(t, hist_n),
                carbon_interval_s=trace.interval_s, recurrence=job.rec_view,
            )
            decision = policy.schedule(view)
            profiling = decision.info.get("phase") in ("warmup", "profile")
        if decision.power_limit_w is not None:
            if not lo - 1e-9 <= decision.power_limit_w <= hi + 1e-9:
                raise OrreryInputError(f"policy {sc.policy!r} set power limit {decision.power_limit_w} W "
                                       f"outside [{lo}, {hi}] W")
            pl = float(decision.power_limit_w)
        if decision.forecast_g_per_kwh is not None:
            k0 = decision.info.get("forecast_interval_start_s", t)
            forecasts.append(k0, decision.forecast_g_per_kwh, trace.value_at(k0),
                             trace.value_at(k0 - trace.interval_s))
        noise = float(np.exp(rng.normal(0.0, sc.workload.time_noise))) if sc.workload.time_noise else 1.0
        step_s = float(model.time_s(pl)) / steps_per_epoch * noise
        power = float(model.power_w(pl)) * n_gpus
        left = total_steps - steps
        if decision.next_call_steps is not None:
            w_steps = min(float(decision.next_call_steps), left)
        elif decision.next_call_s is not None:
            w_steps = min(decision.next_call_s / step_s, left)
        else:
            w_steps = left
        # Early stop: the cost reaches the threshold part-way through the window.
        if early_stop_cost is not None:
            c_now = zeus_cost(sc.eta, energy, t - t0, hi)
            c_rate = sc.eta * power + (1 - sc.eta) * hi  # cost per second at this setting
            room = (early_stop_cost - c_now) / c_rate / step_s
            if room < w_steps:
                w_steps, stopped = max(room, 0.0), True
        if horizon_s is not None and t + w_steps * step_s > horizon_s:
            w_steps, stopped = max((horizon_s - t) / step_s, 0.0), True
        dur = w_steps * step_s
        e = power * dur
        ci = float(trace.integral(t, t + dur))
        c = power * ci / 3.6e6
        windows.append(recurrence, batch_size, t, t + dur, pl, w_steps, power, e, c,
                       ci / dur if dur > 0 else trace.value_at(t))
        t += dur
        steps += w_steps
        noise_steps += w_steps * noise
        energy += e
        carbon += c
        last = Measurement(pl, max(int(round(w_steps)), 0), dur, e)
        decision = None
        if stopped:
            break
    return {"time_s": t - t0, "energy_j": energy, "carbon_g": carbon, "steps": steps, "stopped": stopped,
            "cost": zeus_cost(sc.eta, energy, t - t0, hi), "p_max_w": hi, "ended_while_profiling": profiling,
            "noise_mean": noise_steps / steps if steps > 0 else 1.0}


def _steps_per_epoch(sc: TrainingScenario, batch_size: int) -> float:
    w = sc.workload
    if w.steps_per_epoch is not None:
        return float(w.steps_per_epoch)
    size = DATASET_SIZES.get(w.dataset)
    if size is None:
        raise ScenarioError(f"workload.dataset = {w.dataset!r}: unknown size; set workload.steps_per_epoch")
    return float(math.ceil(size / batch_size))


def _epochs(sc: TrainingScenario, batch_size: int) -> float | None:
    w = sc.workload
    if w.epochs is not None and not sc.recurrence.n_recurrences:
        return float(w.epochs)
    e = epochs_to_target(w.dataset, w.network, batch_size)
    if e is None and not sc.recurrence.n_recurrences:
        return DEFAULT_EPOCHS
    return e


def _dnn_result(sc: TrainingScenario, frames: dict[str, pd.DataFrame], metrics: dict[str, float]) -> RunResult:
    table = frames["windows"]
    series = {}
    if len(frames["forecast"]):
        fc = frames["forecast"]
        series["forecast"] = fc
        metrics["forecast_mape_pct"] = float(np.mean(np.abs(fc.forecast_g_per_kwh - fc.actual_g_per_kwh) / fc.actual_g_per_kwh) * 100)
        metrics["persistence_mape_pct"] = float(np.mean(np.abs(fc.persistence_g_per_kwh - fc.actual_g_per_kwh) / fc.actual_g_per_kwh) * 100)
    return RunResult(metrics={k: float(v) for k, v in metrics.items()}, table=table, series=series)


def run_dnn(sc: TrainingScenario) -> RunResult:
    w = sc.workload
    model = _dnn_model(sc, w.batch_size)
    rng = RNGStreams(sc.seed)["step_noise"]
    policy = make_policy("energy", sc.policy, sc.policy_params)
    epochs = _epochs(sc, w.batch_size)
    spe = _steps_per_epoch(sc, w.batch_size)
    total = epochs * spe
    lo, hi = _pl_range(sc, model)
    est = float(model.time_s(lo)) * epochs * 1.2
    trace = _trace(sc, est)
    rec = Recorder()
    r = _run_dnn_once(JobRun(sc, model, trace, total, w.batch_size, horizon_s=sc.horizon_s), policy, rng, rec)
    frames = rec.frames()
    # the reference (everything at the maximum limit) sees the run's own step-time noise
    # (common random numbers): a policy that stays at the maximum saves exactly 0%
    e_max = float(model.energy_j(hi)) * epochs * w.n_gpus * r["noise_mean"]
    t_max = float(model.time_s(hi)) * epochs * r["noise_mean"]
    pls = frames["windows"]["power_limit_w"].to_numpy()
    metrics = {
        "energy_j": r["energy_j"], "time_s": r["time_s"], "carbon_g": r["carbon_g"], "cost": r["cost"],
        "avg_power_w": r["energy_j"] / r["time_s"] if r["time_s"] > 0 else 0.0,
        "final_power_limit_w": float(pls[-1]) if len(pls) else hi, "epochs": epochs,
        "energy_saving_vs_max_pct": (1 - r["energy_j"] / e_max) * 100, "slowdown_vs_max_pct": (r["time_s"] / t_max - 1) * 100,
        # 1: the job ended before the policy finished profiling (Zeus/Chase): its power limit was
        # never chosen, so the savings above judge a profiling run, not the policy's choice
        "ended_while_profiling": float(r["ended_while_profiling"]),
    }
    return _dnn_result(sc, frames, metrics)


def run_recurring(sc: TrainingScenario) -> RunResult:
    """N recurrences of one job; the policy picks each one's batch size (Zeus' optimiser)."""
    w = sc.workload
    fam = _family(sc.gpu)
    models = _pl_models(sc)
    prefix = f"{w.dataset}/{w.network}/b"
    with_model = {int(k[len(prefix):].split("/")[0]) for k in models if k.startswith(prefix) and k.endswith("/" + w.optimizer)}
    sizes = sorted(set(sc.recurrence.batch_sizes) or with_model)
    missing = [b for b in sizes if b not in with_model]
    if missing or not sizes:
        raise ScenarioError(f"recurrence.batch_sizes: no {w.power_model} power-limit model for {missing or sizes} "
                            f"of {w.dataset}/{w.network} on {fam}; available: {sorted(with_model)}")
    default = w.batch_size if w.batch_size in sizes else sizes[len(sizes) // 2]
    policy = make_policy("energy", sc.policy, sc.policy_params)
    rng = RNGStreams(sc.seed)["step_noise"]
    horizon_guess = sum(float(models[workload_key(w.dataset, w.network, b, w.optimizer)].time_s(
        models[workload_key(w.dataset, w.network, b, w.optimizer)].pl_min_w)) for b in sizes) * sc.recurrence.max_epochs
    trace = _trace(sc, min(horizon_guess, 365 * 86400.0))
    spec = get_gpu(sc.gpu)
    rec = Recorder()
    history: list[tuple[int, float, bool]] = []
    rows = {c: [] for c in ("recurrence", "batch_size", "reached_target", "epochs", "time_s", "energy_j",
                            "carbon_g", "cost", "early_stopped")}
    t = 0.0
    for r in range(sc.recurrence.n_recurrences):
        rec_view = RecurrenceView(tuple(sizes), default, tuple(history))
        model0 = _dnn_model(sc, default)
        lo, hi = _pl_range(sc, model0)
        view = EnergyView(time_s=t, gpu=spec.name, n_gpus=w.n_gpus, power_limit_min_w=lo, power_limit_max_w=hi,
                          sm_clock_min_mhz=spec.sm_clock_min_mhz, sm_clock_max_mhz=spec.sm_clock_max_mhz,
                          power_limit_w=hi, carbon_g_per_kwh=trace.value_at(t), carbon_interval_s=trace.interval_s,
                          recurrence=rec_view)
        first = policy.schedule(view)
        bs = first.batch_size if first.batch_size is not None else default
        if bs not in sizes:
            raise OrreryInputError(f"policy {sc.policy!r} chose batch size {bs} not in {sizes}")
        model = _dnn_model(sc, bs)
        need = epochs_to_target(w.dataset, w.network, bs)
        reached = need is not None and need <= sc.recurrence.max_epochs
        epochs = need if reached else sc.recurrence.max_epochs
        total = epochs * _steps_per_epoch(sc, bs)
        # The first decision chose the batch size; the power limit comes from later calls.
        first_pl = first if first.power_limit_w is not None or first.next_call_steps is not None else None
        res = _run_dnn_once(JobRun(sc, model, trace, total, bs, t0_s=t, recurrence=r, rec_view=rec_view,
                                   early_stop_cost=first.early_stop_cost, first=first_pl), policy, rng, rec)
        ok = reached and not res["stopped"]
        history.append((bs, res["cost"], ok))
        policy.on_recurrence_end(bs, res["cost"], ok)
        for k, v in (("recurrence", r), ("batch_size", bs), ("reached_target", ok),
                     ("epochs", res["steps"] / _steps_per_epoch(sc, bs)), ("time_s", res["time_s"]),
                     ("energy_j", res["energy_j"]), ("carbon_g", res["carbon_g"]), ("cost", res["cost"]),
                     ("early_stopped", res["stopped"])):
            rows[k].append(v)
        t += res["time_s"]
    table = pd.DataFrame(rows)
    # Oracle: the cheapest batch size at its best power limit, had we known it.
    oracle = math.inf
    for b in sizes:
        need = epochs_to_target(w.dataset, w.network, b)
        if need is None or need > sc.recurrence.max_epochs:
            continue
        m = _dnn_model(sc, b)
        lo, hi = _pl_range(sc, m)
        pls = np.arange(hi, lo - 1e-9, -25.0)
        oracle = min(oracle, float(np.min(zeus_cost(sc.eta, m.energy_j(pls) * need * w.n_gpus, m.time_s(pls) * need, hi))))
    ok = table[table.reached_target]
    metrics = {
        "energy_j": float(table.energy_j.sum()), "time_s": float(table.time_s.sum()),
        "carbon_g": float(table.carbon_g.sum()), "cost": float(table.cost.sum()),
        "avg_power_w": float(table.energy_j.sum() / max(table.time_s.sum(), 1e-9)),
        "recurrences_reached_target": float(len(ok)),
        "final_batch_size": float(table.batch_size.iloc[-1]) if len(table) else float(default),
        "last5_cost_over_oracle": float(table.cost.tail(5).mean() / oracle) if len(table) and oracle < math.inf else math.nan,
        "cost_regret": float(table.cost.sum() - oracle * len(table)) if oracle < math.inf else math.nan,
    }
    series = {"windows": rec.table("windows", WINDOW_COLUMNS).to_frame()}
    return RunResult(metrics=metrics, table=table, series=series)


# ----------------------------------------------------------------------------------------------
# pipeline (Perseus)
# ----------------------------------------------------------------------------------------------


def pipeline_view(sc: TrainingScenario) -> tuple[PipelineView, dict, list]:
    """The Perseus view of the scenario's pipeline (no straggler information yet)."""
    w = sc.workload
    comps = load_computations(w.profile)
    keys = sorted(comps)
    n_stages = max(s for s, _ in keys) + 1
    ops, preds = pipeline_1f1b(n_stages, w.n_microbatches)
    options = tuple(ComputationOption(s, k, comps[(s, k)].freqs_mhz, comps[(s, k)].times_s,
                                      comps[(s, k)].energies_j, comps[(s, k)].exp) for s, k in keys)
    spec = get_gpu(sc.gpu)
    fmax = min(spec.sm_clock_max_mhz, max(max(c.all_freqs_mhz or c.freqs_mhz) for c in comps.values()))
    pv = PipelineView(n_stages, w.n_microbatches, tuple(preds), tuple(keys.index((c.stage, c.kind)) for c in ops),
                      options, spec.blocking_w, fmax)
    return pv, comps, ops


def execute_iteration(pv: PipelineView, comps: dict, ops: list, freqs: tuple[float, ...], slowdown: float = 1.0):
    """One pipeline iteration at the given clocks: (time, per-computation times, energies, starts)."""
    from orrery.policies.energy.frontier import earliest_starts, topological_order

    t = np.empty(len(ops))
    e = np.empty(len(ops))
    for i, (c, f) in enumerate(zip(ops, freqs, strict=True)):
        t[i], e[i] = comps[(c.stage, c.kind)].at_frequency(f)
    t *= slowdown
    es, T = earliest_starts(topological_order(pv.preds), pv.preds, t.tolist())
    return float(T), t, e, np.asarray(es)


def run_pipeline(sc: TrainingScenario) -> RunResult:
    w = sc.workload
    spec = get_gpu(sc.gpu)
    pv, comps, ops = pipeline_view(sc)
    policy = make_policy("energy", sc.policy, sc.policy_params)

    def view_for(p: PipelineView) -> EnergyView:
        return EnergyView(time_s=0.0, gpu=spec.name, n_gpus=w.data_parallel * pv.n_stages,
                          power_limit_min_w=spec.power_limit_min_w, power_limit_max_w=spec.power_limit_max_w,
                          sm_clock_min_mhz=spec.sm_clock_min_mhz, sm_clock_max_mhz=spec.sm_clock_max_mhz,
                          power_limit_w=spec.power_limit_max_w, pipeline=p)

    def check(d: EnergyDecision) -> tuple[float, ...]:
        freqs = d.sm_freqs_mhz or tuple(pv.max_freq_mhz for _ in ops)
        if len(freqs) != len(ops) or any(not spec.sm_clock_min_mhz - 1e-9 <= f <= spec.sm_clock_max_mhz + 1e-9 for f in freqs):
            raise OrreryInputError(f"policy {sc.policy!r} returned SM clocks outside "
                                   f"[{spec.sm_clock_min_mhz}, {spec.sm_clock_max_mhz}] MHz or of the wrong length")
        return tuple(freqs)

    s = w.straggler_slowdown
    stragglers = set(w.straggler_pipelines) if s > 1.0 else set()
    if s > 1.0 and not stragglers:
        stragglers = {0}
    d_free = policy.schedule(view_for(pv))
    T_str = None
    if stragglers:
        # A straggler runs its own (intrinsic) plan, slowed; the others learn its pace.
        f_str = check(d_free)
        T_str, *_ = execute_iteration(pv, comps, ops, f_str, s)
        d_other = policy.schedule(view_for(PipelineView(**{**pv.__dict__, "straggler_time_s": T_str})))
        f_other = check(d_other)
        decision_info = d_other.info
    else:
        f_other = check(d_free)
        decision_info = d_free.info
    per_pipe = []
    for p in range(w.data_parallel):
        if p in stragglers:
            per_pipe.append((p, *execute_iteration(pv, comps, ops, check(d_free), s), check(d_free)))
        else:
            per_pipe.append((p, *execute_iteration(pv, comps, ops, f_other, 1.0), f_other))
    T_iter = max(x[1] for x in per_pipe)  # data-parallel all-reduce waits for the slowest
    rows = {c: [] for c in ("pipeline", "stage", "straggler", "busy_s", "blocking_s", "compute_energy_j",
                            "blocking_energy_j", "energy_j", "mean_freq_mhz")}
    stage_of = np.array([c.stage for c in ops])
    for p, T_p, t, e, _es, freqs in per_pipe:
        fr = np.asarray(freqs)
        for st in range(pv.n_stages):
            m = stage_of == st
            busy = float(t[m].sum())
            block = T_iter - busy
            rows["pipeline"].append(p)
            rows["stage"].append(st)
            rows["straggler"].append(p in stragglers)
            rows["busy_s"].append(busy)
            rows["blocking_s"].append(block)
            rows["compute_energy_j"].append(float(e[m].sum()))
            rows["blocking_energy_j"].append(pv.blocking_w * block)
            rows["energy_j"].append(float(e[m].sum()) + pv.blocking_w * block)
            rows["mean_freq_mhz"].append(float(fr[m].mean()))
        del T_p
    table = pd.DataFrame(rows)
    E_iter = float(table.energy_j.sum())
    # Baseline: every computation at the maximum clock, same stragglers.
    fmax = tuple(pv.max_freq_mhz for _ in ops)
    Tb = [execute_iteration(pv, comps, ops, fmax, s if p in stragglers else 1.0) for p in range(w.data_parallel)]
    Tb_iter = max(x[0] for x in Tb)
    Eb = sum(float(x[2].sum()) + pv.blocking_w * (pv.n_stages * Tb_iter - float(x[1].sum())) for x in Tb)
    total_t = T_iter * w.iterations
    total_e = E_iter * w.iterations
    trace = _trace(sc, total_t)
    carbon = float(trace.carbon_g(total_e / total_t, 0.0, total_t))
    metrics = {
        "energy_j": total_e, "time_s": total_t, "carbon_g": carbon, "cost": zeus_cost(sc.eta, total_e, total_t, spec.power_limit_max_w * pv.n_stages * w.data_parallel),
        "avg_power_w": E_iter / T_iter, "iteration_time_s": T_iter, "iteration_energy_j": E_iter,
        "energy_saving_vs_max_pct": (1 - E_iter / Eb) * 100, "slowdown_vs_max_pct": (T_iter / Tb_iter - 1) * 100,
        "straggler_time_s": T_str if T_str is not None else math.nan,
    }
    series = {}
    if "frontier_time_s" in decision_info:
        series["frontier"] = pd.DataFrame({"time_s": decision_info["frontier_time_s"],
                                           "energy_j": decision_info["frontier_energy_j"]})
    return RunResult(metrics={k: float(v) for k, v in metrics.items()}, table=table, series=series)


def check_training(sc: TrainingScenario) -> None:
    """What a training run rejects as input, without simulating: the GPU (checked at load), the
    policy and its parameters, and the carbon trace (a file is parsed whole, as the run does)."""
    get_gpu(sc.gpu)
    make_policy("energy", sc.policy, sc.policy_params)
    c = sc.carbon
    _check_carbon(c.trace, c.column, c.duplicates, c.gaps, sc.seed, _file_stamp(c.trace))


def _file_stamp(spec: str) -> tuple[str, int, int] | None:
    """`file_version` of a carbon trace that is a file (None: a generator spec)."""
    from orrery.traces.paths import resolve_data_path

    try:
        return file_version(resolve_data_path(spec))
    except (OrreryInputError, OSError, ValueError):
        return None


@functools.lru_cache(maxsize=64)
def _check_carbon(spec: str, column: str, duplicates: str, gaps: str, seed: int, stamp) -> None:
    """Parse a carbon trace once per (spec, options, file version): a study's groups share it."""
    load_carbon_trace(spec, duration_s=86400.0, seed=seed, column=column, duplicates=duplicates, gaps=gaps)


def run_training(scenario: Scenario) -> RunResult:
    if not isinstance(scenario, TrainingScenario):
        scenario = TrainingScenario.from_dict(scenario.model_dump())
    if isinstance(scenario.workload, PipelineJob):
        res = run_pipeline(scenario)
    elif scenario.recurrence.n_recurrences:
        res = run_recurring(scenario)
    else:
        res = run_dnn(scenario)
    # a metric that does not apply to this kind of run (a forecast error without a forecast)
    # is reported as NaN, so every run of a study has every metric
    for name in TRAINING_METRICS:
        res.metrics.setdefault(name, float("nan"))
    return res


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


TRAINING_METRICS: dict[str, Literal["higher", "lower"]] = {
    "energy_j": "lower", "time_s": "lower", "carbon_g": "lower", "cost": "lower",
    "avg_power_w": "lower", "iteration_time_s": "lower", "iteration_energy_j": "lower",
    "energy_saving_vs_max_pct": "higher", "slowdown_vs_max_pct": "lower",
    "forecast_mape_pct": "lower", "persistence_mape_pct": "lower", "cost_regret": "lower",
    "last5_cost_over_oracle": "lower",
}

register_domain(Domain(
    name="training", scenario_type=TrainingScenario, run=run_training, check=check_training, policy_domain="energy",
    metrics=TRAINING_METRICS,
    plots="orrery.experiments.plotting:training_plots",
    description="training energy and carbon: GPU power limits, SM clocks, batch sizes (Zeus, Perseus, Chase)",
))
