"""Baseline: the GPU's default settings (maximum power limit and clocks) for the whole run."""

from __future__ import annotations

from orrery.policies.energy.base import EnergyDecision, EnergyPolicy, EnergyView
from orrery.policies.registry import register


@register("energy", "max_power")
class MaxPower(EnergyPolicy):
    """What a job gets when nobody tunes it: max power limit, max SM clock everywhere.

    `eta` is accepted and ignored so that a study can sweep `policy_params.eta` across policies.
    """

    def __init__(self, eta: float = 0.5):
        self.eta = float(eta)

    def schedule(self, view: EnergyView) -> EnergyDecision:
        freqs = None
        if view.pipeline is not None:
            freqs = tuple(min(view.pipeline.max_freq_mhz, view.sm_clock_max_mhz) for _ in view.pipeline.preds)
        return EnergyDecision(power_limit_w=view.power_limit_max_w, sm_freqs_mhz=freqs)
