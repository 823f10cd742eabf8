"""Arrival processes: sorted, non-negative, bounded by n/duration, right rate and burstiness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError
from orrery.workloads.arrivals import gamma_arrivals, poisson_arrivals, replay_arrivals

rates = st.floats(min_value=0.05, max_value=200.0)
cvs = st.floats(min_value=0.2, max_value=5.0)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _gen(kind: str, rate: float, cv: float, seed: int, **kw: object) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "poisson":
        return poisson_arrivals(rate, rng, **kw)
    return gamma_arrivals(rate, cv, rng, **kw)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["poisson", "gamma"]),
    rate=rates,
    cv=cvs,
    seed=seeds,
    n=st.integers(1, 2000),
)
def test_count_sorted_nonnegative_reproducible(
    kind: str, rate: float, cv: float, seed: int, n: int
) -> None:
    a = _gen(kind, rate, cv, seed, n=n)
    assert a.shape == (n,) and a.dtype == np.float64
    assert np.all(a >= 0) and np.all(np.diff(a) >= 0)
    np.testing.assert_array_equal(a, _gen(kind, rate, cv, seed, n=n))


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["poisson", "gamma"]),
    rate=rates,
    cv=cvs,
    seed=seeds,
    duration=st.floats(min_value=0.1, max_value=500.0),
    n=st.none() | st.integers(1, 500),
)
def test_duration_respected(
    kind: str, rate: float, cv: float, seed: int, duration: float, n: int | None
) -> None:
    a = _gen(kind, rate, cv, seed, n=n, duration_s=duration)
    assert np.all(a >= 0) and np.all(a < duration) and np.all(np.diff(a) >= 0)
    if n is not None:
        assert len(a) <= n
    np.testing.assert_array_equal(a, _gen(kind, rate, cv, seed, n=n, duration_s=duration))


def test_duration_prefix_of_unbounded() -> None:
    """With a duration and no n, nothing inside the window is lost (a long run keeps going)."""
    a = poisson_arrivals(50.0, np.random.default_rng(3), duration_s=100.0)
    assert len(a) > 4000 and a[-1] < 100.0 and a[-1] > 99.0


@settings(max_examples=15, deadline=None)
@given(rate=st.floats(0.5, 100.0), seed=seeds)
def test_poisson_rate(rate: float, seed: int) -> None:
    n = 20_000
    a = poisson_arrivals(rate, np.random.default_rng(seed), n=n)
    assert n / a[-1] == pytest.approx(rate, rel=0.05)  # sd of the estimate ~0.7%
    gaps = np.diff(a)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.06)


@settings(max_examples=15, deadline=None)
@given(rate=st.floats(0.5, 100.0), cv=st.floats(0.3, 3.0), seed=seeds)
def test_gamma_rate_and_cv(rate: float, cv: float, seed: int) -> None:
    n = 40_000
    a = gamma_arrivals(rate, cv, np.random.default_rng(seed), n=n)
    gaps = np.diff(np.concatenate([[0.0], a]))
    assert 1.0 / gaps.mean() == pytest.approx(rate, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.15)


def test_duration_count_matches_rate() -> None:
    a = gamma_arrivals(10.0, 2.0, np.random.default_rng(1), duration_s=2000.0)
    assert len(a) == pytest.approx(20_000, rel=0.08)


def test_different_seeds_differ() -> None:
    a = poisson_arrivals(1.0, np.random.default_rng(0), n=10)
    b = poisson_arrivals(1.0, np.random.default_rng(1), n=10)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda r: poisson_arrivals(0.0, r, n=5), r"rate_rps = 0\.0"),
        (lambda r: poisson_arrivals(-2.0, r, n=5), r"rate_rps = -2\.0"),
        (lambda r: poisson_arrivals(float("nan"), r, n=5), "rate_rps = nan"),
        (lambda r: gamma_arrivals(1.0, 0.0, r, n=5), r"cv = 0\.0"),
        (lambda r: gamma_arrivals(1.0, -1.0, r, n=5), r"cv = -1\.0"),
        (lambda r: poisson_arrivals(1.0, r), "n .* or duration_s"),
        (lambda r: gamma_arrivals(1.0, 1.0, r), "n .* or duration_s"),
        (lambda r: poisson_arrivals(1.0, r, n=0), "n = 0"),
        (lambda r: poisson_arrivals(1.0, r, duration_s=-1.0), r"duration_s = -1\.0"),
        (lambda r: poisson_arrivals(1e9, r, duration_s=1e6), "exceeds the limit"),
    ],
)
def test_bad_parameters(call, pattern: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OrreryInputError, match=pattern):
        call(np.random.default_rng(0))


def test_replay() -> None:
    t = np.array([0.0, 1.0, 2.5, 4.0])
    np.testing.assert_allclose(replay_arrivals(t), t)
    np.testing.assert_allclose(replay_arrivals(t, 2.0), [0.0, 2.0, 5.0, 8.0])
    np.testing.assert_allclose(replay_arrivals(t, 2.0, duration_s=5.0), [0.0, 2.0])
    np.testing.assert_allclose(replay_arrivals(t, 0.5, duration_s=2.0), [0.0, 0.5, 1.25])
    assert replay_arrivals(t) is not t


@pytest.mark.parametrize(
    ("args", "kw", "pattern"),
    [
        (([0.0, 2.0, 1.0],), {}, "not sorted: index 2"),
        (([-1.0, 2.0],), {}, "non-negative"),
        (([0.0, 1.0], 0.0), {}, r"time_scale = 0\.0"),
        (([0.0, 1.0], -1.0), {}, r"time_scale = -1\.0"),
        (([0.0, 1.0],), {"duration_s": 0.0}, r"duration_s = 0\.0"),
    ],
)
def test_replay_bad(args: tuple, kw: dict, pattern: str) -> None:
    with pytest.raises(OrreryInputError, match=pattern):
        replay_arrivals(np.asarray(args[0]), *args[1:], **kw)


@settings(max_examples=30, deadline=None)
@given(
    t=st.lists(st.floats(0, 1e4), min_size=0, max_size=50),
    scale=st.floats(0.01, 100),
    duration=st.none() | st.floats(0.1, 1e5),
)
def test_replay_properties(t: list[float], scale: float, duration: float | None) -> None:
    a = np.sort(np.asarray(t, dtype=np.float64))
    out = replay_arrivals(a, scale, duration_s=duration)
    np.testing.assert_allclose(out, (a * scale)[: len(out)])
    if duration is not None:
        assert np.all(out < duration)
        assert len(out) == int(np.sum(a * scale < duration))
