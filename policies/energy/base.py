"""The energy domain's contract: what an energy/carbon policy sees and what it may decide.

The simulator (`sim/training.py`) and the real backend build the same `EnergyView` and accept
the same `EnergyDecision`. A policy is called at the start of a run and again when the previous
decision asked to be called back (after `next_call_steps` training steps or `next_call_s`
seconds); every call carries the measurement of the window that just ended, so a profiling
state machine (Zeus) needs nothing else.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from orrery.policies.registry import Contract, register_contract


@dataclass(frozen=True)
class Measurement:
    """One measured window at a fixed setting: steps done, seconds, joules (all GPUs)."""

    power_limit_w: float
    steps: int
    time_s: float
    energy_j: float


@dataclass(frozen=True)
class ComputationOption:
    """A pipeline computation's Pareto-optimal settings (sorted by time ascending)."""

    stage: int
    kind: str
    freqs_mhz: tuple[float, ...]
    times_s: tuple[float, ...]
    energies_j: tuple[float, ...]
    exp: tuple[float, float, float]  # fitted e(t) = a exp(b t) + c


@dataclass(frozen=True)
class PipelineView:
    """One pipeline's iteration DAG (1F1B) and each computation's choices."""

    n_stages: int
    n_microbatches: int
    preds: tuple[tuple[int, ...], ...]
    option_of: tuple[int, ...]  # computation index -> index into `options`
    options: tuple[ComputationOption, ...]
    blocking_w: float
    max_freq_mhz: float
    # Iteration time another pipeline needs (a straggler sets the pace); None: no straggler.
    straggler_time_s: float | None = None


@dataclass(frozen=True)
class RecurrenceView:
    """Zeus' recurring job: the batch sizes allowed and what earlier recurrences cost.

    history: (batch_size, cost, reached_target) per finished recurrence, oldest first.
    """

    batch_sizes: tuple[int, ...]
    default_batch_size: int
    history: tuple[tuple[int, float, bool], ...] = ()


@dataclass(frozen=True)
class EnergyView:
    time_s: float
    gpu: str
    n_gpus: int
    power_limit_min_w: float
    power_limit_max_w: float
    sm_clock_min_mhz: float
    sm_clock_max_mhz: float
    power_limit_w: float  # the setting in force
    steps_done: int = 0
    last_window: Measurement | None = None
    carbon_g_per_kwh: float | None = None
    # (time_s, g/kWh) per carbon interval up to now (Chase trains its forecaster on it).
    carbon_history: tuple[tuple[float, float], ...] = ()
    carbon_interval_s: float = 1800.0
    pipeline: PipelineView | None = None
    recurrence: RecurrenceView | None = None


@dataclass(frozen=True)
class EnergyDecision:
    """What to set. None leaves a knob as it is.

    power_limit_w: GPU power limit; sm_freqs_mhz: per pipeline computation (Perseus);
    batch_size: for the next recurrence; next_call_steps / next_call_s: when to ask again
    (None and None: never); early_stop_cost: stop this recurrence once its cost exceeds it;
    forecast_g_per_kwh: the policy's carbon forecast for the coming interval (recorded).
    """

    power_limit_w: float | None = None
    sm_freqs_mhz: tuple[float, ...] | None = None
    batch_size: int | None = None
    next_call_steps: int | None = None
    next_call_s: float | None = None
    early_stop_cost: float | None = None
    forecast_g_per_kwh: float | None = None
    info: dict = field(default_factory=dict, compare=False)


class EnergyPolicy(ABC):
    """Decides GPU power limits, SM frequencies and batch sizes for a training job."""

    policy_name: str = ""

    @abstractmethod
    def schedule(self, view: EnergyView) -> EnergyDecision:
        """Called at the start and whenever the previous decision asked to be called back."""

    def on_recurrence_end(self, batch_size: int, cost: float, reached_target: bool) -> None:  # noqa: B027
        """A recurring job finished (optional hook; the view's history carries the same)."""


def zeus_cost(eta: float, energy_j: float, time_s: float, p_max_w: float) -> float:
    """Zeus' energy-time cost: eta * E + (1 - eta) * P_max * T."""
    return eta * energy_j + (1.0 - eta) * p_max_w * time_s


def validate_decision(view: EnergyView, d: EnergyDecision) -> list[str]:
    problems: list[str] = []
    if not isinstance(d, EnergyDecision):
        return [f"decision is {type(d).__name__}, expected EnergyDecision"]
    if d.power_limit_w is not None:
        if not math.isfinite(d.power_limit_w) or not (
            view.power_limit_min_w - 1e-9 <= d.power_limit_w <= view.power_limit_max_w + 1e-9
        ):
            problems.append(f"power limit {d.power_limit_w} W outside "
                            f"[{view.power_limit_min_w}, {view.power_limit_max_w}]")
    if d.sm_freqs_mhz is not None:
        if view.pipeline is None or len(d.sm_freqs_mhz) != len(view.pipeline.preds):
            problems.append("sm_freqs_mhz given without a pipeline or of the wrong length")
        elif any(not (view.sm_clock_min_mhz - 1e-9 <= f <= view.sm_clock_max_mhz + 1e-9) for f in d.sm_freqs_mhz):
            problems.append("an SM frequency is outside the GPU's clock range")
    if d.batch_size is not None:
        if view.recurrence is None or d.batch_size not in view.recurrence.batch_sizes:
            problems.append(f"batch size {d.batch_size} not among the allowed sizes")
    if d.next_call_steps is not None and d.next_call_steps < 1:
        problems.append(f"next_call_steps {d.next_call_steps} < 1")
    if d.next_call_s is not None and not d.next_call_s > 0:
        problems.append(f"next_call_s {d.next_call_s} <= 0")
    return problems


def _sample_pipeline(rng: np.random.Generator) -> PipelineView:
    """A small 12-computation DAG (predecessors have lower indices) with made-up convex profiles."""
    preds = ((), (0,), (1,), (0,), (3, 2), (4,), (5, 1), (6,), (7, 2), (8,), (9,), (10,))
    opts = []
    for s in range(2):
        for kind, base in (("forward", 0.05), ("backward", 0.1)):
            f = np.arange(1410.0, 1000.0, -30.0)
            t = base * (0.3 + 0.7 * 1410.0 / f) * (1 + 0.05 * rng.random())
            e = 40.0 * base * np.exp(-8.0 * (t - t[0]) / t[0]) + 20 * base
            opts.append(ComputationOption(s, kind, tuple(f), tuple(t), tuple(e), (40 * base, -8 / t[0], 20 * base)))
    option_of = tuple(int(rng.integers(0, 4)) for _ in preds)
    return PipelineView(2, 3, preds, option_of, tuple(opts), 84.0, 1410.0)


def sample_views(rng: np.random.Generator) -> list[EnergyView]:
    """A run's worth of views: start, profiling windows, carbon changes, a pipeline, recurrences."""
    views = []
    pl = 300.0
    hist: list[tuple[float, float]] = [(i * 1800.0, 300 + 100 * math.sin(i / 7.6) + 10 * rng.random())
                                       for i in range(60)]
    for k in range(24):
        last = None
        if k:
            tps = 0.2 * (1 + 200.0 / pl)
            last = Measurement(pl, 20, 20 * tps, 20 * tps * min(pl, 220.0) + rng.random())
        views.append(EnergyView(
            time_s=60.0 * k, gpu="A40", n_gpus=1, power_limit_min_w=100.0, power_limit_max_w=300.0,
            sm_clock_min_mhz=210.0, sm_clock_max_mhz=1740.0, power_limit_w=pl, steps_done=20 * k,
            last_window=last, carbon_g_per_kwh=hist[48 + k // 2][1],
            carbon_history=tuple(hist[: 49 + k // 2]),
        ))
        pl = max(100.0, pl - 25.0)
    views.append(EnergyView(
        time_s=0.0, gpu="A100", n_gpus=2, power_limit_min_w=100.0, power_limit_max_w=400.0,
        sm_clock_min_mhz=210.0, sm_clock_max_mhz=1410.0, power_limit_w=400.0,
        pipeline=_sample_pipeline(rng),
    ))
    views.append(EnergyView(
        time_s=0.0, gpu="V100", n_gpus=1, power_limit_min_w=100.0, power_limit_max_w=250.0,
        sm_clock_min_mhz=135.0, sm_clock_max_mhz=1530.0, power_limit_w=250.0,
        recurrence=RecurrenceView((32, 64, 128, 256), 128, ((128, 100.0, True), (64, 120.0, True))),
    ))
    return views


register_contract(Contract(domain="energy", base=EnergyPolicy, sample_views=sample_views,
                           validate=validate_decision))
