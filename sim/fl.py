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
  participants` responses are in; at the deadline it succeeds if at least `success_fraction x
  participants` devices were assigned and `success_fraction` of them (of at most
  `participants`) responded (`rounds.at_deadline = "assigned"`, GoogleJob.close_round;
  "responses": only `success_fraction x participants` responses count) and aborts otherwise,
  even while still collecting devices; an aborted round's device work is wasted and the round
  is retried.
- "filled" (orrery's earlier rule): once all devices are assigned, the round closes when
  `participants` responses are in or `deadline_s` later, whichever first; it succeeds with at
  least `success_fraction x participants` responses, else it is aborted and retried.
Stragglers are released at the close. Device-seconds spent and wasted (work whose result was
not aggregated: aborted rounds, stragglers, dropouts) are reported.

`DevicePool` (world state + check-ins + response times) and `FLRoundEngine.assign` are the
reusable parts for other FL studies (multi-model FL builds on them).
"""

from __future__ import annotations

import heapq
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
    at_deadline: Literal["assigned", "responses"] = Field(
        "assigned", description="request rule: how a round that reaches its deadline is judged. "
        "'assigned' (SymbioticLab/Venn src/venn_job.py GoogleJob.close_round): it succeeds when at "
        "least success_fraction x participants devices were assigned (`tmp_dispatch >= amount * "
        "fraction`) and at least success_fraction x min(assigned, participants) of them responded; "
        "'responses' (orrery's earlier reading): success_fraction x participants responses are needed")


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
    driver: Literal["events", "windows"] = Field(
        "events", description="'events': the simulator stops only where something happens (check-ins, "
        "round fills and closes, job arrivals, hourly samples), hands check-ins out one by one in "
        "time order and closes rounds at their exact times; 'windows': the earlier driver, which "
        "handed out each window_s batch of check-ins atom by atom and weighted the supply "
        "estimate at the window's end (kept to compare with earlier results)")


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


VECTOR_MIN = 256  # longer candidate runs are handed out in numpy steps (priority split)
SMALL_BATCH = 48  # batches of at most this many check-ins are handed out in plain Python
SMALL_ROUND = 64  # rounds of at most this many devices are accounted in plain Python, longer in numpy
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
        self._max_dur_s: float | None = None

    def available_at(self, t: float) -> int:
        """How many devices are available at time t: intervals with start <= t < end, counted
        among those starting in the last max_duration (+1 s, far beyond any rounding) before t,
        since an interval that started earlier has ended (no sorted copy of all the ends)."""
        av = self.av
        if self._max_dur_s is None:
            self._max_dur_s = av.max_duration_s
        lo = int(np.searchsorted(av.start_s, t - self._max_dur_s - 1.0, side="left"))
        hi = int(np.searchsorted(av.start_s, t, side="right"))
        return int(np.count_nonzero(av.end_s[lo:hi] > t))

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
    # the current round, one entry per assigned device (plain Python lists: O(1) per assignment)
    round_dev: list = field(default_factory=list)
    round_resp: list = field(default_factory=list)  # response arrival times (inf: dropout)
    round_t: list = field(default_factory=list)  # assignment times
    round_busy: list = field(default_factory=list)  # when each device stops working (resp or leave)
    # numpy steps add whole arrays (dev, t, resp, busy) here, after the lists' earlier entries
    # (flushed into a chunk first, so the chunks keep the assignment order)
    round_chunks: list = field(default_factory=list)
    round_chunk_n: int = 0
    resp_heap: list = field(default_factory=list)  # request rule: the k earliest responses (negated)
    active: bool = False
    round_open: bool = False
    close_token: int = 0
    t_close_next: float = math.inf
    t_full: float = math.nan
    max_tier: int = 0  # slowest speed tier the current decision admits (priority split)
    k: int = 0  # responses that make a round succeed


class FLRoundEngine:
    """Runs FL jobs' rounds over a `DevicePool` under one policy.

    Event-driven (`driver="events"`, default): the driver sleeps until the next thing that
    happens (a job arrival, a round close, an hourly sample, the end of the horizon) and hands
    out the check-ins before it one by one in time order; a round that completes early (the
    request rule's k-th response) cuts the batch at that instant, so the round closes and the
    next one asks for devices at exact times. numpy only picks, per batch, the check-ins some
    demanding job can take (O(check-ins) vector work); the hand-out itself touches only the
    jobs on the check-in's atom list; decisions are made on job arrival and completion, on
    round starts (policies whose order depends on rounds) and every `replan_s`, each in O(jobs
    x atoms). The supply estimate weights each idle check-in by exp(-(t - t_checkin)/tau),
    whatever the batching.
    """

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
        # supply estimate: sum over idle check-ins i of exp((t_i - supply_t0) / tau), per (atom, tier);
        # the rate at time t is that times exp(-(t - supply_t0) / tau) / tau
        self.supply_ref = np.zeros((self.n_atoms, pool.n_tiers))
        self.supply_t0 = 0.0
        self.tau = scn.supply_halflife_s / math.log(2)
        self.tiers = pool.tier_views(tail_q=1.0 / scn.rounds.overcommit)
        self.decision: FLDecision | None = None
        self.replan = True
        self.last_plan = -math.inf
        self.last_supply_t = 0.0  # windows driver: time of the last supply update
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
        self.n_batches = 0
        self.device_s = 0.0  # device work spent on rounds (assignment to response, leave or release)
        self.wasted_device_s = 0.0  # of which no aggregated result came (aborted rounds, stragglers, dropouts)
        self.by_request = scn.rounds.deadline_from == "request"
        self.n_demanding = 0  # jobs whose current round still needs devices
        self.n_finished = 0
        # a policy whose decision depends only on which jobs are active is asked again only then
        self.replan_on_rounds = getattr(policy, "replan_on", "rounds") != "jobs"
        hw = pool.pop.hw
        self._spu = hw.s_per_unit.astype(np.float64)
        self._bw_down = hw.bw_down_bytes_s.astype(np.float64)
        self._bw_up = hw.bw_up_bytes_s.astype(np.float64)
        self._lists: list[list[JobState]] = [[] for _ in range(self.n_atoms)]
        self._random = False
        self._t_cut = math.inf
        self.events_driver = scn.driver == "events"
        self._events: list = []  # (t, seq, fn, job, arg): round closes under the event driver
        self._seq = 0
        self._sup_py = [0.0] * (self.n_atoms * pool.n_tiers)  # supply added by the small-batch path
        for j in self.jobs:
            j.k = self._k(j)
            j.max_tier = pool.n_tiers - 1
        self._order: dict[int, list[JobState]] = {}
        self._order_src = None  # the decision's order dict the lists were built from
        self._tier_limited: list[JobState] = []  # jobs whose max_tier the last decision set
        self._active: list[JobState] = []  # arrived, unfinished jobs by job id
        self._views: dict[int, JobView] = {}
        self._done_pos = 0  # batch positions up to here have been handed out
        self._skip = 0  # check-ins at the next batch's start already handed out

    # -- job lifecycle (simpy) ---------------------------------------------------------
    def job_process(self, j: JobState):
        yield self.env.timeout(j.arrival_s)
        j.active = True
        self._active = [x for x in self.jobs if x.active]
        self.replan = True
        self._start_round(j, self.env.now)

    def _set_need(self, j: JobState, need: int) -> None:
        self.n_demanding += (need > 0) - (j.need > 0)
        j.need = need

    def _start_round(self, j: JobState, t: float) -> None:
        self._set_need(j, math.ceil(self.scn.rounds.overcommit * j.participants))
        j.t_req = t
        j.round_dev, j.round_resp, j.round_t, j.round_busy, j.resp_heap = [], [], [], [], []
        j.round_chunks, j.round_chunk_n = [], 0
        j.round_open = True
        j.t_full = math.nan
        if self.replan_on_rounds:
            self.replan = True
        if self.by_request:
            j.t_close_next = math.inf
            self._schedule_close(j, t + j.deadline_s)

    # -- the paper's round rule (deadline from the request) ------------------------------
    def _k(self, j: JobState) -> int:
        return math.ceil(self.scn.rounds.success_fraction * j.participants - 1e-9)

    def _success_at_deadline(self, j: JobState, n_resp: int) -> bool:
        """Request rule, the round reached its deadline (or closed early with k responses)."""
        if n_resp >= self._k(j):
            return True
        if self.scn.rounds.at_deadline == "responses":
            return False
        # Venn's GoogleJob.close_round: enough devices dispatched, and enough of those responded
        f = self.scn.rounds.success_fraction
        n_asg = self._round_n(j)
        return n_asg >= f * j.participants - 1e-9 and n_resp >= f * min(n_asg, j.participants) - 1e-9

    @staticmethod
    def _round_n(j: JobState) -> int:
        return len(j.round_dev) + j.round_chunk_n

    @staticmethod
    def _flush(j: JobState) -> None:
        """Move the round's per-device lists into a chunk of arrays (assignment order kept)."""
        if j.round_dev:
            j.round_chunks.append((np.array(j.round_dev, dtype=np.int64), np.array(j.round_t, dtype=float),
                                   np.array(j.round_resp, dtype=float), np.array(j.round_busy, dtype=float)))
            j.round_chunk_n += len(j.round_dev)
            j.round_dev, j.round_t, j.round_resp, j.round_busy = [], [], [], []

    def _round_arrays(self, j: JobState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(device, assignment time, response, busy until) of the round so far, as arrays."""
        self._flush(j)
        ch = j.round_chunks
        if len(ch) != 1:
            ch = [tuple(np.concatenate([c[i] for c in ch]) for i in range(4))] if ch else [
                (np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0))]
            j.round_chunks = ch
        return ch[0]

    def _schedule_close(self, j: JobState, t_close: float) -> None:
        if t_close >= j.t_close_next:
            return
        j.t_close_next = t_close
        j.close_token += 1
        self._at(t_close, self._request_close, j, j.close_token)

    def _maybe_early_close(self, j: JobState) -> None:
        """The round completes when success_fraction x participants responses are in."""
        resp = self._round_arrays(j)[2]
        fin = resp[np.isfinite(resp)]
        k = self._k(j)
        if len(fin) >= k:
            self._schedule_close(j, float(np.partition(fin, k - 1)[k - 1]))

    def _at(self, t: float, fn, j: JobState, arg) -> None:
        """Call fn(j, arg) at time t: from the engine's own event heap under the event driver
        (a superseded round close is dropped there without waking the driver), as a simpy
        timeout under the window driver."""
        if self.events_driver:
            heapq.heappush(self._events, (t, self._seq, fn, j, arg))
            self._seq += 1
        else:
            ev = self.env.timeout(max(t - self.env.now, 0.0))
            ev.callbacks.append(lambda _e: fn(j, arg))

    def _next_event_s(self) -> float:
        ev = self._events
        while ev:
            _t, _s, fn, j, arg = ev[0]
            if fn == self._request_close and (arg != j.close_token or not j.round_open):
                heapq.heappop(ev)  # superseded (closed early, or the round is over)
                continue
            return ev[0][0]
        return math.inf

    def _request_close(self, j: JobState, token: int) -> None:
        if token != j.close_token or not j.round_open:
            return
        t = self.env.now
        lim = t + 1e-9
        rr = j.round_resp
        n_resp = (sum(1 for r in rr if r <= lim) if len(rr) <= SMALL_ROUND and not j.round_chunks
                  else int(np.count_nonzero(self._round_arrays(j)[2] <= lim)))
        success = self._success_at_deadline(j, n_resp)
        if j.need > 0:  # still collecting: the rest of the request lapses
            self._set_need(j, 0)
        t_full = j.t_full if math.isfinite(j.t_full) else t
        j.queue_delay_s += t_full - j.t_req
        self._account(j, t, success)
        self.rounds_tab.append(j.job_id, j.completed + j.aborted, j.t_req, t_full, t,
                               self._round_n(j), n_resp, success)
        self._close(j, success)

    def _account(self, j: JobState, t_close: float, success: bool) -> None:
        """Release stragglers at the close and add up the device time spent and wasted."""
        j.round_open = False
        n = self._round_n(j)
        if not n:
            return
        busy_until = self.pool.busy_until
        if n <= SMALL_ROUND and not j.round_chunks:
            spent = used = 0.0
            for d, ta, r, b in zip(j.round_dev, j.round_t, j.round_resp, j.round_busy, strict=True):
                w = min(b, t_close) - ta
                w = w if w > 0.0 else 0.0
                spent += w
                if r > t_close:  # stragglers are released at the close; their work is discarded
                    busy_until[d] = min(busy_until[d], max(t_close, ta))
                elif success:
                    used += w
        else:  # the same sums in numpy: cumsum adds in order, as the loop does (bit-identical)
            d, ta, r, b = self._round_arrays(j)
            w = np.minimum(b, t_close) - ta
            w = np.where(w > 0.0, w, 0.0)
            spent = float(np.cumsum(w)[-1])
            late = r > t_close
            if late.any():
                np.minimum.at(busy_until, d[late], np.maximum(t_close, ta[late]))
            used = 0.0
            if success:
                u = w[~late]
                used = float(np.cumsum(u)[-1]) if len(u) else 0.0
        self.device_s += spent
        self.wasted_device_s += spent - used

    def _filled(self, j: JobState, t_full: float) -> None:
        if self.by_request:
            j.t_full = t_full
            return
        resp = j.round_resp
        k = j.participants
        n_round = self._round_n(j)
        if n_round <= SMALL_ROUND and not j.round_chunks:
            fin = sorted(r for r in resp if r != math.inf)
            t_target = fin[k - 1] if len(fin) >= k else math.inf
            t_close = max(t_full, min(t_full + j.deadline_s, t_target))
            responses = sum(1 for r in resp if r <= t_close)
        else:
            ra = self._round_arrays(j)[2]
            fin = ra[ra != math.inf]
            t_target = float(np.partition(fin, k - 1)[k - 1]) if len(fin) >= k else math.inf
            t_close = max(t_full, min(t_full + j.deadline_s, t_target))
            responses = int(np.count_nonzero(ra <= t_close))
        success = responses >= math.ceil(self.scn.rounds.success_fraction * j.participants - 1e-9)
        self._account(j, t_close, success)
        j.queue_delay_s += t_full - j.t_req
        self.rounds_tab.append(j.job_id, j.completed + j.aborted, j.t_req, t_full, t_close, n_round,
                               responses, success)
        if t_close < self._t_cut:  # event driver: the next round asks for devices from t_close on
            self._t_cut = t_close
        self._at(t_close, self._close, j, success)

    def _close(self, j: JobState, success: bool) -> None:
        t = self.env.now
        if success:
            j.completed += 1
        else:
            j.aborted += 1
        if j.completed >= j.rounds:
            j.finish_s = t
            j.active = False
            self._active = [x for x in self.jobs if x.active]
            self.n_finished += 1
            self.replan = True
        else:
            self._start_round(j, t)

    # -- policy --------------------------------------------------------------------------
    def _merge_supply(self) -> None:
        sp = self._sup_py
        if any(sp):
            self.supply_ref += np.asarray(sp).reshape(self.supply_ref.shape)
            self._sup_py = [0.0] * len(sp)

    def supply_rate(self, t: float) -> np.ndarray:
        """Recent idle check-ins per second, per (atom, tier), as of time t."""
        self._merge_supply()
        return self.supply_ref * (math.exp(-(t - self.supply_t0) / self.tau) / self.tau)

    def _move_supply_ref(self, t: float) -> None:
        """Keep exp((t - supply_t0) / tau) finite: move the reference to t when far behind."""
        if t - self.supply_t0 > 40.0 * self.tau:
            self._merge_supply()
            self.supply_ref *= math.exp(-(t - self.supply_t0) / self.tau)
            self.supply_t0 = t

    def _add_supply(self, a_idx: np.ndarray, tiers: np.ndarray, t: np.ndarray) -> None:
        if len(t) == 0:
            return
        self._move_supply_ref(float(t.max()))
        w = np.exp((t - self.supply_t0) / self.tau)
        nt = self.pool.n_tiers
        flat = a_idx.astype(np.int64) * nt + tiers
        self.supply_ref += np.bincount(flat, weights=w, minlength=self.n_atoms * nt).reshape(self.n_atoms, nt)

    def view(self, t: float) -> FLView:
        rate = self.supply_rate(t)
        tot, rows = rate.sum(axis=1).tolist(), rate.tolist()
        masks = self.atom_masks
        atoms = tuple([AtomView(masks[a], tot[a], tuple(rows[a])) for a in range(self.n_atoms)])
        views = self._views
        jobs = []
        for j in self._active:  # a job's view is rebuilt only when its round state changed
            v = views.get(j.job_id)
            if (v is None or v.remaining_demand != j.need or v.completed_rounds != j.completed
                    or v.round_requested_s != j.t_req):
                v = self._job_view(j)
            jobs.append(v)
        jobs = tuple(jobs)
        return FLView(t, self.requirements, jobs, atoms, self.tiers, self.scn.rounds.overcommit,
                      self.scn.rounds.deadline_from)

    def _job_view(self, j: JobState) -> JobView:
        """The job's view, rebuilt only when its round state changed since the last decision."""
        v = self._views.get(j.job_id)
        if v is None or v.completed_rounds != j.completed or v.remaining_demand != j.need or not (
                v.round_requested_s == j.t_req or (math.isnan(v.round_requested_s) and math.isnan(j.t_req))):
            v = self._views[j.job_id] = JobView(j.job_id, j.arrival_s, j.req, j.participants, j.rounds,
                                                j.completed, j.need, j.t_req, j.deadline_s, j.work_units,
                                                j.model_bytes)
        return v

    def plan(self, t: float) -> None:
        self.decision = dec = self.policy.schedule(self.view(t))
        self.n_policy_calls += 1
        self.replan = False
        self.last_plan = t
        if dec.order is not self._order_src:  # a policy may hand back the same order object
            order = {}
            jobs = self.jobs
            for mask, ids in dec.order.items():
                lst = order[mask] = [jobs[i] for i in ids]
                for j in lst:  # the executor never trusts a policy with eligibility
                    if not (mask >> j.req) & 1:
                        raise RuntimeError(f"policy {self.scn.policy!r} gave ineligible devices to job {j.job_id}")
            self._order = order
            self._order_src = dec.order
            self._lists = [order.get(m, []) for m in self.atom_masks]
        self._random = dec.split == "random"
        top = self.pool.n_tiers - 1
        for j in self._tier_limited:  # only jobs the previous decision limited
            j.max_tier = top
        self._tier_limited = [self.jobs[jid] for jid in dec.max_tier]
        for jid, mt in dec.max_tier.items():
            self.jobs[jid].max_tier = mt

    # -- device hand-out, event-driven ---------------------------------------------------------
    def _takers(self) -> np.ndarray:
        """Per atom, the slowest tier some demanding job on its list admits (-1: none)."""
        out = []
        top = self.pool.n_tiers - 1
        rnd = self._random
        for lst in self._lists:
            best = -1
            for j in lst:
                if j.need > 0:
                    mt = top if rnd else j.max_tier
                    if mt > best:
                        best = mt
                        if best == top:
                            break
            out.append(best)
        return np.array(out, dtype=np.int64)

    def hand_out(self, t0: float, t1: float) -> float:
        """Hand out the check-ins of [t0, t1) in time order; return the time handled up to
        (t1, or earlier where a round's early close cuts the batch)."""
        self.n_batches += 1
        pool = self.pool
        dev, tt, iend = pool.stream.peek(t0, t1)
        if self._skip:  # check-ins at t0 already handed out by the batch that stopped at t0
            dev, tt, iend = dev[self._skip:], tt[self._skip:], iend[self._skip:]
            self._skip = 0
        n = len(dev)
        self._t_cut = t1
        self._done_pos = 0
        if n == 0:
            return t1
        if n <= SMALL_BATCH:
            return self._hand_out_small(t0, t1, dev, tt, iend)
        a_idx = self.atom_of[dev]
        tiers = pool.tier[dev]
        idle = pool.busy_until[dev] <= tt
        if self.n_demanding > 0:
            if self.replan or (self.replan_on_rounds and t0 - self.last_plan >= self.scn.replan_s):
                self.plan(t0)
            p = 0
            while p < n and self.n_demanding > 0:
                takers = self._takers()
                cand = np.flatnonzero(idle[p:] & (takers[a_idx[p:]] >= tiers[p:])) + p
                if len(cand) == 0:
                    break
                p = self._hand_out_loop(cand, dev, tt, iend, a_idx, tiers, idle)
        if self._t_cut >= t1:
            m = n
        else:  # stopped early: the check-ins before the cut, and any handed out exactly at it
            m = max(int(np.searchsorted(tt, self._t_cut, side="left")), self._done_pos)
            self._skip = m - int(np.searchsorted(tt, self._t_cut, side="left"))
        idle_m = idle[:m]
        n_idle = int(idle_m.sum())
        pool.checkins += m
        pool.idle_checkins += n_idle
        pool.stream.total += m
        if n_idle == m:
            self._add_supply(a_idx[:m], tiers[:m], tt[:m])
        elif n_idle:
            self._add_supply(a_idx[:m][idle_m], tiers[:m][idle_m], tt[:m][idle_m])
        return self._t_cut

    def _hand_out_small(self, t0: float, t1: float, dev, tt, iend) -> float:
        """`hand_out` for a few check-ins: the same rule walked in plain Python (numpy's
        per-call cost would dominate)."""
        pool = self.pool
        if self.n_demanding > 0 and (self.replan or (self.replan_on_rounds
                                                     and t0 - self.last_plan >= self.scn.replan_s)):
            self.plan(t0)
        self._move_supply_ref(t1)
        d_l, t_l, e_l = dev.tolist(), tt.tolist(), iend.tolist()
        a_l = self.atom_of[dev].tolist()
        k_l = pool.tier[dev].tolist()
        busy = pool.busy_until
        sup = self._sup_py
        nt = pool.n_tiers
        t_ref, tau = self.supply_t0, self.tau
        lists, rnd = self._lists, self._random
        exp = math.exp
        m = n_idle = 0
        for i in range(len(d_l)):
            ti = t_l[i]
            if ti >= self._t_cut:
                break
            m += 1
            d = d_l[i]
            if busy.item(d) > ti:
                continue
            n_idle += 1
            a, k = a_l[i], k_l[i]
            sup[a * nt + k] += exp((ti - t_ref) / tau)
            if self.n_demanding == 0:
                continue
            lst = lists[a]
            if rnd:
                el = [j for j in lst if j.need > 0]
                if not el:
                    continue
                j = el[int(self.rng.random() * len(el))]
            else:
                for j in lst:
                    if j.need > 0 and k <= j.max_tier:
                        break
                else:
                    continue
            self._give_one(j, d, ti, e_l[i])
        pool.checkins += m
        pool.idle_checkins += n_idle
        pool.stream.total += m
        if self._t_cut < t1:  # check-ins handed out exactly at the cut are not seen again
            s = 0
            while s < m and t_l[m - 1 - s] == self._t_cut:
                s += 1
            self._skip = s
        return self._t_cut

    def _hand_out_loop(self, cand, dev, tt, iend, a_idx, tiers, idle) -> int:
        """Give candidate check-ins (batch positions, in time order) one by one to the first
        job on their atom's list that still needs devices (and admits their tier). Returns
        the batch position to look again from (n when done): after a round fills, a long
        rest is filtered again with numpy instead of being walked here."""
        n = len(dev)
        if len(cand) >= VECTOR_MIN and not self._random:
            return self._hand_out_vector(cand, dev, tt, iend, a_idx, tiers)
        busy = self.pool.busy_until
        lists = self._lists
        rnd = self._random
        c_pos = cand.tolist()
        c_dev = dev[cand].tolist()
        c_t = tt[cand].tolist()
        c_e = iend[cand].tolist()
        c_a = a_idx[cand].tolist()
        c_k = tiers[cand].tolist()
        u = self.rng.random(len(cand)).tolist() if rnd else None
        left = len(cand)
        for i in range(len(cand)):
            left -= 1
            ti = c_t[i]
            if ti >= self._t_cut:
                return n
            d = c_dev[i]
            if busy.item(d) > ti:  # taken earlier in this batch
                idle[c_pos[i]] = False
                continue
            lst = lists[c_a[i]]
            if rnd:
                el = [j for j in lst if j.need > 0]
                if not el:
                    continue
                j = el[int(u[i] * len(el))]
            else:
                k = c_k[i]
                for j in lst:
                    if j.need > 0 and k <= j.max_tier:
                        break
                else:
                    continue
            self._done_pos = c_pos[i] + 1
            self._give_one(j, d, ti, c_e[i])
            if j.need == 0:
                if self.n_demanding == 0:
                    return n
                if left > 64:
                    return c_pos[i] + 1
        return n

    def _hand_out_vector(self, cand, dev, tt, iend, a_idx, tiers) -> int:
        """The priority hand-out of a long candidate run in one numpy step: while no round
        fills, every candidate goes to the first demanding job of its (atom, tier); the step
        ends at the first fill, or earlier at a round's early close (its k-th response), so the
        result is the one-by-one hand-out's. A device checks in at most once per batch (the
        driver keeps batches within one re-check-in period), so none is taken twice."""
        n = len(dev)
        nt = self.pool.n_tiers
        top = nt - 1
        # per (atom, tier): the first demanding job on the atom's list that admits the tier;
        # tier limits are cumulative, so one walk of the list fills the row left to right
        rows = []
        for lst in self._lists:
            row = [-1] * nt
            filled = -1
            for j in lst:
                if j.need > 0 and j.max_tier > filled:
                    mt = min(j.max_tier, top)
                    for k in range(filled + 1, mt + 1):
                        row[k] = j.job_id
                    filled = mt
                    if filled >= top:
                        break
            rows.append(row)
        table = np.array(rows, dtype=np.int64).reshape(self.n_atoms, nt)
        tgt = table[a_idx[cand], tiers[cand]]
        ok = tgt >= 0
        cand, tgt = cand[ok], tgt[ok]
        if len(cand) == 0:
            return n
        t_c = tt[cand]
        stop = int(np.searchsorted(t_c, self._t_cut, side="left"))
        fill_at, fill_job = stop, -1  # the first candidate (index) that fills a round
        # candidates grouped by job (a stable sort keeps each job's in time order)
        by_job = np.argsort(tgt[:stop], kind="stable")
        ids, first, count = np.unique(tgt[:stop][by_job], return_index=True, return_counts=True)
        ids_l, first_l, count_l = ids.tolist(), first.tolist(), count.tolist()
        for jid, f, c in zip(ids_l, first_l, count_l, strict=True):
            need = self.jobs[jid].need
            if c >= need:
                p = int(by_job[f + need - 1])
                if p < fill_at:
                    fill_at, fill_job = p, jid
        end = fill_at + 1 if fill_job >= 0 else stop
        # per job: devices, responses; an early close inside the step cuts it
        per = []
        t_cut = self._t_cut
        for jid, f, c in zip(ids_l, first_l, count_l, strict=True):
            grp = by_job[f:f + c]
            if end < stop:
                grp = grp[grp < end]
                if len(grp) == 0:
                    continue
            j = self.jobs[jid]
            sel = cand[grp]
            d, t, e = dev[sel], tt[sel], iend[sel]
            resp = t + (self._spu[d] * j.work_units + j.model_bytes / self._bw_down[d] + j.model_bytes / self._bw_up[d])
            per.append((j, d, t, e, resp))
            if self.by_request:
                fin = np.concatenate([-np.asarray(j.resp_heap, dtype=float), resp[resp <= e]])
                if len(fin) >= j.k:
                    t_k = float(np.partition(fin, j.k - 1)[j.k - 1])
                    t_cut = min(t_cut, t_k)
        cut = t_cut < self._t_cut
        if cut:  # keep only what is handed out before the early close
            end = int(np.searchsorted(t_c[:end], t_cut, side="left"))
        for j, d, t, e, resp in per:
            m = int(np.searchsorted(t, t_cut, side="left")) if cut else len(t)
            if m == 0:
                continue
            d, t, e, resp = d[:m], t[:m], e[:m], resp[:m]
            drop = resp > e
            busy = np.where(drop, e, resp)
            resp = np.where(drop, np.inf, resp)
            self.pool.busy_until[d] = busy
            self._flush(j)
            j.round_chunks.append((d, t, resp, busy))
            j.round_chunk_n += m
            self._set_need(j, j.need - m)
            self.n_assigned += m
            self.n_dropouts += int(drop.sum())
            if self.assign_tab is not None:
                self.assign_tab.extend(device=d, job_id=np.full(m, j.job_id), round=np.full(m, j.completed + j.aborted),
                                       t_assign_s=t, resp_s=resp, busy_until_s=busy, interval_end_s=e)
            if self.by_request:
                h = sorted([-x for x in j.resp_heap] + resp[~drop].tolist())[: j.k]
                j.resp_heap = [-x for x in h]
                heapq.heapify(j.resp_heap)
                if len(h) == j.k and h[-1] < j.t_close_next:
                    self._schedule_close(j, h[-1])
            if j.need == 0:
                self._filled(j, float(t[-1]))
        if t_cut < self._t_cut:
            self._t_cut = t_cut
        if end == 0:
            return n
        self._done_pos = int(cand[end - 1]) + 1
        return self._done_pos if fill_job >= 0 and end == fill_at + 1 else n

    def _give_one(self, j: JobState, d: int, t: float, e: float) -> None:
        rt = self._spu.item(d) * j.work_units + j.model_bytes / self._bw_down.item(d) + j.model_bytes / self._bw_up.item(d)
        resp = t + rt
        if resp <= e:
            busy = resp
        else:
            busy, resp = e, math.inf
            self.n_dropouts += 1
        self.pool.busy_until[d] = busy
        j.round_dev.append(d)
        j.round_t.append(t)
        j.round_resp.append(resp)
        j.round_busy.append(busy)
        j.need -= 1
        if j.need == 0:
            self.n_demanding -= 1
        self.n_assigned += 1
        if self.assign_tab is not None:
            self.assign_tab.append(d, j.job_id, j.completed + j.aborted, t, resp, busy, e)
        if self.by_request and resp != math.inf:
            h = j.resp_heap
            heapq.heappush(h, -resp)
            k = j.k
            if len(h) > k:
                heapq.heappop(h)
            if len(h) == k:
                t_k = -h[0]
                if t_k < j.t_close_next:
                    self._schedule_close(j, t_k)
                    if t_k < self._t_cut:  # the round completes inside this batch: stop there
                        self._t_cut = t_k
        if j.need == 0:
            self._filled(j, t)

    def _sample(self, t_s: float, last: tuple[int, int, int]) -> tuple[int, int, int]:
        """The hourly supply row: check-ins, idle check-ins and assignments since `last`."""
        c = (self.pool.checkins, self.pool.idle_checkins, self.n_assigned)
        self.supply_tab.append(t_s, c[0] - last[0], c[1] - last[1], c[2] - last[2], self.pool.available_at(t_s))
        return c

    def driver(self, horizon_s: float):
        if self.scn.driver == "windows":
            return self.driver_windows(horizon_s)
        return self.driver_events(horizon_s)

    def driver_events(self, horizon_s: float):
        env = self.env
        next_sample = 0.0
        last = (0, 0, 0)
        n_jobs = len(self.jobs)
        events = self._events
        while True:
            t = env.now
            while events and events[0][0] <= t:  # round closes due now (before check-ins at t)
                _t, _s, fn, j, arg = heapq.heappop(events)
                fn(j, arg)
            if t >= next_sample:
                last = self._sample(next_sample, last)
                next_sample += 3600.0
            if t >= horizon_s or self.n_finished == n_jobs:
                return
            # within one re-check-in period a device checks in at most once per interval
            t_end = min(env.peek(), self._next_event_s(), next_sample, horizon_s, t + self.pool.stream.period)
            if self.n_demanding > 0 and self.replan_on_rounds and self.last_plan + self.scn.replan_s > t:
                t_end = min(t_end, self.last_plan + self.scn.replan_s)
            t_stop = self.hand_out(t, t_end) if t_end > t else t
            yield env.timeout(t_stop - t)

    # -- device hand-out, window by window (the earlier driver) --------------------------------
    def assign(self, t0: float, t1: float) -> None:
        """Hand out the idle check-ins of [t0, t1) according to the current decision."""
        dev, tt, iend = self.pool.idle_checkins_between(t0, t1)
        if len(dev) == 0:
            return
        a_idx = self.atom_of[dev]
        tiers = self.pool.tier[dev]
        self._add_supply(a_idx, tiers, np.full(len(dev), t1))  # weighted as if at the window's end
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
            self.replan = True

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
        j.round_dev.extend(d.tolist())
        j.round_resp.extend(resp.tolist())
        j.round_t.extend(np.asarray(t, dtype=float).tolist())
        j.round_busy.extend(self.pool.busy_until[d].tolist())
        self._set_need(j, j.need - len(d))
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

    def driver_windows(self, horizon_s: float):
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
                last = self._sample(next_sample, last)
                next_sample += 3600.0
            yield self.env.timeout(t1 - t)
            t = t1
            if self.n_finished == len(self.jobs):
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
