"""Length models: the shipped ShareGPT fit against the data, empirical resampling, clipping."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError
from orrery.traces.llm import LengthSamples, load_sharegpt_stats
from orrery.workloads.lengths import (
    SHAREGPT_PARAMS,
    EmpiricalLengths,
    SyntheticLengths,
    clip_total,
    fitted_sharegpt_lengths,
    load_length_params,
)


@pytest.fixture(scope="module")
def sharegpt(shared_data: Path) -> LengthSamples:
    return load_sharegpt_stats(shared_data / "llm" / "sharegpt_8k_stats_llama2.csv")


def test_params_file_documents_data_and_quality() -> None:
    d = load_length_params()
    assert len(d["data"]["sha256"]) == 64 and d["data"]["rows"] == 30731
    q = d["fit_quality"]
    assert q["prompt"]["ks_statistic"] < 0.05 and q["output"]["ks_statistic"] < 0.05


def test_params_checksum_matches_data(shared_data: Path) -> None:
    d = json.loads(SHAREGPT_PARAMS.read_text())
    data = (shared_data / d["data"]["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == d["data"]["sha256"]


def test_fitted_marginals_close_to_data(sharegpt: LengthSamples) -> None:
    p, o = fitted_sharegpt_lengths().sample(50_000, np.random.default_rng(0), max_total_tokens=None)
    for model, data in ((p, sharegpt.prompt_tokens), (o, sharegpt.output_tokens)):
        for q in (0.25, 0.5, 0.75, 0.9):
            assert np.quantile(model, q) == pytest.approx(np.quantile(data, q), rel=0.15)
        assert model.mean() == pytest.approx(data.mean(), rel=0.1)
        assert model.min() >= data.min() and model.max() <= data.max()
    # weak positive dependence, as in the data (Spearman ≈ 0.05)
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    rho = np.corrcoef(rank(p), rank(o))[0, 1]
    assert 0.0 < rho < 0.15


def test_fitted_clipped_to_context() -> None:
    p, o = fitted_sharegpt_lengths().sample(20_000, np.random.default_rng(1))
    assert p.dtype == np.int64 and o.dtype == np.int64
    assert np.all(p >= 1) and np.all(o >= 1) and np.all(p + o <= 4096)
    assert (p + o == 4096).mean() > 0.1  # ShareGPT often exceeds 4k: the clip is active


def test_synthetic_reproducible_and_seed_sensitive() -> None:
    m = fitted_sharegpt_lengths()
    a = m.sample(100, np.random.default_rng(5))
    b = m.sample(100, np.random.default_rng(5))
    c = m.sample(100, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_synthetic_from_dict_single_component() -> None:
    params = {
        "prompt": {
            "weights": [1.0],
            "mu": [np.log(100)],
            "sigma": [0.5],
            "min_tokens": 1,
            "max_tokens": 1000,
        },
        "output": {
            "weights": [1.0],
            "mu": [np.log(50)],
            "sigma": [0.5],
            "min_tokens": 1,
            "max_tokens": 500,
        },
        "copula_rho": 0.9,
    }
    p, o = SyntheticLengths(params).sample(20_000, np.random.default_rng(0), max_total_tokens=None)
    assert np.median(p) == pytest.approx(100, rel=0.05) and np.median(o) == pytest.approx(
        50, rel=0.05
    )
    assert np.corrcoef(np.log(p), np.log(o))[0, 1] > 0.8
    assert p.max() <= 1000 and o.max() <= 500


def test_synthetic_bad_params() -> None:
    with pytest.raises(OrreryInputError, match="invalid length-model parameters"):
        SyntheticLengths({"prompt": {}})
    bad = {"weights": [1.0], "mu": [1.0], "sigma": [-1.0], "min_tokens": 1, "max_tokens": 10}
    with pytest.raises(OrreryInputError, match="sigma > 0"):
        SyntheticLengths({"prompt": bad, "output": bad})


def test_empirical_resamples_rows_jointly() -> None:
    p = np.array([10, 20, 30, 40])
    o = np.array([1, 2, 3, 4])
    sp, so = EmpiricalLengths((p, o)).sample(1000, np.random.default_rng(0), max_total_tokens=None)
    np.testing.assert_array_equal(sp, so * 10)  # pairs never mixed
    assert set(sp.tolist()) == {10, 20, 30, 40}


def test_empirical_real_file(sharegpt: LengthSamples) -> None:
    p, o = EmpiricalLengths(sharegpt).sample(
        10_000, np.random.default_rng(0), max_total_tokens=2048
    )
    assert np.all(p + o <= 2048) and np.all(p >= 1)
    assert np.median(o) == pytest.approx(np.median(sharegpt.output_tokens), rel=0.1)


def test_empirical_bad_input() -> None:
    with pytest.raises(OrreryInputError, match="at least one"):
        EmpiricalLengths((np.array([], dtype=np.int64), np.array([], dtype=np.int64)))
    with pytest.raises(OrreryInputError, match="equal length"):
        EmpiricalLengths((np.array([1, 2]), np.array([1])))
    with pytest.raises(OrreryInputError, match="n = -1"):
        EmpiricalLengths((np.array([1]), np.array([1]))).sample(-1, np.random.default_rng(0))


@settings(max_examples=50, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), min_size=1, max_size=30
    ),
    m=st.integers(2, 8192),
)
def test_clip_total_properties(pairs: list[tuple[int, int]], m: int) -> None:
    p0 = np.array([a for a, _ in pairs])
    o0 = np.array([b for _, b in pairs])
    p, o = clip_total(p0, o0, m)
    assert np.all(p >= 1) and np.all(o >= 1) and np.all(p + o <= m)
    fits = (np.maximum(p0, 1) + np.maximum(o0, 1)) <= m
    np.testing.assert_array_equal(p[fits], np.maximum(p0, 1)[fits])  # untouched when it fits
    np.testing.assert_array_equal(o[fits], np.maximum(o0, 1)[fits])
    np.testing.assert_array_equal(o, np.minimum(np.maximum(o0, 1), m - 1))  # output kept first


def test_clip_total_bad_limit() -> None:
    with pytest.raises(OrreryInputError, match="max_total_tokens = 1"):
        clip_total(np.array([1]), np.array([1]), 1)
