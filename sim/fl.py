"""FL resource-management simulator: many FL jobs share a population of phones that come and go.

Why this shape: a million devices cannot each be a simpy process. The population is arrays
(`traces.devices.Population`, `traces.availability.Availability`); check-ins of a time window
are produced in one batch (`CheckinStream`) and handed out with numpy according to the
policy's per-atom job order. simpy drives the sparse events: job arrivals and round closes.
The driver advances window by window but always stops at the next simpy event, so a
round that closes at t asks for devices from t on.

Round model (DESIGN/Venn): a round asks for ceil(overcommit x participants) devices; each
device's response arrives `s_per_unit x work + model_bytes/bw_down + model_bytes/bw_up` after
its assignment, or never if its availability ends first (dropout). Two round rules
(`rounds.deadline_from`):
- "request" (Venn's evaluation, SymbioticLab/Venn src/venn_job.py `GoogleJob`): the deadline
  runs from the round's request; the round completes as soon as `success_fraction x
  participants` responses are in and aborts at the deadline otherwise, even while still
  collecting devices; an aborted round's device work is wasted and the round is retried.
- "filled" (orrery's earlier rule): once all devices are assigned, the round closes when
  `participants` responses are in or `deadline_s` later, whichever first; it succeeds with at
  least `success_fraction x participants` responses, else it is aborted and retried.
Stragglers are released at the close. Device-seconds spent and wasted (work whose result was
not aggregated: aborted rounds, stragglers, dropouts) are reported.

`DevicePool` (world state + check-ins + response times) and `FLRoundEngine.assign` are the
reusable parts for other FL studies (multi-model FL builds on them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError
from orrery.hwmodels.edge import DEFAULT_MODEL, EdgePopulationModel
from orrery.policies.fl.base import AtomView, FLDecision, FLView, JobView, TierView
from orrery.policies.registry import make_policy
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation
from orrery.sim.scenario import Scenario
from orrery.traces.availability import (
    Availability,
    CheckinStream,
    diurnal_availability,
    from_arrays,
    load_fedscale,
    load_interval_csv,
    replay,
    replicate,
)
from orrery.traces.devices import Population, eligible_mask, make_population
from orrery.workloads.fl import FLJobMix, JobSet, generate_jobs

WEEK_S = 7 * 86400.0


class PopulationConfig(Strict):
    """The device population: size, hardware, eligibility, availability, network."""

    n_devices: int = Field(100_000, ge=1, le=20_000_000, description="number of devices")
    specs: str | None = Field(None, description="device spec CSV to resample hardware from (e.g. shared:fl/aibenchmark_device_specs.csv); None: embedded fitted model")
    eligibility: str | None = Field(None, description="eligibility CSV (device_index,eligible_requirements); None: embedded fractions")
    availability: str | None = Field(None, description="availability trace; None: embedded diurnal generator")
    availability_format: Literal["intervals", "fedscale"] = Field("intervals", description="ID,start,end CSV or FedScale active/inactive lists")
    start_hour: float = Field(0.0, ge=0, lt=24, description="local hour of day at t=0 (diurnal generator)")
    recheckin_s: float = Field(900.0, gt=0, description="an idle available device checks in again after this long (s)")
    checkin: Literal["recheckin", "per_interval"] = Field(
        "recheckin", description="'recheckin': an idle available device checks in every recheckin_s; "
        "'per_interval': one check-in at the start of each availability interval (Venn's and "
        "FedScale's simulators)")
    replay_period_s: float | None = Field(
        None, gt=0, description="repeat the availability trace with this period until the horizon "
        "(Venn replays its 5-day client trace every 432000 s); None: play it once")
    bw_down_median_bytes_s: float = Field(DEFAULT_MODEL.bw_down_median_bytes_s, gt=0)
    bw_up_median_bytes_s: float = Field(DEFAULT_MODEL.bw_up_median_bytes_s, gt=0)
    n_tiers: int = Field(3, ge=1, le=8, description="speed tiers (equal-size quantile bins of compute speed)")


class RoundConfig(Strict):
    overcommit: float = Field(1.3, ge=1.0, le=10.0, description="devices asked per round / participants")
    success_fraction: float = Field(0.8, gt=0, le=1.0, description="responses needed (fraction of participants)")
    deadline_from: Literal["filled", "request"] = Field(
        "filled", description="'request' (Venn's evaluation, SymbioticLab/Venn src/venn_job.py "
        "GoogleJob): the deadline runs from the round's request; the round completes as soon as "
        "success_fraction x participants responses are in and aborts at the deadline otherwise, "
        "wasting the devices' work, so a round can fail while still collecting devices. "
        "'filled' (orrery's earlier rule): the deadline starts once every device is assigned; the "
        "round closes at participants responses or the deadline")


class FLScenario(Scenario):
    """One FL resource-management run."""

    domain: ClassVar[str] = "fl"

    policy: str = "venn"
    horizon_s: float | None = Field(WEEK_S, gt=0, description="simulated time (s); default 7 days")
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    jobs: FLJobMix = Field(default_factory=FLJobMix)
    rounds: RoundConfig = Field(default_factory=RoundConfig)
    window_s: float = Field(30.0, gt=0, le=3600, description="longest batch of check-ins handled at once (s)")
    replan_s: float = Field(600.0, gt=0, description="re-plan at least this often (s), besides on job events")
    supply_halflife_s: float = Field(1800.0, gt=0, description="half-life of the check-in rate estimate (s)")
    record_assignments: bool = Field(False, description="keep one row per device assignment (tests, small runs)")


# ----------------------------------------------------------------------------- world
def build_population(cfg: PopulationConfig, rng_hw: np.random.Generator) -> Population:
    from orrery.traces.paths import resolve_data_path

    model = DEFAULT_MODEL
    if (cfg.bw_down_median_bytes_s, cfg.bw_up_median_bytes_s) != (model.bw_down_median_bytes_s, model.bw_up_median_bytes_s):
        model = EdgePopulationModel(**{**model.__dict__, "bw_down_median_bytes_s": cfg.bw_down_median_bytes_s,
                                       "bw_up_median_bytes_s": cfg.bw_up_median_bytes_s})
    return make_population(
        cfg.n_devices, rng_hw, model=model,
        specs_path=resolve_data_path(cfg.specs) if cfg.specs else None,
        eligibility_path=resolve_data_path(cfg.eligibility) if cfg.eligibility else None,
    )


def build_availability(cfg: PopulationConfig, horizon_s: float, rng: np.random.Generator) -> Availability:
    from orrery.traces.paths import resolve_data_path

    if cfg.availability is None:
        return diurnal_availability(cfg.n_devices, horizon_s, rng, start_hour=cfg.start_hour)
    path = resolve_data_path(cfg.availability)
    if cfg.availability_format == "fedscale":
        iv = load_fedscale(path)
        ids: dict[str, int] = {}
        d = [ids.setdefault(c, len(ids)) for c, _, _ in iv]
        av = replicate(from_arrays(d, [a for _, a, _ in iv], [b for _, _, b in iv], len(ids)), cfg.n_devices)
    else:
        av = load_interval_csv(path, cfg.n_devices)
    if cfg.replay_period_s is not None:
        av = replay(av, cfg.replay_period_s, horizon_s)
    return av


def check_population_files(cfg: PopulationConfig) -> None:
    """Parse the population's data files whole, as a run does (device specs, eligibility and the
    availability trace), without building a population of `n_devices`."""
    from orrery.traces.paths import resolve_data_path

    if cfg.specs or cfg.eligibility:
        make_population(
            min(cfg.n_devices, 64), np.random.default_rng(0),
            specs_path=resolve_data_path(cfg.specs) if cfg.specs else None,
            eligibility_path=resolve_data_path(cfg.eligibility) if cfg.eligibility else None,
        )  # fmt: skip
    if cfg.availability is not None:
        path = resolve_data_path(cfg.availability)
        if cfg.availability_format == "fedscale":
            load_fedscale(path)
        else:
            load_interval_csv(path, cfg.n_devices)


def check_fl(scn: FLScenario) -> None:
    """What `run_fl` rejects as input, without simulating: the population's data files and
    the policy with its parameters."""
    check_population_files(scn.population)
    make_policy("fl", scn.policy, scn.policy_params)


PER_INTERVAL_PERIOD_S = 1e15  # a re-check-in period longer than any interval: one check-in each


def checkin_period_s(cfg: PopulationConfig) -> float:
    return PER_INTERVAL_PERIOD_S if cfg.checkin == "per_interval" else cfg.recheckin_s


class DevicePool:
    """Population + availability + who is busy: the state every FL simulator shares."""

    def __init__(self, pop: Population, av: Availability, recheckin_s: float, n_tiers: int = 3):
        if av.n_devices != len(pop):
            raise OrreryInputError(f"availability covers {av.n_devices} devices, population has {len(pop)}")
        self.pop = pop
        self.av = av
        self.stream = CheckinStream(av, recheckin_s)
        self.busy_until = np.zeros(len(pop))
        s = pop.hw.s_per_unit
        edges = np.quantile(s, np.linspace(0, 1, n_tiers + 1)[1:-1]) if n_tiers > 1 else np.empty(0)
        self.tier = np.searchsorted(edges, s, side="left").astype(np.uint8)
        self.n_tiers = n_tiers
        self.checkins = 0
        self.idle_checkins = 0

    def idle_checkins_between(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(device, time, interval end) of idle devices checking in during [t0, t1), by time."""
        dev, t, end = self.stream.take(t0, t1)
        self.checkins += len(dev)
        if len(dev) == 0:
            return dev, t, end
        _, first = np.unique(dev, return_index=True)
        if len(first) < len(dev):  # one device at most once per batch
            keep = np.sort(first)
            dev, t, end = dev[keep], t[keep], end[keep]
        free = self.busy_until[dev] <= t
        self.idle_checkins += int(free.sum())
        return dev[free], t[free], end[free]

    def response_times(self, dev: np.ndarray, work_units: float, model_bytes: float) -> np.ndarray:
        hw = self.pop.hw
        return (hw.s_per_unit[dev].astype(np.float64) * work_units
                + model_bytes / hw.bw_down_bytes_s[dev].astype(np.float64)
                + model_bytes / hw.bw_up_bytes_s[dev].astype(np.float64))

    def occupy(self, dev: np.ndarray, t_assign: np.ndarray, rt: np.ndarray, iend: np.ndarray) -> np.ndarray:
        """Mark devices busy; return response arrival times (inf where the device drops out)."""
        resp = t_assign + rt
        ok = resp <= iend
        self.busy_until[dev] = np.where(ok, resp, iend)
        return np.where(ok, resp, np.inf)

    def tier_views(self, tail_q: float) -> tuple[TierView, ...]:
        hw = self.pop.hw
        out = []
        for k in range(self.n_tiers):
            sel = self.tier <= k
            out.append(TierView(
                k, float(np.quantile(hw.s_per_unit[sel], tail_q)),
                float(np.quantile(hw.bw_down_bytes_s[sel], 1 - tail_q)),
                float(np.quantile(hw.bw_up_bytes_s[sel], 1 - tail_q)),
            ))
        return tuple(out)


def select_participants(pool: DevicePool, t0: float, t1: float, eligible: np.ndarray, n: int,
                        work_units: float, model_bytes: float) -> tuple[np.ndarray, np.ndarray]:
    """Reusable one-job selection: up to `n` idle eligible devices checking in during [t0, t1),
    first come first served; marks them busy and returns (devices, response arrival times,
    inf = dropout)."""
    dev, t, end = pool.idle_checkins_between(t0, t1)
    sel = np.flatnonzero(eligible[dev])[:n]
    dev, t, end = dev[sel], t[sel], end[sel]
    return dev, pool.occupy(dev, t, pool.response_times(dev, work_units, model_bytes), end)


# ----------------------------------------------------------------------------- rounds
@dataclass
class JobState:
    job_id: int
    arrival_s: float
    req: int
    participants: int
    rounds: int
    deadline_s: float
    work_units: float
    model_bytes: float
    completed: int = 0
    aborted: int = 0
    need: int = 0
    t_req: float = math.nan
    finish_s: float = math.nan
    queue_delay_s: float = 0.0
    round_dev: list = field(default_factory=list)
    round_resp: list = field(default_factory=list)
    round_t: list = field(default_factory=list)  # assignment times
    round_busy: list = field(default_factory=list)  # when each device stops working (resp or leave)
    active: bool = False
    round_open: bool = False
    close_token: int = 0
    t_close_next: float = math.inf
    t_full: float = math.nan


class FLRoundEngine:
    """Runs FL jobs' rounds over a `DevicePool` under one policy."""

    def __init__(self, scn: FLScenario, sim: Simulation, pool: DevicePool, jobs: JobSet, policy):
        self.scn, self.sim, self.pool, self.policy = scn, sim, pool, policy
        self.env = sim.env
        reqs = sorted(set(jobs.requirement))
        if len(reqs) > 62:
            raise OrreryInputError(f"{len(reqs)} distinct job requirements; at most 62 supported")
        self.requirements = tuple(reqs)
        bits = np.zeros(len(pool.pop), dtype=np.int64)
        for i, r in enumerate(reqs):
            bits |= eligible_mask(pool.pop, r).astype(np.int64) << i
        masks, self.atom_of = np.unique(bits, return_inverse=True)
        self.atom_masks = [int(m) for m in masks]
        self.atom_of = self.atom_of.astype(np.int32)
        self.n_atoms = len(masks)
        self.req_bits = bits if scn.record_assignments else None
        self.jobs = [
            JobState(i, float(jobs.arrival_s[i]), reqs.index(jobs.requirement[i]), int(jobs.participants[i]),
                     int(jobs.rounds[i]), float(jobs.deadline_s[i]), float(jobs.work_units[i]),
                     float(jobs.model_bytes[i]))
            for i in range(len(jobs))
        ]
        self.supply = np.zeros((self.n_atoms, pool.n_tiers))
        self.tau = scn.supply_halflife_s / math.log(2)
        self.tiers = pool.tier_views(tail_q=1.0 / scn.rounds.overcommit)
        self.decision: FLDecision | None = None
        self.replan = True
        self.last_plan = -math.inf
        self.last_supply_t = 0.0
        self.rng = sim.rng["assign"]
        self.rounds_tab = sim.rec.table("rounds", ["job_id", "round", "t_req_s", "t_full_s", "t_close_s",
                                                   "assigned", "responses", "success"])
        self.supply_tab = sim.rec.table("supply", ["t_s", "checkins", "idle_checkins", "assigned", "available"])
        self.assign_tab = (sim.rec.table("assignments", ["device", "job_id", "round", "t_assign_s", "resp_s",
                                                         "busy_until_s", "interval_end_s"])
                           if scn.record_assignments else None)
        self.n_assigned = 0
        self.n_dropouts = 0
        self.n_policy_calls = 0
        self.device_s = 0.0  # device work spent on rounds (assignment to response, leave or release)
        self.wasted_device_s = 0.0  # of which no aggregated result came (aborted rounds, stragglers, dropouts)
        self.by_request = scn.rounds.deadline_from == "request"
        self.k_success = {}

    # -- job lifecycle (simpy) ---------------------------------------------------------
    def job_process(self, j: JobState):
        yield self.env.timeout(j.arrival_s)
        j.active = True
        self._start_round(j, self.env.now)

    def _start_round(self, j: JobState, t: float) -> None:
        j.need = math.ceil(self.scn.rounds.overcommit * j.participants)
        j.t_req = t
        j.round_dev, j.round_resp, j.round_t, j.round_busy = [], [], [], []
        j.round_open = True
        j.t_full = math.nan
        self.replan = True
        if self.by_request:
            j.t_close_next = math.inf
            self._schedule_close(j, t + j.deadline_s)

    # -- the paper's round rule (deadline from the request) ------------------------------
    def _k(self, j: JobState) -> int:
        return math.ceil(self.scn.rounds.success_fraction * j.participants - 1e-9)

    def _schedule_close(self, j: JobState, t_close: float) -> None:
        if t_close >= j.t_close_next:
            return
        j.t_close_next = t_close
        j.close_token += 1
        ev = self.env.timeout(max(t_close - self.env.now, 0.0))
        ev.callbacks.append(lambda _e, j=j, tok=j.close_token: self._request_close(j, tok))

    def _maybe_early_close(self, j: JobState) -> None:
        """The round completes when success_fraction x participants responses are in."""
        resp = np.concatenate(j.round_resp)
        fin = resp[np.isfinite(resp)]
        k = self._k(j)
        if len(fin) >= k:
            self._schedule_close(j, float(np.partition(fin, k - 1)[k - 1]))

    def _request_close(self, j: JobState, token: int) -> None:
        if token != j.close_token or not j.round_open:
            return
        t = self.env.now
        n_resp = 0
        if j.round_dev:
            resp = np.concatenate(j.round_resp)
            n_resp = int((resp <= t + 1e-9).sum())
        success = n_resp >= self._k(j)
        if j.need > 0:  # still collecting: the rest of the request lapses
            j.need = 0
        t_full = j.t_full if math.isfinite(j.t_full) else t
        j.queue_delay_s += t_full - j.t_req
        self._account(j, t, success)
        self.rounds_tab.append(j.job_id, j.completed + j.aborted, j.t_req, t_full, t,
                               sum(len(d) for d in j.round_dev), n_resp, success)
        self.replan = True
        self._close(j, success)

    def _account(self, j: JobState, t_close: float, success: bool) -> None:
        """Release stragglers at the close and add up the device time spent and wasted."""
        j.round_open = False
        if not j.round_dev:
            return
        dev = np.concatenate(j.round_dev)
        ta = np.concatenate(j.round_t)
        resp = np.concatenate(j.round_resp)
        busy = np.concatenate(j.round_busy)
        late = resp > t_close
        if late.any():  # stragglers are released at the close; their work is discarded
            self.pool.busy_until[dev[late]] = np.minimum(self.pool.busy_until[dev[late]],
                                                         np.maximum(t_close, ta[late]))
        work = np.maximum(0.0, np.minimum(busy, t_close) - ta)
        spent = float(work.sum())
        used = float(work[~late].sum()) if success else 0.0
        self.device_s += spent
        self.wasted_device_s += spent - used

    def _filled(self, j: JobState, t_full: float) -> None:
        if self.by_request:
            j.t_full = t_full
            self.replan = True
            return
        dev = np.concatenate(j.round_dev)
        resp = np.concatenate(j.round_resp)
        k = j.participants
        fin = np.sort(resp[np.isfinite(resp)])
        t_target = fin[k - 1] if len(fin) >= k else math.inf
        t_close = max(t_full, min(t_full + j.deadline_s, t_target))
        responses = int((resp <= t_close).sum())
        success = responses >= math.ceil(self.scn.rounds.success_fraction * j.participants - 1e-9)
        self._account(j, t_close, success)
        j.queue_delay_s += t_full - j.t_req
        self.rounds_tab.append(j.job_id, j.completed + j.aborted, j.t_req, t_full, t_close, len(dev), responses, success)
        self.replan = True
        ev = self.env.timeout(max(t_close - self.env.now, 0.0))
        ev.callbacks.append(lambda _e, j=j, s=success: self._close(j, s))

    def _close(self, j: JobState, success: bool) -> None:
        t = self.env.now
        if success:
            j.completed += 1
        else:
            j.aborted += 1
        if j.completed >= j.rounds:
            j.finish_s = t
            j.active = False
            self.replan = True
        else:
            self._start_round(j, t)

    # -- policy --------------------------------------------------------------------------
    def view(self, t: float) -> FLView:
        rate = self.supply / self.tau
        atoms = tuple(AtomView(self.atom_masks[a], float(rate[a].sum()), tuple(float(x) for x in rate[a]))
                      for a in range(self.n_atoms))
        jobs = tuple(JobView(j.job_id, j.arrival_s, j.req, j.participants, j.rounds, j.completed, j.need,
                             j.t_req, j.deadline_s, j.work_units, j.model_bytes)
                     for j in self.jobs if j.active)
        return FLView(t, self.requirements, jobs, atoms, self.tiers, self.scn.rounds.overcommit,
                      self.scn.rounds.deadline_from)

    def plan(self, t: float) -> None:
        self.decision = self.policy.schedule(self.view(t))
        self.n_policy_calls += 1
        self.replan = False
        self.last_plan = t
        order = {}
        for mask, ids in self.decision.order.items():
            order[mask] = [self.jobs[i] for i in ids]
            for j in order[mask]:  # the executor never trusts a policy with eligibility
                if not (mask >> j.req) & 1:
                    raise RuntimeError(f"policy {self.scn.policy!r} gave ineligible devices to job {j.job_id}")
        self._order = order

    # -- device hand-out ---------------------------------------------------------------------
    def assign(self, t0: float, t1: float) -> None:
        """Hand out the idle check-ins of [t0, t1) according to the current decision."""
        dev, tt, iend = self.pool.idle_checkins_between(t0, t1)
        if len(dev) == 0:
            return
        a_idx = self.atom_of[dev]
        tiers = self.pool.tier[dev]
        decay = math.exp(-(t1 - self.last_supply_t) / self.tau)
        self.supply *= decay
        np.add.at(self.supply, (a_idx, tiers), 1.0)
        self.last_supply_t = t1
        if not any(j.need > 0 for j in self.jobs if j.active):
            return
        if self.replan or t0 - self.last_plan >= self.scn.replan_s:
            self.plan(t0)
        dec = self.decision
        by_atom = np.argsort(a_idx, kind="stable")
        bounds = np.searchsorted(a_idx[by_atom], np.arange(self.n_atoms + 1))
        filled: list[tuple[JobState, float]] = []
        for a in range(self.n_atoms):
            lo, hi = bounds[a], bounds[a + 1]
            if hi <= lo:
                continue
            jobs = [j for j in self._order.get(self.atom_masks[a], ()) if j.need > 0]
            if not jobs:
                continue
            pos = by_atom[lo:hi]  # positions into the batch, in time order
            if dec.split == "random":
                self._assign_random(jobs, pos, dev, tt, iend, filled)
            else:
                for j in jobs:
                    if len(pos) == 0:
                        break
                    mt = dec.max_tier.get(j.job_id)
                    if mt is not None and mt < self.pool.n_tiers - 1:
                        ok = np.flatnonzero(tiers[pos] <= mt)[: j.need]
                        take = pos[ok]
                        if len(take):
                            keep = np.ones(len(pos), dtype=bool)
                            keep[ok] = False
                            pos = pos[keep]
                    else:
                        take, pos = pos[: j.need], pos[j.need:]
                    if len(take):
                        self._give(j, dev[take], tt[take], iend[take], filled)
        for j, t_full in filled:
            self._filled(j, t_full)

    def _assign_random(self, jobs, pos, dev, tt, iend, filled) -> None:
        while len(pos) and jobs:
            pick = self.rng.integers(0, len(jobs), len(pos))
            left = []
            for k, j in enumerate(jobs):
                mine = pos[pick == k]
                take = mine[: j.need]
                if len(take):
                    self._give(j, dev[take], tt[take], iend[take], filled)
                if len(mine) > len(take):
                    left.append(mine[len(take):])
            jobs = [j for j in jobs if j.need > 0]
            pos = np.sort(np.concatenate(left)) if left else pos[:0]

    def _give(self, j: JobState, d, t, e, filled) -> None:
        rt = self.pool.response_times(d, j.work_units, j.model_bytes)
        resp = self.pool.occupy(d, t, rt, e)
        j.round_dev.append(d)
        j.round_resp.append(resp)
        j.round_t.append(np.asarray(t, dtype=float))
        j.round_busy.append(self.pool.busy_until[d].copy())
        j.need -= len(d)
        self.n_assigned += len(d)
        self.n_dropouts += int(np.isinf(resp).sum())
        if self.assign_tab is not None:
            rnd = j.completed + j.aborted
            self.assign_tab.extend(device=d, job_id=np.full(len(d), j.job_id), round=np.full(len(d), rnd),
                                   t_assign_s=t, resp_s=resp, busy_until_s=self.pool.busy_until[d], interval_end_s=e)
        if self.by_request:
            self._maybe_early_close(j)
        if j.need == 0:
            filled.append((j, float(t.max())))

    # -- driver ----------------------------------------------------------------------------------
    def driver(self, horizon_s: float):
        t = 0.0
        W = self.scn.window_s
        next_sample = 0.0
        last = (0, 0, 0)
        while t < horizon_s:
            nxt = self.env.peek()
            t1 = min(t + W, horizon_s, max(nxt, t))
            if t1 > t:
                self.assign(t, t1)
            if t1 >= next_sample:
                c = (self.pool.checkins, self.pool.idle_checkins, self.n_assigned)
                self.supply_tab.append(next_sample, c[0] - last[0], c[1] - last[1], c[2] - last[2],
                                       int(self.pool.av.available_count(np.array([next_sample]))[0]))
                last = c
                next_sample += 3600.0
            yield self.env.timeout(t1 - t)
            t = t1
            if all(not j.active and np.isfinite(j.finish_s) for j in self.jobs):
                break


def run_fl(scn: FLScenario) -> RunResult:
    """Run one FL scenario (a pure function of the scenario)."""
    sim = Simulation(scn.seed)
    horizon = float(scn.horizon_s or WEEK_S)
    pop = build_population(scn.population, sim.rng["hardware"])
    av = build_availability(scn.population, horizon, sim.rng["availability"])
    pool = DevicePool(pop, av, checkin_period_s(scn.population), scn.population.n_tiers)
    jobs = generate_jobs(scn.jobs, sim.rng["jobs"])
    policy = make_policy("fl", scn.policy, scn.policy_params)
    eng = FLRoundEngine(scn, sim, pool, jobs, policy)
    for j in eng.jobs:
        sim.process(eng.job_process(j))
    sim.process(eng.driver(horizon))
    sim.run(until=horizon)
    return _result(scn, eng, horizon)


def _result(scn: FLScenario, eng: FLRoundEngine, horizon: float) -> RunResult:
    frames = eng.sim.rec.frames()
    js = eng.jobs
    finish = np.array([j.finish_s for j in js])
    arrival = np.array([j.arrival_s for j in js])
    done = np.isfinite(finish)
    jct = finish - arrival
    table = pd.DataFrame({
        "job_id": [j.job_id for j in js], "arrival_s": arrival,
        "requirement": [eng.requirements[j.req] for j in js],
        "participants": [j.participants for j in js], "rounds": [j.rounds for j in js],
        "completed_rounds": [j.completed for j in js], "aborted_rounds": [j.aborted for j in js],
        "deadline_s": [j.deadline_s for j in js], "work_units": [j.work_units for j in js],
        "finish_s": finish, "jct_s": jct, "queue_delay_s": [j.queue_delay_s for j in js],
    })
    rounds = frames["rounds"]
    arrived = arrival < horizon
    cens = np.where(done, jct, horizon - arrival)[arrived]
    qd = table["queue_delay_s"].to_numpy()[done]
    nan = float("nan")
    metrics = {
        "jct_mean_s": float(jct[done].mean()) if done.any() else nan,
        "jct_p50_s": float(np.percentile(jct[done], 50)) if done.any() else nan,
        "jct_p90_s": float(np.percentile(jct[done], 90)) if done.any() else nan,
        "jct_censored_mean_s": float(cens.mean()) if len(cens) else nan,
        "queue_delay_mean_s": float(qd.mean()) if len(qd) else nan,
        "round_sched_delay_mean_s": float((rounds["t_full_s"] - rounds["t_req_s"]).mean()) if len(rounds) else nan,
        "makespan_s": float((finish.max() if done.all() else horizon) - arrival.min()),
        "jobs_completed": float(done.sum()),
        "completion_fraction": float(done.mean()),
        "rounds_succeeded": float(rounds["success"].sum()) if len(rounds) else 0.0,
        "abort_fraction": float(1 - rounds["success"].mean()) if len(rounds) else nan,
        "aborted_rounds": float((~rounds["success"].astype(bool)).sum()) if len(rounds) else 0.0,
        "device_s": eng.device_s,
        "wasted_device_s": eng.wasted_device_s,
        "wasted_fraction": eng.wasted_device_s / eng.device_s if eng.device_s > 0 else 0.0,
        "checkins": float(eng.pool.checkins),
        "assignments": float(eng.n_assigned),
        "dropout_fraction": float(eng.n_dropouts / eng.n_assigned) if eng.n_assigned else 0.0,
        "policy_calls": float(eng.n_policy_calls),
    }
    series = {"rounds": rounds, "supply": frames["supply"]}
    if "assignments" in frames:
        series["assignments"] = frames["assignments"]
    return RunResult(metrics=metrics, table=table, series=series)


# ----------------------------------------------------------------------------- plots


register_domain(Domain(
    name="fl",
    scenario_type=FLScenario,
    run=run_fl,
    check=check_fl,
    metrics={
        "jct_mean_s": "lower", "jct_p50_s": "lower", "jct_p90_s": "lower", "jct_censored_mean_s": "lower",
        "queue_delay_mean_s": "lower", "round_sched_delay_mean_s": "lower", "makespan_s": "lower",
        "jobs_completed": "higher", "completion_fraction": "higher", "rounds_succeeded": "higher",
        "abort_fraction": "lower", "dropout_fraction": "lower", "aborted_rounds": "lower",
        "device_s": "lower", "wasted_device_s": "lower", "wasted_fraction": "lower",
        "checkins": "higher", "assignments": "higher", "policy_calls": "lower",
    },
    plots="orrery.experiments.plotting:fl_plots",
    description="FL resource management: FL jobs share a population of phones that come and go",
))
