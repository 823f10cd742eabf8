"""Transformable models: function preservation, parameter counts, soft aggregation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.policies.fedtrans.base import ArchSpec
from orrery.realbackend.fedtrans_models import deepen, forward, init_params, n_params, widen
from orrery.realbackend.fl_train import (
    ClientUpdate,
    aggregate,
    aggregation_weights,
    cell_update_ratio,
    local_train,
)

torch.set_num_threads(1)


@st.composite
def archs(draw):
    kind = draw(st.sampled_from(["mlp", "cnn"]))
    n_cells = draw(st.integers(1, 3))
    cells = tuple((draw(st.integers(1, 6)), draw(st.integers(1, 2))) for _ in range(n_cells))
    shape = (draw(st.integers(1, 12)),) if kind == "mlp" else (draw(st.integers(1, 3)), 6, 6)
    return ArchSpec(kind, shape, draw(st.integers(2, 5)), cells)


def inputs(arch, seed, n=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, int(np.prod(arch.in_shape))), generator=g) * 2


@settings(max_examples=40, deadline=None)
@given(arch=archs(), seed=st.integers(0, 10_000), data=st.data())
def test_widen_and_deepen_preserve_function(arch, seed, data):
    g = torch.Generator().manual_seed(seed)
    p = init_params(arch, g)
    x = inputs(arch, seed)
    y0 = forward(arch, p, x)
    a, q = arch, p
    for _ in range(data.draw(st.integers(1, 3))):  # chains of transformations
        cell = data.draw(st.integers(0, len(a.cells) - 1))
        if data.draw(st.booleans()):
            a, q = widen(a, q, cell, a.cells[cell][0] + data.draw(st.integers(1, 6)), g,
                         spread=data.draw(st.floats(0, 1)))
        else:
            a, q = deepen(a, q, cell)
        assert n_params(q) == a.n_params()
        assert torch.allclose(forward(a, q, x), y0, atol=1e-5, rtol=1e-5)
    assert n_params(p) == arch.n_params()  # the parent's weights are untouched


def test_widen_breaks_symmetry_and_deepen_is_identity():
    arch = ArchSpec("mlp", (5,), 3, ((4, 1), (4, 1)))
    g = torch.Generator().manual_seed(0)
    p = init_params(arch, g)
    a, q = widen(arch, p, 0, 8, g, spread=0.5)
    w_in, w_out = q["c0.l0.w"], q["c1.l0.w"]
    for j in range(4, 8):  # copy j duplicates an original unit's incoming weights...
        src = [i for i in range(4) if torch.equal(w_in[i], w_in[j])]
        assert src
        # ...but its outgoing column is not proportional to the original's (different gradients)
        r = w_out[:, j] / w_out[:, src[0]]
        assert r.std() > 1e-3
    _, q0 = widen(arch, p, 0, 8, g, spread=0.0)
    assert q0["c1.l0.w"][:, :4].abs().sum() < p["c1.l0.w"].abs().sum() + 1e-6
    b, r = deepen(arch, p, 1)
    assert b.cells == ((4, 1), (4, 2)) and torch.equal(r["c1.l1.w"], torch.eye(4))
    with pytest.raises(ValueError):
        widen(arch, p, 0, 3, g)
    with pytest.raises(ValueError):
        deepen(arch, p, 5)


def random_setup(seed, n_models, n_updates):
    g = torch.Generator().manual_seed(seed)
    base = ArchSpec("mlp", (4,), 3, ((3, 1), (3, 1)))
    models, archs_ = {0: init_params(base, g)}, {0: base}
    for m in range(1, n_models):
        a, q = widen(archs_[m - 1], models[m - 1], m % 2, archs_[m - 1].cells[m % 2][0] + 1, g)
        archs_[m], models[m] = a, q
    rng = np.random.default_rng(seed)
    ups = []
    for _ in range(n_updates):
        mid = int(rng.integers(0, n_models))
        ups.append(ClientUpdate(mid, {k: v + torch.randn(v.shape, generator=g) for k, v in models[mid].items()},
                                int(rng.integers(1, 50)), 1.0))
    share = {(a, b): float(rng.uniform(0, 1)) for a in models for b in models if a != b}
    return models, ups, share


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_models=st.integers(1, 4), n_updates=st.integers(0, 8))
def test_aggregation_preserves_shapes_and_is_convex(seed, n_models, n_updates):
    models, ups, share = random_setup(seed, n_models, n_updates)
    new = aggregate(models, ups, share)
    for mid, params in models.items():
        assert set(new[mid]) == set(params)
        for k, cur in params.items():
            assert new[mid][k].shape == cur.shape
            coef, keep = aggregation_weights(mid, k, tuple(cur.shape), ups, share)
            assert (coef >= 0).all() and keep >= 0 and abs(coef.sum() + keep - 1.0) < 1e-9
            srcs = [cur] + [u.params[k] for u, c in zip(ups, coef, strict=True) if c > 0]
            lo = torch.stack(srcs).min(0).values
            hi = torch.stack(srcs).max(0).values
            assert ((new[mid][k] >= lo - 1e-5) & (new[mid][k] <= hi + 1e-5)).all()


def test_aggregation_is_fedavg_for_one_model_and_independent_without_share():
    models, ups, _ = random_setup(1, 1, 3)
    new = aggregate(models, ups, {})
    n = np.array([u.n_samples for u in ups], dtype=float)
    want = sum(float(w) * u.params["head.w"] for w, u in zip(n / n.sum(), ups, strict=True))
    assert torch.allclose(new[0]["head.w"], want, atol=1e-6)
    models, ups, _ = random_setup(2, 2, 4)
    only1 = [u for u in ups if u.model_id == 1] or ups[:0]
    new = aggregate(models, only1, {})
    assert all(torch.equal(new[0][k], models[0][k]) for k in models[0])  # no share: untouched


def test_local_training_deterministic_and_learns():
    arch = ArchSpec("mlp", (4,), 2, ((8, 1),))
    g = np.random.default_rng(0)
    x = g.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    p = init_params(arch, torch.Generator().manual_seed(0))
    a = local_train(arch, p, x, y, epochs=5, batch_size=8, lr=0.1, gen=torch.Generator().manual_seed(1))
    b = local_train(arch, p, x, y, epochs=5, batch_size=8, lr=0.1, gen=torch.Generator().manual_seed(1))
    assert all(torch.equal(a.params[k], b.params[k]) for k in p)
    c = local_train(arch, a.params, x, y, epochs=1, batch_size=8, lr=0.1, gen=torch.Generator().manual_seed(2))
    assert c.loss_before < a.loss_before
    r = cell_update_ratio(arch, p, a.params)
    assert len(r) == 1 and r[0] > 0 and cell_update_ratio(arch, p, p) == [0.0]
