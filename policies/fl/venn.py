"""Venn: intersection-aware FL resource management (after Venn, SymbioticLab).

Jobs whose requirements differ compete for overlapping device sets (the Intersection
Resource Scheduling problem). `venn` (variant "paper", the default) allocates as Venn's
artifact does (`merge_rule="irs"`, `_schedule_irs`: one group per atom, the artifact's merge
test, no fallback); `venn_orrery` runs orrery's heuristic, written from the published
description (steps 2-3 below with `merge_rule="queue"` are orrery's earlier reading of the paper):

1. *Groups*: jobs with the same requirement form a group; its supply is the recent rate of
   idle check-ins of the atoms (device classes) eligible for it.
2. *Scarcest first*: groups in order of increasing supply each claim the eligible atoms that
   no scarcer group claimed, so jobs that could use abundant devices stop eating the few
   devices scarce jobs can use. On a claimed atom the claiming group's jobs come first; every
   other eligible job follows (work-conserving fallback: no check-in is left unused while
   some eligible job still needs devices).
3. *Merging*: a group also shares another group's atoms (most abundant group first) when
   sharing makes the queues wait less. Both queues are judged, not only the one that gains:
   the planner estimates every active job's remaining completion time with a fluid model of
   the allocation (each atom's check-in rate flows down its priority list; a job takes at
   most one round's devices per round time, because it stops asking while a round runs)
   and keeps a merge only when the sum of those estimates goes down. Merging everything is
   the fully shared plan (what SRSF does), so it is one of the candidates too.
4. *Within* the atoms a group serves, jobs go smallest remaining demand first (remaining
   device-rounds, participants x remaining rounds).
5. *Tier matching*: for each job the executor may restrict devices to the fastest k speed
   tiers; Venn pins a job to tiers 0..k only when the saving in tail response time is larger
   than the extra time to collect the round's devices from those tiers alone, by a margin
   (`tier_margin`, default 25% of the unpinned round time, because supply rates are recent
   averages that drift over the day). The collection rate is the rate that actually reaches
   the job: each atom's check-ins flow down its priority list, every job ahead absorbing about
   one round's devices per round time, whatever its group.

How much this can beat SRSF depends on the eligibility structure. Two jobs, a broad one b
(exclusive atoms at rate r_x, shared atoms at r_s) and a scarce one s (shared atoms only):
if b would finish before s anyway, keeping b off the shared atoms lowers the sum of
completion times only when r_x > r_s; otherwise the exchange reduces to comparing remaining
work, which is what SRSF already does. With the AI-Benchmark fractions the shared atom (all
four requirements, about 43% of devices) is larger than every exclusive one (32%, 13%, 8%),
so the fluid planner finds plans only a few percent better than full sharing, and that is
about the lead Venn has over SRSF on `venn_jct.toml`; its large lead is over random and FIFO.

Re-planning: the executor calls `schedule` on job arrival, when a round's demand is
exhausted (round filled) and on round close. The per-atom job orders are rebuilt on every
call; the group plan (claims and merges, which needs the fluid estimates) is rebuilt when
the set of active jobs changes (arrival, completion) or `plan_interval_s` after the last
rebuild, since supply and remaining demand drift slowly.
"""

from __future__ import annotations

import math

from orrery.policies.fl.base import FLDecision, FLPolicy, FLView, JobView, demanding
from orrery.policies.registry import register

_EPS = 1e-12


# The two named variants. "paper": what Venn's artifact runs for its README results
# (SymbioticLab/Venn src/venn.py `VennReqScheduler` + src/irs.py `IRS`): groups by requirement,
# within a group the smallest remaining demand of the current round first (`JobGroup` heap of
# demands), the artifact's allocation (`merge_rule="irs"`, see `_schedule_irs`: every atom
# serves one group only, an abundant group takes over a scarcer group's atoms when its affected
# queue per unit of supply is longer, `_get_affected_queuing_len`), no tier matching
# ("Round-based scheduler w/o matching"), and a round's request is rejected when the eligible
# check-in rate is below half the request rate (participants / (deadline // 60) per minute,
# `register_job`). `merge_rule="queue"` is orrery's earlier reading of the paper (shared atoms,
# a merge when the combined queue waits less, other eligible jobs as a fallback); on the
# paper-shaped inputs of benchmarks/venn_paper_shape.py it gives a 7% lower mean JCT than the
# artifact and only 19 of 50 jobs within 20% of the artifact's per-job JCT ("irs" with the
# artifact's tie-break: mean -1.6%, 43 of 50).
# "orrery": orrery's own refinements (remaining device-rounds order, merges judged by a fluid
# estimate of every job's completion time, tier matching, no rejection).
VARIANTS = {
    "paper": {"job_order": "round_demand", "merge_rule": "irs", "tier_matching": False,
              "reject_slow_requests": True},
    "orrery": {"job_order": "service", "merge_rule": "fluid", "tier_matching": True,
               "reject_slow_requests": False},
}
REJECT_RATE_FRACTION = 0.5  # src/venn.py: `if 0.5 * request_rate_permin > self.traffic[job_id]`


@register("fl", "venn")
class Venn(FLPolicy):
    def __init__(self, variant: str = "paper", tier_matching: bool | None = None, merge: bool = True,
                 min_rate_per_s: float = 1e-6, job_order: str | None = None, tier_margin: float = 0.25,
                 merge_rule: str | None = None, plan_interval_s: float = 600.0,
                 reject_slow_requests: bool | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant = variant
        preset = VARIANTS[variant]
        job_order = preset["job_order"] if job_order is None else job_order
        merge_rule = preset["merge_rule"] if merge_rule is None else merge_rule
        tier_matching = preset["tier_matching"] if tier_matching is None else tier_matching
        self.reject_slow = bool(preset["reject_slow_requests"] if reject_slow_requests is None
                                else reject_slow_requests)
        self._rejected: dict[int, float] = {}  # job id -> request time of the rejected round
        if not 0 <= tier_margin < 1:
            raise ValueError(f"tier_margin must be in [0, 1), got {tier_margin}")
        self.tier_margin = float(tier_margin)
        if job_order not in ("service", "time", "round_demand"):
            raise ValueError(f"job_order must be 'service', 'time' or 'round_demand', got {job_order!r}")
        self.job_order = job_order
        if merge_rule not in ("fluid", "queue", "irs"):
            raise ValueError(f"merge_rule must be 'fluid', 'queue' or 'irs', got {merge_rule!r}")
        self.merge_rule = merge_rule
        if plan_interval_s < 0:
            raise ValueError("plan_interval_s must be >= 0")
        self.plan_interval_s = float(plan_interval_s)
        self.tier_matching = bool(tier_matching)
        self.merge = bool(merge)
        if min_rate_per_s <= 0:
            raise ValueError("min_rate_per_s must be > 0")
        self.min_rate = float(min_rate_per_s)
        # cached group plan: (active job ids, atom masks, time planned, serves, group supply)
        self._plan: tuple | None = None
        # remembered per-atom job orders of the current group plan (None -> that plan's serves)
        self._order_memo: dict = {}

    def _reject(self, view: FLView, jobs: list[JobView]) -> list[JobView]:
        """Drop the rounds whose request Venn rejects: eligible check-ins per minute below half
        the request rate. Only under the request-deadline round rule (a rejected round then
        aborts at its deadline and asks again), decided once per request."""
        if not self.reject_slow or view.deadline_from != "request":
            return jobs
        keep = []
        eligible_rate: dict[int, float] = {}  # requirement -> eligible check-ins per second
        for j in jobs:
            seen = self._rejected.get(j.job_id)
            if seen is not None and seen == j.round_requested_s:
                continue
            if seen is None or seen != j.round_requested_s:
                minutes = j.deadline_s // 60
                if minutes > 0:
                    r = eligible_rate.get(j.requirement)
                    if r is None:
                        q = j.requirement
                        r = eligible_rate[q] = sum([a.supply_per_s for a in view.atoms if (a.mask >> q) & 1])
                    rate_per_min = 60.0 * r
                    if REJECT_RATE_FRACTION * j.participants / minutes > rate_per_min and rate_per_min > 0:
                        self._rejected[j.job_id] = j.round_requested_s
                        continue
                self._rejected.pop(j.job_id, None)
            keep.append(j)
        return keep

    # ------------------------------------------------------------------------- schedule
    def schedule(self, view: FLView) -> FLDecision:
        jobs = self._reject(view, demanding(view))
        if not jobs:
            return FLDecision(order={a.mask: () for a in view.atoms})
        if self.merge_rule == "irs":
            return self._schedule_irs(view, jobs)
        rate = self._rates(view)
        serves, supply = self._group_plan(view, rate)
        by_key = sorted(jobs, key=self._key(supply))  # keys end with the job id: a total order
        order = self._atom_order(view, by_key, serves)

        max_tier: dict[int, int] = {}
        if self.tier_matching and len(view.tiers) > 1:
            offered = self._offered(view, rate, order, jobs)
            for j in jobs:
                t = self._best_tier(view, j, offered.get(j.job_id))
                if t < len(view.tiers) - 1:
                    max_tier[j.job_id] = t
        return FLDecision(order=order, max_tier=max_tier)

    def _atom_order(self, view: FLView, by_key: list[JobView], serves: dict[int, frozenset]) -> dict[int, tuple[int, ...]]:
        """Per atom: the jobs of the groups it serves first, then the other eligible jobs, each
        part in `by_key` order. It depends only on that order, the jobs' requirements and the
        group plan, so it is remembered per (group plan, order): an executor asking again
        after a round starts often gets an order it has seen before (the same dict object comes
        back, which an executor may use to skip its own rebuild; nobody may modify it)."""
        key = (tuple(j.job_id for j in by_key), tuple(j.requirement for j in by_key))
        memo = self._order_memo
        if memo.get(None) is not serves:  # a new group plan: forget the orders of the old one
            memo.clear()
            memo[None] = serves
        order = memo.get(key)
        if order is not None:  # the same plan object implies the same atoms (see _group_plan)
            return order
        order = {}
        pairs = list(zip(*key, strict=True))
        for a in view.atoms:
            m = a.mask
            served = serves.get(m, frozenset())
            first = [jid for jid, r in pairs if (m >> r) & 1 and r in served]
            rest = [jid for jid, r in pairs if (m >> r) & 1 and r not in served]
            order[m] = tuple(first + rest)
        if len(memo) > 4096:
            memo.clear()
            memo[None] = serves
        memo[key] = order
        return order

    def _rates(self, view: FLView) -> dict[int, float]:
        rate = {a.mask: max(a.supply_per_s, 0.0) for a in view.atoms}
        if sum(rate.values()) <= 0:  # nothing observed yet: treat every atom as equally rich
            rate = {m: 1.0 for m in rate}
        return rate

    def _key(self, supply: dict[int, float]):
        if self.job_order == "time":  # remaining device-rounds over the group's supply
            return lambda j: (j.remaining_service / max(supply.get(j.requirement, 0.0), self.min_rate),
                              j.arrival_s, j.job_id)
        if self.job_order == "round_demand":
            # ties as in Venn's JobGroup heap of (request size, job id), scanned from its top for a
            # strictly smaller remaining demand (src/irs.py, src/venn.py VennReqScheduler.schedule_task)
            return lambda j: (j.remaining_demand, j.participants, j.arrival_s, j.job_id)
        return lambda j: (j.remaining_service, j.arrival_s, j.job_id)

    # ------------------------------------------------------------------------- group plan
    def _group_plan(self, view: FLView, rate: dict[int, float]) -> tuple[dict[int, frozenset], dict[int, float]]:
        """Claims and merges: atom mask -> groups served first there; group -> its supply."""
        ids = tuple(sorted(j.job_id for j in view.jobs))
        masks = tuple(a.mask for a in view.atoms)
        p = self._plan
        if (p is not None and p[0] == ids and p[1] == masks
                and 0 <= view.time_s - p[2] < self.plan_interval_s):
            return p[3], p[4]
        serves, supply = self._build_plan(view, rate)
        self._plan = (ids, masks, view.time_s, serves, supply)
        return serves, supply

    def _build_plan(self, view: FLView, rate: dict[int, float]) -> tuple[dict[int, frozenset], dict[int, float]]:
        # every arrived, unfinished job counts (a job whose round is running asks again soon)
        groups: dict[int, list[JobView]] = {}
        for j in view.jobs:
            if j.remaining_rounds > 0:
                groups.setdefault(j.requirement, []).append(j)
        elig = {g: [a.mask for a in view.atoms if a.eligible_for(g)] for g in groups}
        total = {g: sum(rate[m] for m in elig[g]) for g in groups}
        order_g = sorted(groups, key=lambda g: (total[g], g))

        claimed: dict[int, int] = {}  # atom -> claiming group (scarcest eligible group)
        for g in order_g:
            for m in elig[g]:
                claimed.setdefault(m, g)
        supply = {g: sum(rate[m] for m, h in claimed.items() if h == g) for g in groups}
        serves: dict[int, set[int]] = {m: {g} for m, g in claimed.items()}
        if not self.merge or len(groups) < 2:
            return {m: frozenset(s) for m, s in serves.items()}, supply

        by_abundance = sorted(groups, key=lambda g: (-supply[g], g))
        if self.merge_rule == "queue":
            self._merge_by_queue(groups, elig, claimed, serves, supply, order_g, by_abundance, rate)
            return {m: frozenset(s) for m, s in serves.items()}, supply

        fluid = _Fluid(view, groups, rate, self.min_rate)
        cost = fluid.cost(serves)
        for g, _h, shared in _merge_candidates(order_g, by_abundance, elig, claimed, serves):
            trial = {m: (s | {g} if m in shared else s) for m, s in serves.items()}
            c = fluid.cost(trial)
            if c < cost * (1 - 1e-9):
                serves.update(trial)  # in place: the candidate generator reads `serves`
                cost = c
                supply[g] += sum(rate[m] for m in shared)
        # the fully shared plan (every group merged) is a candidate too
        full = {m: {g for g in groups if (m >> g) & 1} for m in serves}
        c = fluid.cost(full)
        if c < cost * (1 - 1e-9):
            serves = full
            supply = {g: total[g] for g in groups}
        return {m: frozenset(s) for m, s in serves.items()}, supply

    def _merge_by_queue(self, groups, elig, claimed, serves, supply, order_g, by_abundance, rate) -> None:
        """The simple rule: merge when g's queue alone, D_g / S_g, would wait longer than the
        combined queue on the combined supply, (D_g + D_h) / (S_g + S_shared)."""
        demand = {g: float(sum(j.remaining_demand for j in groups[g])) for g in groups}
        for g, h, shared in _merge_candidates(order_g, by_abundance, elig, claimed, serves):
            s_sh = sum(rate[m] for m in shared)
            wait_now = demand[g] / max(supply[g], self.min_rate)
            wait_merged = (demand[g] + demand[h]) / max(supply[g] + s_sh, self.min_rate)
            if wait_merged < wait_now:
                for m in shared:
                    serves[m].add(g)
                supply[g] += s_sh
                demand[g] += demand[h]

    # ------------------------------------------------------------------------- IRS (artifact)
    def _schedule_irs(self, view: FLView, jobs: list[JobView]) -> FLDecision:
        """The allocation SymbioticLab/Venn's simulator runs (src/irs.py `IRS.
        schedule_first_request_per_group`, src/venn.py `VennReqScheduler.schedule_task`),
        rebuilt on every call (the artifact rebuilds it on every request, filled request and
        round close). Every atom belongs to exactly one requirement group and serves only that
        group's requesting jobs (no fallback to other eligible jobs):
        1. claims: requirements in order of increasing eligible supply each take the atoms no
           scarcer requirement took (requirements without jobs too);
        2. merges: groups in order of decreasing eligible supply; a group with requests takes
           over the next scarcer group's atoms when that group has no requests, or when its own
           queue, cut where its wait (sum of demand / supply) reaches the other's, is longer per
           unit of supply than the other's queue (`_get_affected_queuing_len`); the other group
           then gets nothing until the next rebuild; the first refusal ends the group's merges.
           Demands are the requests' sizes (participants), queues the requesting jobs;
        3. within a group, the smallest remaining demand of the current round first."""
        rate = self._rates(view)
        n_req = len(view.requirements)
        tot = {e: sum(rate[a.mask] for a in view.atoms if a.eligible_for(e)) for e in range(n_req)}
        seen = [e for e in range(n_req) if tot[e] > 0]
        owner: dict[int, int] = {}
        for e in sorted(seen, key=lambda e: (tot[e], e)):
            for a in view.atoms:
                if a.eligible_for(e) and rate[a.mask] > 0:
                    owner.setdefault(a.mask, e)
        alloc = {e: sum(rate[m] for m, g in owner.items() if g == e) for e in seen}
        alloc = {e: v if v > 0 else self.min_rate for e, v in alloc.items()}  # max(1, count)
        queue: dict[int, list[JobView]] = {}
        for j in jobs:
            queue.setdefault(j.requirement, []).append(j)
        qlen = {e: len(queue.get(e, ())) for e in seen}
        dem = {e: sorted(float(j.participants) for j in queue.get(e, ())) for e in seen}
        res = {e: [alloc[e]] * qlen[e] for e in seen}
        desc = sorted(seen, key=lambda e: (-tot[e], e))
        for i, e in enumerate(desc):
            if qlen[e] == 0 or alloc[e] <= 0:
                alloc[e] = 0.0
                for m in [m for m, g in owner.items() if g == e]:
                    del owner[m]
                continue
            for c in desc[i + 1:]:
                if qlen[c] == 0:
                    if alloc[c] > 0:
                        alloc[e] += alloc[c]
                    alloc[c] = 0.0
                    for m in [m for m, g in owner.items() if g == c]:
                        if (m >> e) & 1:
                            owner[m] = e
                    continue
                affected = _affected_queue_len(dem[e], res[e], dem[c], res[c])
                if self.merge and alloc[c] > 0 and affected / alloc[e] > qlen[c] / alloc[c]:
                    add = alloc[c]
                    alloc[e] += add
                    qlen[e] += qlen[c]
                    dem[e] = dem[e] + dem[c]
                    res[e] = [r + add for r in res[e]] + res[c]
                    for m in [m for m, g in owner.items() if g == c]:
                        if (m >> e) & 1:  # the artifact hands over all of c's atoms, even
                            owner[m] = e  # those e's jobs are not eligible for; orrery keeps those with c
                    alloc[c], dem[c], res[c] = 0.0, [], []
                else:
                    break
        key = self._key({})
        order = {}
        for a in view.atoms:
            g = owner.get(a.mask)
            order[a.mask] = tuple(j.job_id for j in sorted(queue.get(g, ()), key=key)) if g is not None else ()
        return FLDecision(order=order)

    # ------------------------------------------------------------------------- tiers
    def _offered(self, view: FLView, rate: dict[int, float], order: dict[int, tuple[int, ...]],
                 jobs: list[JobView]) -> dict[int, list[float]]:
        """Per demanding job, per speed tier: the check-in rate reaching it while it collects.

        The atoms' rates flow down their priority lists; a job ahead takes what it can absorb
        (its round's devices per round time) and the rest reaches the next job, so a job's
        collection rate reflects every job ahead of it, whatever its group."""
        tiers = len(view.tiers)
        need = {j.job_id: math.ceil(view.overcommit * j.participants - 1e-9) for j in jobs}
        cap = {}
        for j in jobs:
            rt = min(max(view.tiers[-1].response_tail_s(j.work_units, j.model_bytes), 1.0), j.deadline_s)
            cap[j.job_id] = need[j.job_id] / rt
        out = {j.job_id: [0.0] * tiers for j in jobs}
        for a in view.atoms:
            r = rate[a.mask]
            if r <= 0:
                continue
            split = list(a.tier_supply_per_s[:tiers]) + [0.0] * max(0, tiers - len(a.tier_supply_per_s))
            tot = sum(split)
            frac = [x / tot for x in split] if tot > 0 else [1.0 / tiers] * tiers
            left = 1.0  # fraction of the atom's rate not yet absorbed
            for jid in order.get(a.mask, ()):
                if left <= 1e-12:
                    break
                o = out[jid]
                for k in range(tiers):
                    o[k] += left * r * frac[k]
                # the job absorbs up to its cap; a collecting job takes all while it collects
                left *= max(0.0, 1.0 - cap[jid] / r) if r > 0 else 0.0
        return out

    def _best_tier(self, view: FLView, job: JobView, offered: list[float] | None) -> int:
        """Tier limit minimising (time to collect the round's devices) + (tail response time)."""
        last = len(view.tiers) - 1
        if not offered:
            return last
        queued = float(max(job.remaining_demand, 1))
        best, best_cost = last, math.inf
        cum = 0.0
        costs = []
        for k, tier in enumerate(view.tiers):
            cum += offered[k] if k < len(offered) else 0.0
            cost = queued / cum + tier.response_tail_s(job.work_units, job.model_bytes) if cum > 0 else math.inf
            costs.append(cost)
            if cost < best_cost - 1e-9:
                best, best_cost = k, cost
        # pin only for a clear saving: rates are recent averages and supply drifts over the day
        if best != last and math.isfinite(costs[last]) and best_cost > (1.0 - self.tier_margin) * costs[last]:
            return last
        return best


class _Fluid:
    """Fluid estimate of the active jobs' remaining completion times under a group plan.

    Each atom supplies devices at its recent idle check-in rate; the rate flows down the
    atom's priority list (groups served there first, then the other eligible jobs, each part
    smallest remaining service first). A job absorbs at most `ceil(overcommit x participants)`
    devices per round time (tail response time, at most the deadline): while its round runs it
    asks for nothing, and the devices go to the next job. Jobs drain their remaining device
    assignments; the cost of a plan is the sum of the completion-time estimates (a job that
    no atom feeds counts with a long horizon, so plans that starve jobs lose).
    """

    def __init__(self, view: FLView, groups: dict[int, list[JobView]], rate: dict[int, float], min_rate: float):
        self.rate = rate
        self.masks = [a.mask for a in view.atoms if rate[a.mask] > 0]
        last = view.tiers[-1] if view.tiers else None
        jobs = sorted((j for g in groups.values() for j in g),
                      key=lambda j: (j.remaining_service, j.arrival_s, j.job_id))
        self.jobs = jobs
        self.req = [j.requirement for j in jobs]
        self.work = []
        self.cap = []
        for j in jobs:
            need = math.ceil(view.overcommit * j.participants - 1e-9)
            rounds_left = max(j.remaining_rounds - 1, 0)
            self.work.append(float(j.remaining_demand + rounds_left * need))
            rt = last.response_tail_s(j.work_units, j.model_bytes) if last is not None else j.deadline_s
            rt = min(max(rt, 1.0), j.deadline_s)
            self.cap.append(need / rt)
        total = sum(rate.values())
        # a starved job: as if it got a thousandth of all supply
        self.horizon = sum(self.work) / max(total * 1e-3, min_rate)

    def cost(self, serves: dict[int, set[int]]) -> float:
        n = len(self.jobs)
        lists = {}
        for m in self.masks:
            served = serves.get(m, ())
            el = [i for i in range(n) if (m >> self.req[i]) & 1]
            lists[m] = [i for i in el if self.req[i] in served] + [i for i in el if self.req[i] not in served]
        work = list(self.work)
        alive = [w > _EPS for w in work]
        t = 0.0
        total = 0.0
        left = sum(alive)
        while left:
            got = self._alloc(lists, alive)
            dt = math.inf
            for i in range(n):
                if alive[i] and got[i] > _EPS:
                    dt = min(dt, work[i] / got[i])
            if not math.isfinite(dt):  # nobody can progress
                total += left * (t + self.horizon)
                break
            t += dt
            for i in range(n):
                if alive[i] and got[i] > _EPS:
                    work[i] -= got[i] * dt
                    if work[i] <= 1e-9 * max(self.work[i], 1.0):
                        alive[i] = False
                        left -= 1
                        total += t
        return total

    def _alloc(self, lists: dict[int, list[int]], alive: list[bool]) -> list[float]:
        """Priority water-fill: each atom offers its remaining rate to the first job on its list
        that is alive and not yet at its cap; a job offered by several atoms takes from them in
        proportion."""
        n = len(self.jobs)
        got = [0.0] * n
        capleft = [self.cap[i] if alive[i] else 0.0 for i in range(n)]
        rem = {m: self.rate[m] for m in lists}
        ptr = dict.fromkeys(lists, 0)
        while True:
            offers: dict[int, list[int]] = {}
            for m, lst in lists.items():
                if rem[m] <= _EPS:
                    continue
                p = ptr[m]
                while p < len(lst) and capleft[lst[p]] <= _EPS:
                    p += 1
                ptr[m] = p
                if p < len(lst):
                    offers.setdefault(lst[p], []).append(m)
            if not offers:
                return got
            for i, ms in offers.items():
                tot = sum(rem[m] for m in ms)
                take = min(tot, capleft[i])
                frac = take / tot
                for m in ms:
                    rem[m] -= rem[m] * frac
                    if frac >= 1.0:
                        rem[m] = 0.0
                got[i] += take
                capleft[i] -= take
                if capleft[i] <= _EPS * max(self.cap[i], 1.0):
                    capleft[i] = 0.0


def _affected_queue_len(dem: list[float], res: list[float], dem_other: list[float], res_other: list[float]) -> int:
    """How much of a queue waits as long as another queue (SymbioticLab/Venn src/irs.py
    `_get_affected_queuing_len`): all of it when its total wait (sum of demand / supply) is at
    most the other's, else the number of jobs before its cumulative wait reaches the other's."""
    own = sum(d / r for d, r in zip(dem, res, strict=True))
    other = sum(d / r for d, r in zip(dem_other, res_other, strict=True))
    if own <= other:
        return len(dem)
    acc = 0.0
    for i, (d, r) in enumerate(zip(dem, res, strict=True)):
        acc += d / r
        if acc >= other:
            return i
    return len(dem)


def _merge_candidates(order_g, by_abundance, elig, claimed, serves):
    """(g, h, shared atoms) for every scarcer group g (in order) and every other group h whose
    claimed atoms g is eligible for but does not serve yet, most abundant h first."""
    for g in order_g:
        for h in by_abundance:
            if h == g:
                continue
            shared = [m for m in elig[g] if claimed.get(m) == h and g not in serves[m]]
            if shared:
                yield g, h, shared


@register("fl", "venn_orrery")
class VennOrrery(Venn):
    """Venn with orrery's refinements (`variant="orrery"`), registered under its own name so a
    study can show it beside the paper's Venn."""

    def __init__(self, **kw):
        kw.setdefault("variant", "orrery")
        super().__init__(**kw)
