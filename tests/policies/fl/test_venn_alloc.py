"""Venn's intersection-aware allocation: claims, fluid-judged merging, plan cache, tier pinning."""

import math

import pytest

from orrery.policies.check import check_policy
from orrery.policies.fl.base import AtomView, FLView, JobView, TierView
from orrery.policies.fl.venn import Venn, _Fluid
from orrery.policies.registry import make_policy

# requirement 0 = broad (atoms 0b01 and 0b11), requirement 1 = scarce (atom 0b11 only)
TIERS = (TierView(0, 0.02, 2e6, 1e6), TierView(1, 0.2, 1e6, 5e5))
BROAD, SCARCE = 0, 1


def job(jid, req, participants, rounds, done=0, demand=None, arrival=0.0, work=100.0, mb=1e6):
    need = math.ceil(1.3 * participants)
    return JobView(jid, arrival, req, participants, rounds, done, need if demand is None else demand,
                   0.0, 600.0, work, mb)


def view(jobs, atoms, t=0.0):
    return FLView(t, ("broad", "scarce"), tuple(jobs), tuple(atoms), TIERS, 1.3)


def atoms(excl, shared):
    return [AtomView(0b01, excl, (excl / 2, excl / 2)), AtomView(0b11, shared, (shared / 2, shared / 2))]


def venn(**kw):
    return make_policy("fl", "venn", {"variant": "orrery", "tier_matching": False, **kw})


def test_conformance_and_both_merge_rules():
    assert "deterministic" in check_policy("fl", Venn)
    assert "deterministic" in check_policy("fl", Venn(merge_rule="queue", plan_interval_s=0.0))
    with pytest.raises(ValueError):
        Venn(merge_rule="nope")


def test_scarce_jobs_are_not_starved_by_a_job_that_can_use_abundant_devices():
    # a big broad job would win SRSF on the shared atom (less remaining service than each
    # scarce job), but it has plenty of exclusive devices while four scarce jobs queue on
    # the shared atom only
    js = [job(1, BROAD, 500, 100)] + [job(10 + k, SCARCE, 300, 200 + k) for k in range(4)]
    v = view(js, atoms(excl=20.0, shared=5.0))
    d = venn().schedule(v)
    assert d.order[0b11][:4] == (10, 11, 12, 13)  # the scarce group claims its only atom
    assert d.order[0b11][-1] == 1  # the broad job stays eligible there (work-conserving)
    assert d.order[0b01] == (1,)
    assert make_policy("fl", "srsf_service").schedule(v).order[0b11][0] == 1  # SRSF ignores scarcity


def test_merge_when_sharing_lowers_the_estimated_completion_times():
    # the broad group's exclusive atom is tiny; the one scarce job is long: sharing the big
    # atom by smallest remaining service first finishes the two short broad jobs much sooner
    js = [job(1, BROAD, 500, 4), job(2, BROAD, 600, 4), job(3, SCARCE, 400, 900)]
    v = view(js, atoms(excl=0.5, shared=30.0))
    d = venn().schedule(v)
    assert d.order[0b11] == (1, 2, 3)
    assert d.order[0b01] == (1, 2)


def test_fluid_estimate_single_atom():
    a = [AtomView(0b11, 10.0, (5.0, 5.0))]
    # two uncapped jobs on one atom, SRSF: completion at W1/r and (W1+W2)/r
    js = [job(1, BROAD, 100, 10, demand=0), job(2, BROAD, 200, 10, demand=0)]
    v = view(js, a)
    groups = {BROAD: list(js)}
    fl = _Fluid(v, groups, {0b11: 10.0}, 1e-6)
    fl.cap = [1e9, 1e9]
    w1, w2 = fl.work
    assert w1 == 9 * 130 and w2 == 9 * 260  # the running round is not counted again
    assert fl.cost({0b11: {BROAD}}) == pytest.approx(w1 / 10 + (w1 + w2) / 10)
    # a capped job takes at most its cap; the rest of the supply flows to the next job
    fl.cap = [2.0, 1e9]
    got = fl._alloc({0b11: [0, 1]}, [True, True])
    assert got == pytest.approx([2.0, 8.0])


def test_plan_is_cached_until_the_job_set_changes_or_the_interval_passes():
    js = [job(1, BROAD, 50, 20), job(3, SCARCE, 400, 900)]
    p = venn(plan_interval_s=600.0)
    p.schedule(view(js, atoms(0.5, 30.0), t=0.0))
    planned = p._plan
    p.schedule(view(js, atoms(0.5, 30.0), t=100.0))
    assert p._plan is planned  # a round event: orders rebuilt, group plan reused
    p.schedule(view(js + [job(2, BROAD, 60, 20, arrival=150.0)], atoms(0.5, 30.0), t=150.0))
    assert p._plan is not planned and p._plan[2] == 150.0  # a job arrived: re-planned
    planned = p._plan
    p.schedule(view(js + [job(2, BROAD, 60, 20, arrival=150.0)], atoms(0.5, 30.0), t=800.0))
    assert p._plan is not planned  # periodic re-plan


def test_tier_pinning_uses_the_rate_reaching_the_job():
    a = [AtomView(0b11, 100.0, (50.0, 50.0))]
    heavy = [job(1, BROAD, 8, 1000, work=10_000.0)]  # tail 200 s vs 2000 s: pin to the fast tier
    assert make_policy("fl", "venn_orrery").schedule(view(heavy, a)).max_tier == {1: 0}
    # the same job behind a big collecting job gets few devices: the longer wait for
    # fast devices outweighs the saving, so it is not pinned
    big = job(0, BROAD, 4000, 1, work=1.0)
    d = make_policy("fl", "venn_orrery").schedule(view([big, *heavy], [AtomView(0b11, 1.0, (0.5, 0.5))]))
    assert d.order[0b11][0] == 0
    assert 1 not in d.max_tier


def irs(**kw):
    return make_policy("fl", "venn", {"variant": "paper", **kw})


def test_irs_atoms_serve_one_group_and_merges_follow_the_queue_rule():
    # Venn's IRS (src/irs.py): the scarce group claims the shared atom, the broad group its
    # exclusive one; each atom lists only its owner's requesting jobs (no fallback)
    js = [job(1, BROAD, 50, 10), job(10, SCARCE, 40, 10), job(11, SCARCE, 10, 10)]
    d = irs().schedule(view(js, atoms(excl=20.0, shared=20.0)))
    assert d.order[0b11] == (11, 10)  # smallest round demand first; the broad job is not listed
    assert d.order[0b01] == (1,)
    # four small broad requests (total wait 4 x 5 / 10 = 2) wait less than the big scarce one
    # (90 / 30 = 3), so all four are "affected"; 4 per unit of supply (/10) exceeds the scarce
    # queue's 1 / 30: the broad group takes over the shared atom and the scarce job waits
    js = [job(k, BROAD, 5, 10) for k in range(1, 5)] + [job(10, SCARCE, 90, 10)]
    d = irs().schedule(view(js, atoms(excl=10.0, shared=30.0)))
    assert d.order[0b11] == (1, 2, 3, 4) and d.order[0b01] == (1, 2, 3, 4)
    assert irs(merge=False).schedule(view(js, atoms(excl=10.0, shared=30.0))).order[0b11] == (10,)
    # one long broad request waits longer than the scarce queue: none affected, no merge
    js = [job(1, BROAD, 50, 10), job(10, SCARCE, 40, 10)]
    assert irs().schedule(view(js, atoms(excl=1.0, shared=30.0))).order[0b11] == (10,)
    # without requests the scarce group's atom goes to the broad group; with no merges it stays
    js = [job(1, BROAD, 50, 10), job(10, SCARCE, 40, 10, demand=0)]
    assert irs().schedule(view(js, atoms(excl=20.0, shared=20.0))).order[0b11] == (1,)
    assert "deterministic" in check_policy("fl", Venn(merge_rule="irs"))


def test_irs_equal_round_demands_tie_by_request_size_then_arrival():
    # Venn's JobGroup heap holds (request size, job id) and is scanned from its top for a strictly
    # smaller remaining demand: among equal remaining demands the smaller request, then the
    # earlier job, wins, whatever the remaining rounds
    js = [job(1, SCARCE, 40, 900, demand=5, arrival=0.0), job(2, SCARCE, 40, 3, demand=5, arrival=10.0),
          job(3, SCARCE, 20, 900, demand=5, arrival=20.0), job(4, SCARCE, 40, 900, demand=4, arrival=30.0)]
    assert irs().schedule(view(js, atoms(excl=1.0, shared=30.0))).order[0b11] == (4, 3, 1, 2)
