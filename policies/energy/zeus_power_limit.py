"""Zeus' just-in-time power-limit optimizer (NSDI'23).

State machine: warm up at the maximum limit for `warmup_steps`, then profile each limit from
max down to min in `step_w` steps for `profile_steps` each, then run at the limit that minimises
the cost per step eta * E + (1 - eta) * P_max * T (P_max: the maximum power limit). Costs are
per step so that windows of different lengths compare fairly.
"""

from __future__ import annotations

from orrery.policies.energy.base import EnergyDecision, EnergyPolicy, EnergyView, zeus_cost
from orrery.policies.registry import register


class PowerLimitProfiler:
    """The profiling state machine, shared by Zeus and Chase. Its decisions carry
    `info["phase"]` ('warmup' or 'profile'), so a run that ends inside them (a job shorter than
    the profiling phase) can say so instead of reporting a choice that was never made."""

    def __init__(self, warmup_steps: int, profile_steps: int, step_w: float):
        if warmup_steps < 0 or profile_steps < 1 or step_w <= 0:
            raise ValueError("need warmup_steps >= 0, profile_steps >= 1, step_w > 0")
        self.warmup_steps, self.profile_steps, self.step_w = int(warmup_steps), int(profile_steps), float(step_w)
        self.limits: list[float] | None = None
        self.phase = "start"
        self.index = 0
        # power limit -> (seconds per step, joules per step)
        self.profile: dict[float, tuple[float, float]] = {}

    def _limits(self, view: EnergyView) -> list[float]:
        """Max down to min in `step_w` steps, ending AT the minimum: a GPU whose range is not a
        multiple of the step (RTX 6000: 100-260 W) is profiled at limits it can set, its
        lowest included."""
        out, w = [], view.power_limit_max_w
        while w >= view.power_limit_min_w - 1e-9:
            out.append(float(w))
            w -= self.step_w
        if out and out[-1] > view.power_limit_min_w + 1e-9:
            out.append(float(view.power_limit_min_w))
        return out

    def step(self, view: EnergyView) -> EnergyDecision | None:
        """The next profiling decision, or None once every limit is profiled."""
        if self.limits is None:
            self.limits = self._limits(view)
        if self.phase == "start":
            self.phase = "warmup" if self.warmup_steps else "profile"
            if self.warmup_steps:
                return EnergyDecision(power_limit_w=view.power_limit_max_w, next_call_steps=self.warmup_steps,
                                      info={"phase": "warmup"})
        if self.phase == "warmup":
            self.phase = "profile"
        elif self.phase == "profile" and view.last_window is not None and view.last_window.steps > 0:
            m = view.last_window
            self.profile[m.power_limit_w] = (m.time_s / m.steps, m.energy_j / m.steps)
            self.index += 1
        if self.phase == "profile":
            if self.index < len(self.limits):
                return EnergyDecision(power_limit_w=self.limits[self.index], next_call_steps=self.profile_steps,
                                      info={"phase": "profile"})
            self.phase = "done"
        return None


@register("energy", "zeus_power_limit")
class ZeusPowerLimit(EnergyPolicy):
    def __init__(self, eta: float = 0.5, warmup_steps: int = 10, profile_steps: int = 40, step_w: float = 25.0):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        self.eta = float(eta)
        self.profiler = PowerLimitProfiler(warmup_steps, profile_steps, step_w)
        self.chosen_w: float | None = None

    def schedule(self, view: EnergyView) -> EnergyDecision:
        if self.chosen_w is None:
            d = self.profiler.step(view)
            if d is not None:
                return d
            prof = self.profiler.profile
            if not prof:  # the run ended before any window: stay at max
                self.chosen_w = view.power_limit_max_w
            else:
                self.chosen_w = min(prof, key=lambda pl: (
                    zeus_cost(self.eta, prof[pl][1], prof[pl][0], view.power_limit_max_w), -pl))
        return EnergyDecision(power_limit_w=self.chosen_w, info={"chosen_power_limit_w": self.chosen_w})
