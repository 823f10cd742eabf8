"""Zeus' batch-size optimiser across recurring jobs (NSDI'23).

Each recurrence the policy picks a batch size; within the recurrence it tunes the power limit
with Zeus' JIT profiler (one optimiser per batch size, so a size is profiled once and then
runs at its best limit). Exploration:
1. pruning: run the default size, then smaller sizes in turn until one fails to reach the
   target, then larger sizes likewise; sizes that failed are dropped;
2. Gaussian Thompson sampling over the survivors on -cost: each size's mean cost has a Gaussian
   posterior (prior: the mean and spread of all observed costs); sample, run the cheapest draw.
A recurrence is stopped early once its cost exceeds beta x the best cost so far (beta = 2).
"""

from __future__ import annotations

import math

import numpy as np

from orrery.policies.energy.base import EnergyDecision, EnergyPolicy, EnergyView
from orrery.policies.energy.zeus_power_limit import ZeusPowerLimit
from orrery.policies.registry import register


@register("energy", "zeus_batch_size")
class ZeusBatchSize(EnergyPolicy):
    def __init__(self, eta: float = 0.5, beta: float = 2.0, seed: int = 0, warmup_steps: int = 10,
                 profile_steps: int = 40, step_w: float = 25.0, prior_std_frac: float = 0.25):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if beta <= 1.0:
            raise ValueError(f"beta must be > 1, got {beta}")
        self.eta, self.beta = float(eta), float(beta)
        self.rng = np.random.default_rng(seed)
        self.pl_args = (warmup_steps, profile_steps, step_w)
        self.prior_std_frac = float(prior_std_frac)
        self.pl_opt: dict[int, ZeusPowerLimit] = {}
        self.current: int | None = None

    def _explore_order(self, sizes: list[int], default: int) -> list[int]:
        i = sizes.index(default)
        return [default] + sizes[:i][::-1] + sizes[i + 1:]

    def _next_prune(self, sizes: list[int], default: int, history) -> int | None:
        """The next size pruning still has to try, or None when pruning is over."""
        tried = {b: ok for b, _, ok in history}
        i = sizes.index(default)
        if default not in tried:
            return default
        for side in (sizes[:i][::-1], sizes[i + 1:]):
            for b in side:
                if b not in tried:
                    return b
                if not tried[b]:
                    break  # a failure ends this direction
        return None

    def _choose(self, view: EnergyView) -> int:
        rec = view.recurrence
        sizes = sorted(rec.batch_sizes)
        default = rec.default_batch_size if rec.default_batch_size in sizes else sizes[len(sizes) // 2]
        nxt = self._next_prune(sizes, default, rec.history)
        if nxt is not None:
            return nxt
        good: dict[int, list[float]] = {}
        failed = set()
        for b, c, ok in rec.history:
            (good.setdefault(b, []).append(c) if ok else failed.add(b))
        arms = {b: c for b, c in good.items() if b not in failed or b in good}
        if not arms:
            return default
        allc = np.concatenate([np.asarray(c) for c in arms.values()])
        prior_mu = float(allc.mean())
        prior_sd = max(float(allc.std()), self.prior_std_frac * abs(prior_mu), 1e-9)
        noise_sd = max(self.prior_std_frac * 0.2 * abs(prior_mu), 1e-9)
        best, best_draw = default, math.inf
        for b in sorted(arms):
            c = np.asarray(arms[b])
            prec = 1 / prior_sd**2 + len(c) / noise_sd**2
            mu = (prior_mu / prior_sd**2 + c.sum() / noise_sd**2) / prec
            draw = self.rng.normal(mu, 1 / math.sqrt(prec))
            if draw < best_draw:
                best, best_draw = b, draw
        return best

    def schedule(self, view: EnergyView) -> EnergyDecision:
        rec = view.recurrence
        if rec is None:  # not a recurring job: plain Zeus power-limit optimisation
            self.current = -1
            opt = self.pl_opt.setdefault(-1, ZeusPowerLimit(self.eta, *self.pl_args))
            return opt.schedule(view)
        new_recurrence = view.steps_done == 0 and view.last_window is None
        if new_recurrence or self.current is None:
            self.current = self._choose(view)
            ok_costs = [c for _, c, ok in rec.history if ok]
            stop = self.beta * min(ok_costs) if ok_costs else None
            opt = self.pl_opt.setdefault(self.current, ZeusPowerLimit(self.eta, *self.pl_args))
            if opt.chosen_w is None:  # restart profiling for a size that never finished it
                self.pl_opt[self.current] = opt = ZeusPowerLimit(self.eta, *self.pl_args)
            d = opt.schedule(view)
            return EnergyDecision(power_limit_w=d.power_limit_w, next_call_steps=d.next_call_steps,
                                  batch_size=self.current, early_stop_cost=stop)
        return self.pl_opt[self.current].schedule(view)
