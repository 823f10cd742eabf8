"""Multi-model FL policies (policies/fedtrans/): contract, and the decisions they make."""

import importlib
from dataclasses import replace

import pytest

from orrery.policies.check import PolicyContractError, check_policy
from orrery.policies.fedtrans.base import (
    ArchSpec,
    ClientView,
    CostModel,
    ModelView,
    MultiModelDecision,
    MultiModelPolicy,
    MultiModelView,
    NewModel,
    tree_distance,
    validate,
)
from orrery.policies.registry import get_policy_class, list_policies, make_policy

# Policy modules are reached through the registry (importing one directly before the domain is
# loaded would make the registry take "fedtrans" for a plug-in domain and skip its other modules).
FedTrans = get_policy_class("fedtrans", "fedtrans")
plateaued = importlib.import_module("orrery.policies.fedtrans.fedtrans").plateaued
tier_archs = importlib.import_module("orrery.policies.fedtrans.tiered").tier_archs

MULTI = ["fedavg", "fedavg_large", "tiered", "fedtrans"]


def test_fl_job_policies_unaffected():
    assert not set(MULTI) & set(list_policies()["fl"]) - {"fedavg"}
    get_policy_class("fedtrans", "fedtrans")  # fedtrans lives in its own policy domain


class _Greedy(MultiModelPolicy):
    """Ignores memory: assigns everyone a model wider than any phone holds."""

    def schedule(self, view):
        if view.purpose == "eval" or len(view.models) >= view.max_models:
            return MultiModelDecision()
        big = ArchSpec("mlp", (16,), 5, ((64, 3), (64, 3)))
        return MultiModelDecision(assign={c.client_id: view.next_model_id for c in view.clients},
                                  new_models=(NewModel("fresh", arch=big),))


def test_contract_catches_overloaded_devices():
    with pytest.raises(PolicyContractError, match="needs .* B, device has"):
        check_policy("fedtrans", _Greedy)


ROOT = ArchSpec("mlp", (16,), 5, ((8, 1), (8, 1)))
COST = CostModel(scale=100.0, batch_size=16)


def client(i, mem=1e9, n=100, ent=1.0, flops=1e10, bw=1e7):
    return ClientView(i, mem, flops, bw, bw, n, ent)


def view(models, clients, purpose="train", budget=1e9, rnd=10, pop=None, **kw):
    return MultiModelView(round=rnd, time_s=0.0, purpose=purpose, models=tuple(models), clients=tuple(clients),
                          population=tuple(pop if pop is not None else clients), assigned={}, target=len(clients),
                          time_budget_s=budget, local_epochs=1, cost=COST, max_width=32, max_depth=2,
                          max_models=6, next_model_id=len(models), **kw)


def mv(mid, arch=ROOT, parent=-1, created=0, losses=(1.0,) * 6, signal=(0.1, 0.5)):
    return ModelView(mid, parent, arch, created, len(losses), tuple(losses), tuple(signal), 3)


def test_plateau_rule():
    assert plateaued((2.0, 1.9, 1.0, 0.99), 2, 0.1) is False
    assert plateaued((1.0, 1.0, 0.99, 0.98), 2, 0.1) is True
    assert plateaued((1.0, 0.9), 2, 0.1) is False  # too short to judge


def test_fedtrans_transforms_bottleneck_cell_then_deepens():
    p = FedTrans(widen_factor=2.0)
    d = p.schedule(view([mv(0)], [client(i) for i in range(5)]))
    assert d.new_models == (NewModel("widen", 0, 1, 16),)  # cell 1 has the larger signal
    assert set(d.assign.values()) <= {0, 1} and 1 in d.assign.values()
    assert validate(view([mv(0)], [client(i) for i in range(5)]), d) == []
    # the same round never transforms twice; a still-improving model is left alone
    assert p.schedule(view([mv(0)], [client(0)])).new_models == ()
    improving = mv(0, losses=(3.0, 2.5, 2.0, 1.5, 1.0, 0.5))
    assert FedTrans().schedule(view([improving], [client(0)])).new_models == ()
    # at max width the cell is deepened
    wide = ArchSpec("mlp", (16,), 5, ((8, 1), (32, 1)))
    d = FedTrans().schedule(view([mv(0, wide)], [client(0)]))
    assert d.new_models == (NewModel("deepen", 0, 1),)


def test_fedtrans_needs_capable_clients_for_a_new_model():
    need_small = COST.train_mem_bytes(ROOT) * 1.01  # nobody could hold a wider model
    pop = [client(i, mem=need_small) for i in range(10)]
    assert FedTrans().schedule(view([mv(0)], pop)).new_models == ()


def test_fedtrans_assignment_is_feasible_and_data_aware():
    child = ROOT.widen(1, 32)
    models = [mv(0), mv(1, child, parent=0, created=5, losses=(1.0,) * 4)]
    mem_child = COST.train_mem_bytes(child)
    weak = client(0, mem=mem_child * 0.9, n=500)
    rich = client(1, mem=mem_child * 2, n=400, ent=1.0)
    poor = client(2, mem=mem_child * 2, n=3, ent=0.0)
    v = view(models, [weak, rich, poor], pop=[weak, rich, poor] + [client(i, n=100) for i in range(3, 9)])
    d = FedTrans(min_clients=0).schedule(v)
    assert d.assign[0] == 0  # cannot hold the child
    assert d.assign[1] == 1  # data-rich, capable: the bigger model
    assert validate(v, d) == []
    # time budget: a slow link cannot move the child's update in time
    slow = client(3, mem=mem_child * 2, bw=2 * COST.update_bytes(ROOT) / 5.0)  # root: 5 s of transfer
    d = FedTrans().schedule(view(models, [slow], budget=10.0))
    assert d.assign.get(3) == 0
    # soft aggregation between relatives, decaying with tree distance
    assert d.share[(0, 1)] == pytest.approx(0.5) and d.share[(1, 0)] == pytest.approx(0.5)
    assert tree_distance({0: -1, 1: 0, 2: 1}, 0, 2) == 2 and tree_distance({0: -1, 1: -1}, 0, 1) is None


def test_fedtrans_eval_uses_largest_trained_model_and_never_proposes():
    child = ROOT.widen(1, 32)
    fresh_child = mv(1, child, parent=0, created=9, losses=(1.0,))
    v = view([mv(0), fresh_child], [client(0)], purpose="eval")
    d = FedTrans(eval_min_rounds=3).schedule(v)
    assert d.new_models == () and d.assign == {0: 0}  # the child has not trained enough yet
    d = FedTrans(eval_min_rounds=1).schedule(v)
    assert d.assign == {0: 1}


def test_tiered_and_fedavg():
    v = view([mv(0)], [client(0), client(1, mem=COST.train_mem_bytes(ROOT) * 1.5)])
    tiers = tier_archs(v, 3)
    assert tiers[0] == ROOT and tiers[-1].cells == ((32, 2), (32, 2)) and len(tiers) == 3
    d = make_policy("fedtrans", "tiered").schedule(v)
    assert len(d.new_models) == 2 and all(nm.op == "fresh" for nm in d.new_models) and d.share == {}
    assert d.assign[1] == 0 and d.assign[0] == 2  # each client: the largest tier it can train
    assert validate(v, d) == []
    d = make_policy("fedtrans", "fedavg").schedule(v)
    assert d.assign == {0: 0, 1: 0} and d.new_models == ()
    d = make_policy("fedtrans", "fedavg_large").schedule(v)
    assert d.assign == {0: 1} and d.new_models[0].arch.cells == ((32, 2), (32, 2))
    with pytest.raises(Exception, match="size"):
        make_policy("fedtrans", "fedavg", {"size": "huge"})


def test_validator_rejects_bad_decisions():
    v = view([mv(0)], [client(0)])
    assert validate(v, MultiModelDecision(assign={9: 0}))  # unknown client
    assert validate(v, MultiModelDecision(assign={0: 5}))  # unknown model
    assert validate(v, MultiModelDecision(new_models=(NewModel("widen", 0, 0, 4),)))  # not wider
    assert validate(v, MultiModelDecision(new_models=(NewModel("widen", 0, 0, 64),)))  # beyond max_width
    assert validate(v, MultiModelDecision(new_models=(NewModel("deepen", 0, 7),)))  # no such cell
    assert validate(v, MultiModelDecision(share={(0, 0): 1.5}))
    assert validate(replace(v, purpose="eval"), MultiModelDecision(new_models=(NewModel("deepen", 0, 0),)))
