"""Federated datasets: partitions, digits, the teacher task and the LEAF loader."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import TraceFormatError
from orrery.workloads.fl_data import (
    Teacher,
    load_leaf,
    make_federated,
    partition,
    quantity_sizes,
    read_leaf,
    write_leaf,
)


def pools(n=3000, k=10, d=4, seed=0):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, d)).astype(np.float32)
    y = g.integers(0, k, n)
    return x[: n // 2], y[: n // 2], x[n // 2:], y[n // 2:]


@settings(max_examples=25, deadline=None)
@given(alpha=st.floats(0.01, 100.0), n_clients=st.integers(1, 30), mean=st.floats(5, 80),
       sigma=st.floats(0, 1.5), seed=st.integers(0, 1000))
def test_partition_shapes_property(alpha, n_clients, mean, sigma, seed):
    ds = partition(*pools(), n_clients, 10, np.random.default_rng(seed), alpha=alpha, mean_samples=mean,
                   quantity_sigma=sigma, min_samples=3, test_samples=7)
    assert len(ds) == n_clients
    for c in ds.clients:
        assert len(c.x_train) == len(c.y_train) >= 3
        assert len(c.x_test) == len(c.y_test) == 7
        assert c.y_train.max() < 10 and c.y_test.min() >= 0
    ent = ds.label_entropy()
    assert ((ent >= 0) & (ent <= 1 + 1e-9)).all()


def test_dirichlet_alpha_controls_label_skew():
    def mean_entropy(alpha):
        return partition(*pools(), 60, 10, np.random.default_rng(1), alpha=alpha, mean_samples=80).label_entropy().mean()

    skewed, iid = mean_entropy(0.05), mean_entropy(100.0)
    assert skewed < 0.45 < 0.9 < iid
    # a client's test labels follow its training mix: mostly the same dominant class
    ds = partition(*pools(), 40, 10, np.random.default_rng(2), alpha=0.05, mean_samples=80, test_samples=40)
    same = [np.bincount(c.y_train, minlength=10).argmax() == np.bincount(c.y_test, minlength=10).argmax()
            for c in ds.clients]
    assert np.mean(same) > 0.8


def test_quantity_skew():
    g = np.random.default_rng(0)
    assert len(set(quantity_sizes(50, 40, 0.0, 1, g).tolist())) == 1
    s = quantity_sizes(2000, 40, 1.0, 1, g)
    assert s.std() > 20 and abs(s.mean() - 40) < 5


def test_digits_and_teacher():
    a = make_federated("digits", 20, np.random.default_rng(3))
    b = make_federated("digits", 20, np.random.default_rng(3))
    assert a.input_shape == (1, 8, 8) and a.n_classes == 10
    assert all(np.array_equal(x.x_train, y.x_train) for x, y in zip(a.clients, b.clients, strict=True))
    assert 0.0 <= min(c.x_train.min() for c in a.clients) and max(c.x_train.max() for c in a.clients) <= 1.0
    # the teacher is fixed by its own seed: the same inputs get the same labels whatever the data seed
    t1, t2 = Teacher.make(dim=8, seed=5), Teacher.make(dim=8, seed=5)
    x = np.random.default_rng(9).standard_normal((4000, 8))
    y = t1.labels(x)
    assert np.array_equal(y, t2.labels(x))
    assert np.bincount(y, minlength=10).min() > 0.02 * len(y)  # centred logits: no class vanishes
    assert not np.array_equal(y, Teacher.make(dim=8, seed=6).labels(x))
    # not linearly separable: a linear model falls well short (the task needs capacity)
    from sklearn.linear_model import LogisticRegression

    lin = LogisticRegression(max_iter=300).fit(x[:3000], y[:3000]).score(x[3000:], y[3000:])
    assert lin < 0.75
    ds = make_federated("teacher", 10, np.random.default_rng(0), teacher=t1)
    assert ds.input_shape == (8,)


def leaf_users(g, n_users=3, feats=784):
    return {f"f_{i:03d}": (g.random((5 + i, feats)).round(3), g.integers(0, 62, 5 + i)) for i in range(n_users)}


def test_leaf_round_trip(tmp_path):
    g = np.random.default_rng(0)
    users = leaf_users(g)
    write_leaf(tmp_path / "train.json", users)
    ds = load_leaf(tmp_path / "train.json", n_classes=62, rng=np.random.default_rng(0))
    assert len(ds) == 3 and ds.input_shape == (1, 28, 28) and ds.n_classes == 62
    for (_x, y), c in zip(users.values(), ds.clients, strict=True):
        assert len(c.y_train) + len(c.y_test) == len(y) and len(c.y_test) >= 1
    # separate test files; a folder of several JSON files
    (tmp_path / "tr").mkdir()
    (tmp_path / "te").mkdir()
    write_leaf(tmp_path / "tr" / "a.json", dict(list(users.items())[:2]))
    write_leaf(tmp_path / "tr" / "b.json", dict(list(users.items())[2:]))
    write_leaf(tmp_path / "te" / "all.json", leaf_users(np.random.default_rng(1)))
    ds2 = load_leaf(tmp_path / "tr", test_path=tmp_path / "te", n_clients=2)
    assert len(ds2) == 2 and len(ds2.clients[0].y_train) == 5 and len(ds2.clients[0].y_test) == 5


@pytest.mark.parametrize("content, match", [
    ("{not json", "not JSON"),
    (json.dumps({"users": ["a"]}), "user_data"),
    (json.dumps({"users": ["a"], "user_data": {}}), "no x/y"),
    (json.dumps({"users": ["a"], "user_data": {"a": {"x": [[1, 2]], "y": [1, 2]}}}), "shape"),
    (json.dumps({"users": ["a"], "user_data": {"a": {"x": [[1, 2], [1]], "y": [1, 2]}}}), "ragged"),
    (json.dumps({"users": ["a"], "num_samples": [3], "user_data": {"a": {"x": [[1.0]], "y": [1]}}}), "num_samples"),
    (json.dumps({"users": ["a"], "user_data": {"a": {"x": [[1.0]], "y": [-1]}}}), "label"),
    (json.dumps({"users": ["a"], "user_data": {"a": {"x": [[1.0]], "y": [0.5]}}}), "label"),
    (json.dumps({"users": ["a", "b"], "user_data": {"a": {"x": [[1.0]], "y": [0]},
                                                    "b": {"x": [[1.0, 2.0]], "y": [0]}}}), "features"),
])
def test_leaf_malformed(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(TraceFormatError, match=match) as err:
        read_leaf(p)
    assert "bad.json" in str(err.value)


def test_leaf_missing_test_user(tmp_path):
    g = np.random.default_rng(0)
    write_leaf(tmp_path / "tr.json", leaf_users(g, 2, 4))
    write_leaf(tmp_path / "te.json", {"other": (g.random((2, 4)), np.array([0, 1]))})
    with pytest.raises(TraceFormatError, match="no test data"):
        load_leaf(tmp_path / "tr.json", test_path=tmp_path / "te.json")
    with pytest.raises(TraceFormatError, match="no \\*.json"):
        read_leaf(tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else None)
