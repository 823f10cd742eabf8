"""Perseus (SOSP'24): remove energy bloat from pipeline-parallel training.

Energy of one iteration on S GPUs = sum_i e_i(t_i) + P_block * (S * T - sum_i t_i): a GPU that
waits draws blocking power. For a fixed T that is sum_i [e_i(t_i) - P_block * t_i] + const, so
the frontier solver minimises c_i(t) = a exp(b t) + c - P_block t, with t in whole time units
(floored profile times, 1 ms by default) and each computation between its fastest Pareto point
and the duration beyond which it stops paying off.

The solver (`policies/energy/frontier.py`) gives, per unit of iteration time, the cheapest
durations; each duration is mapped back to the Pareto-optimal frequency whose measured time is
nearest, and every plan is re-evaluated on the unquantised profile (the real time and energy),
keeping the plans no other plan beats in both (the monotone frontier).

Modes: intrinsic (no straggler): the fastest plan, with non-critical computations slowed for
free. Straggler-aware: another pipeline needs `straggler_time_s`, so pick the cheapest plan that
is not slower than that (the frontier point whose time is nearest below it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orrery.policies.energy.base import EnergyDecision, EnergyPolicy, EnergyView, PipelineView
from orrery.policies.energy.frontier import FrontierSolver, earliest_starts_batch
from orrery.policies.registry import register


@dataclass
class EvaluatedFrontier:
    """Frontier plans from fastest to slowest, re-evaluated on the unquantised profile."""

    times_s: np.ndarray  # iteration time of each plan
    energies_j: np.ndarray  # iteration energy (all stages, blocking included)
    freqs_mhz: np.ndarray  # (plans, computations)
    solver_steps: int
    raw_points: int  # plans before the dominated ones were dropped

    def pick(self, target_time_s: float | None) -> int:
        """Index of the plan to run: fastest, or cheapest not slower than the target."""
        if target_time_s is None:
            return 0
        ok = np.flatnonzero(self.times_s <= target_time_s * (1 + 1e-12))
        if len(ok) == 0:
            return 0
        return int(ok[np.argmin(self.energies_j[ok])])


def pipeline_energy(pipe: PipelineView, times: np.ndarray, energies: np.ndarray,
                    solver_order=None) -> tuple[np.ndarray, np.ndarray]:
    """Iteration time and energy of plans given per-computation (plans, n) times and energies."""
    from orrery.policies.energy.frontier import topological_order

    order = solver_order if solver_order is not None else topological_order(pipe.preds)
    _, T = earliest_starts_batch(order, pipe.preds, times)
    E = energies.sum(axis=1) + pipe.blocking_w * (pipe.n_stages * T - times.sum(axis=1))
    return T, E


def _solver_inputs(pipe: PipelineView, unit_s: float):
    d_min, d_max, costs = [], [], []
    per_option = []
    for opt in pipe.options:
        t = np.asarray(opt.times_s)
        lo = int(np.floor(t.min() / unit_s + 1e-9))
        hi = max(int(np.floor(t.max() / unit_s + 1e-9)), lo)
        d = np.arange(lo, hi + 1)
        a, b, c = opt.exp
        cost = a * np.exp(b * d * unit_s) + c - pipe.blocking_w * d * unit_s
        k = int(np.argmin(cost))  # beyond this, slowing down costs energy (blocking power)
        per_option.append((lo, lo + k, cost[: k + 1]))
    for o in pipe.option_of:
        lo, hi, cost = per_option[o]
        d_min.append(lo)
        d_max.append(hi)
        costs.append(cost)
    return d_min, d_max, costs


_CACHE: dict[tuple, EvaluatedFrontier] = {}


def compute_frontier(pipe: PipelineView, unit_s: float = 1e-3) -> EvaluatedFrontier:
    """The whole time-energy frontier of one pipeline iteration (cached per pipeline)."""
    key = (hash(pipe), pipe.n_stages, len(pipe.preds), unit_s)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    d_min, d_max, costs = _solver_inputs(pipe, unit_s)
    solver = FrontierSolver(pipe.preds, d_min, d_max, costs)
    fr = solver.solve()
    n = len(pipe.preds)
    P = len(fr)
    times = np.empty((P, n))
    energies = np.empty((P, n))
    freqs = np.empty((P, n))
    opt_of = np.asarray(pipe.option_of)
    for o, opt in enumerate(pipe.options):
        cols = np.flatnonzero(opt_of == o)
        if len(cols) == 0:
            continue
        t = np.asarray(opt.times_s)
        planned = fr.durations[:, cols].astype(float) * unit_s  # (P, k)
        hi = np.clip(np.searchsorted(t, planned), 1, len(t) - 1) if len(t) > 1 else np.zeros(planned.shape, int)
        lo = np.maximum(hi - 1, 0)
        idx = np.where(np.abs(t[hi] - planned) < np.abs(planned - t[lo]), hi, lo)  # nearest time
        times[:, cols] = t[idx]
        energies[:, cols] = np.asarray(opt.energies_j)[idx]
        freqs[:, cols] = np.asarray(opt.freqs_mhz)[idx]
    T, E = pipeline_energy(pipe, times, energies, solver.order)
    # Fastest first; keep a plan only if it is cheaper than every faster plan.
    order = np.lexsort((E, T))
    keep, best = [], np.inf
    for i in order:
        if E[i] < best - 1e-9:
            keep.append(i)
            best = E[i]
    keep = np.asarray(keep)
    out = EvaluatedFrontier(T[keep], E[keep], freqs[keep], fr.steps, P)
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[key] = out
    return out


@register("energy", "perseus")
class Perseus(EnergyPolicy):
    """Plan SM frequencies per computation from the iteration time-energy frontier."""

    def __init__(self, unit_s: float = 1e-3, straggler_aware: bool = True):
        if not unit_s > 0:
            raise ValueError(f"unit_s must be > 0, got {unit_s}")
        self.unit_s = float(unit_s)
        self.straggler_aware = bool(straggler_aware)

    def schedule(self, view: EnergyView) -> EnergyDecision:
        pipe = view.pipeline
        if pipe is None:  # nothing to plan: behave like the default settings
            return EnergyDecision(power_limit_w=view.power_limit_max_w)
        fr = compute_frontier(pipe, self.unit_s)
        target = pipe.straggler_time_s if self.straggler_aware else None
        k = fr.pick(target)
        freqs = tuple(float(np.clip(f, view.sm_clock_min_mhz, view.sm_clock_max_mhz)) for f in fr.freqs_mhz[k])
        return EnergyDecision(
            power_limit_w=view.power_limit_max_w, sm_freqs_mhz=freqs,
            info={"plan_time_s": float(fr.times_s[k]), "plan_energy_j": float(fr.energies_j[k]),
                  "frontier_points": len(fr.times_s), "solver_steps": fr.solver_steps,
                  "frontier_time_s": tuple(fr.times_s.tolist()), "frontier_energy_j": tuple(fr.energies_j.tolist())},
        )
