import pytest

from orrery.policies.fl.base import AtomView, FLView, JobView, TierView
from orrery.policies.registry import make_policy


def job(jid, req, demand, rounds=10, done=0, arrival=0.0, work=100.0):
    return JobView(jid, arrival, req, demand, rounds, done, demand, 0.0, 600.0, work, 1e6)


TIERS = (TierView(0, 0.02, 2e6, 1e6), TierView(1, 0.2, 1e6, 5e5))


def view(jobs, atoms):
    return FLView(0.0, ("req1", "req4"), tuple(jobs), tuple(atoms), TIERS, 1.3)


def test_venn_scarce_group_claims_its_devices():
    # req index 0 = broad (all atoms), 1 = scarce (only atom 0b11); the broad job is smaller
    atoms = [AtomView(0b01, 10.0, (5.0, 5.0)), AtomView(0b11, 1.0, (0.5, 0.5))]
    jobs = [job(1, 0, demand=10, rounds=1), job(2, 1, demand=50, rounds=50)]
    d = make_policy("fl", "venn", {"tier_matching": False}).schedule(view(jobs, atoms))
    assert d.order[0b11][0] == 2  # scarce job first on the devices only it can use
    assert d.order[0b01] == (1,)
    s = make_policy("fl", "srsf").schedule(view(jobs, atoms))
    assert s.order[0b11][0] == 1  # SRSF ignores scarcity


def test_fifo_and_srsf_orders():
    atoms = [AtomView(0b11, 1.0, (0.5, 0.5))]
    jobs = [job(1, 0, 100, rounds=100, arrival=0.0), job(2, 0, 10, rounds=2, arrival=5.0)]
    assert make_policy("fl", "fifo").schedule(view(jobs, atoms)).order[0b11] == (1, 2)
    assert make_policy("fl", "srsf").schedule(view(jobs, atoms)).order[0b11] == (2, 1)
    # the paper's SRSF looks at the current round's remaining demand only
    jobs = [job(1, 0, 10, rounds=100, arrival=0.0), job(2, 0, 50, rounds=2, arrival=5.0)]
    assert make_policy("fl", "srsf").schedule(view(jobs, atoms)).order[0b11] == (1, 2)
    assert make_policy("fl", "srsf_service").schedule(view(jobs, atoms)).order[0b11] == (2, 1)
    assert make_policy("fl", "random").schedule(view(jobs, atoms)).split == "random"


def test_venn_tier_pinning():
    atoms = [AtomView(0b11, 100.0, (50.0, 50.0))]
    heavy = [job(1, 0, demand=10, work=10_000.0)]  # tail 200 s vs 2000 s: pin to the fast tier
    assert make_policy("fl", "venn_orrery").schedule(view(heavy, atoms)).max_tier == {1: 0}
    light = [job(1, 0, demand=5000, work=1.0)]  # waiting dominates: use every tier
    assert make_policy("fl", "venn_orrery").schedule(view(light, atoms)).max_tier == {}
    # the paper's Venn (VennReqScheduler) does no tier matching
    assert make_policy("fl", "venn").schedule(view(heavy, atoms)).max_tier == {}


def test_venn_rejects_requests_below_half_the_request_rate():
    # 600 participants in 10 minutes = 60/min requested; 0.4/s = 24/min eligible check-ins < 30
    slow = [AtomView(0b11, 0.4, (0.2, 0.2))]
    jobs = [job(1, 0, 600)]
    v = FLView(0.0, ("req1", "req4"), tuple(jobs), tuple(slow), TIERS, 1.3, "request")
    assert make_policy("fl", "venn").schedule(v).order[0b11] == ()
    assert make_policy("fl", "venn_orrery").schedule(v).order[0b11] == (1,)
    # under orrery's round rule a rejected round could never end: no rejection
    assert make_policy("fl", "venn").schedule(view(jobs, slow)).order[0b11] == (1,)
    fast = [AtomView(0b11, 1.0, (0.5, 0.5))]  # 60/min >= 30/min
    v = FLView(0.0, ("req1", "req4"), tuple(jobs), tuple(fast), TIERS, 1.3, "request")
    assert make_policy("fl", "venn").schedule(v).order[0b11] == (1,)


def test_bad_params():
    from orrery.policies.registry import PolicyInputError

    with pytest.raises(PolicyInputError):
        make_policy("fl", "venn", {"nope": 1})
