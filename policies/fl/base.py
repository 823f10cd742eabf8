"""FL resource management: what a policy sees (`FLView`) and what it decides (`FLDecision`).

Devices check in over time; the simulator (or a real FL server) groups them into *atoms*:
devices that meet exactly the same set of the active jobs' requirements (the cells of the
Venn diagram of eligibility sets). A policy does not see devices one by one (a million
phones would make that too slow); it sees per-atom supply rates, per-speed-tier latency
figures and the jobs, and returns, for every atom, the jobs in the order in which that atom's
devices should be handed out (the executor gives each checking-in device to the first job
in its atom's list that still needs devices and whose speed-tier limit admits it), or asks for
a uniformly random split among the listed jobs (`split="random"`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from orrery.policies.registry import Contract, register_contract


@dataclass(frozen=True)
class JobView:
    job_id: int
    arrival_s: float
    requirement: int  # index into FLView.requirements
    participants: int  # target responses per round
    rounds: int
    completed_rounds: int
    remaining_demand: int  # devices still to assign in the current round (0: round not collecting)
    round_requested_s: float  # when the current round asked for devices
    deadline_s: float
    work_units: float
    model_bytes: float

    @property
    def remaining_rounds(self) -> int:
        return self.rounds - self.completed_rounds

    @property
    def remaining_service(self) -> int:
        """Device-rounds still to serve (participants x remaining rounds)."""
        return self.remaining_rounds * self.participants


@dataclass(frozen=True)
class AtomView:
    mask: int  # bit i set: this atom's devices meet FLView.requirements[i]
    supply_per_s: float  # recent rate of idle check-ins
    tier_supply_per_s: tuple[float, ...]  # the same split by speed tier (tier 0 fastest)

    def eligible_for(self, requirement: int) -> bool:
        return bool((self.mask >> requirement) & 1)


@dataclass(frozen=True)
class TierView:
    """Latency figures of the devices in tiers 0..tier together (cumulative)."""

    tier: int
    s_per_unit_tail: float  # compute seconds per work unit at the tail quantile
    bw_down_tail_bytes_s: float  # download bandwidth at the (low) tail quantile
    bw_up_tail_bytes_s: float

    def response_tail_s(self, work_units: float, model_bytes: float) -> float:
        return (work_units * self.s_per_unit_tail + model_bytes / self.bw_down_tail_bytes_s
                + model_bytes / self.bw_up_tail_bytes_s)


@dataclass(frozen=True)
class FLView:
    time_s: float
    requirements: tuple[str, ...]
    jobs: tuple[JobView, ...]  # arrived, unfinished jobs
    atoms: tuple[AtomView, ...]
    tiers: tuple[TierView, ...]
    overcommit: float
    deadline_from: str = "filled"  # the round rule: "request" (Venn's) or "filled" (orrery's)

    def eligible_jobs(self, atom: AtomView) -> list[JobView]:
        return [j for j in self.jobs if atom.eligible_for(j.requirement)]


@dataclass(frozen=True)
class FLDecision:
    order: dict[int, tuple[int, ...]]  # atom mask -> job ids, highest priority first
    split: str = "priority"  # "priority" or "random"
    max_tier: dict[int, int] = field(default_factory=dict)  # job id -> slowest tier allowed


class FLPolicy(ABC):
    """Decide how checking-in devices are shared among FL jobs."""

    policy_name = ""
    # "rounds": the decision may change whenever a round starts (remaining demand, rejection,
    # supply); "jobs": it depends only on which jobs are active (and their fixed attributes),
    # so an executor asks again only on job arrival and completion
    replan_on = "rounds"

    @abstractmethod
    def schedule(self, view: FLView) -> FLDecision:
        """Called on job arrival, round fill, round close (and periodically)."""


def demanding(view: FLView) -> list[JobView]:
    return [j for j in view.jobs if j.remaining_demand > 0]


def order_by_key(view: FLView, key, demanding_only: bool = True) -> FLDecision:
    """Every atom lists its eligible, demanding jobs (all active jobs when not
    `demanding_only`: the executor skips those that need no devices) sorted by `key(job)`
    (ties: job id)."""
    jobs = sorted(demanding(view) if demanding_only else view.jobs, key=lambda j: (key(j), j.job_id))
    order = {a.mask: tuple(j.job_id for j in jobs if a.eligible_for(j.requirement)) for a in view.atoms}
    return FLDecision(order=order)


# ----------------------------------------------------------------------------- contract
def validate(view: FLView, decision: FLDecision) -> list[str]:
    problems: list[str] = []
    if not isinstance(decision, FLDecision):
        return [f"decision is {type(decision).__name__}, expected FLDecision"]
    if decision.split not in ("priority", "random"):
        problems.append(f"split {decision.split!r} is not 'priority' or 'random'")
    jobs = {j.job_id: j for j in view.jobs}
    atoms = {a.mask: a for a in view.atoms}
    for mask, ids in decision.order.items():
        if mask not in atoms:
            problems.append(f"unknown atom {mask}")
            continue
        if len(set(ids)) != len(ids):
            problems.append(f"atom {mask}: a job is listed twice")
        for jid in ids:
            j = jobs.get(jid)
            if j is None:
                problems.append(f"atom {mask}: unknown job {jid}")
            elif not atoms[mask].eligible_for(j.requirement):
                problems.append(f"atom {mask}: job {jid} is not eligible for these devices")
    for jid, t in decision.max_tier.items():
        if jid not in jobs:
            problems.append(f"max_tier for unknown job {jid}")
        elif not (0 <= t < max(len(view.tiers), 1)):
            problems.append(f"job {jid}: tier {t} outside 0..{len(view.tiers) - 1}")
    return problems


def sample_views(rng: np.random.Generator) -> list[FLView]:
    """Random views: nested requirements, a few atoms, 0-12 jobs (some not collecting)."""
    views = []
    reqs = ("req1", "req2", "req3", "req4")
    masks = (0b0000, 0b0001, 0b0011, 0b0101, 0b1111)
    tiers = tuple(TierView(k, 0.05 * (k + 1), 2e6 / (k + 1), 5e5 / (k + 1)) for k in range(3))
    for i in range(8):
        atoms = tuple(
            AtomView(m, float(s), tuple(float(x) for x in s * rng.dirichlet(np.ones(3))))
            for m, s in zip(masks, rng.uniform(0, 20, len(masks)), strict=True)
        )
        n_jobs = 0 if i == 0 else int(rng.integers(1, 13))
        jobs = []
        for jid in range(n_jobs):
            p = int(rng.integers(1, 200))
            r = int(rng.integers(1, 50))
            jobs.append(JobView(
                job_id=jid * 3 + 1, arrival_s=float(rng.uniform(0, 1000)), requirement=int(rng.integers(0, 4)),
                participants=p, rounds=r, completed_rounds=int(rng.integers(0, r)),
                remaining_demand=int(rng.integers(0, 2 * p)) if rng.random() < 0.8 else 0,
                round_requested_s=1000.0, deadline_s=float(rng.uniform(300, 1000)),
                work_units=float(rng.uniform(10, 1000)), model_bytes=float(rng.uniform(1e6, 2e7)),
            ))
        views.append(FLView(1000.0 + i, reqs, tuple(jobs), atoms, tiers, 1.3))
    return views


register_contract(Contract(domain="fl", base=FLPolicy, sample_views=sample_views, validate=validate))
