"""QoE: bounds, perfect delivery, monotonicity, tracker == batch formula."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.policies.serving.qoe import QoETracker, lost_area, qoe_of_stream

gaps = st.lists(st.floats(0.0, 3.0, allow_nan=False), min_size=1, max_size=60)


def _times(first, gap_list):
    return first + np.concatenate([[0.0], np.cumsum(gap_list[1:])])


@settings(max_examples=200, deadline=None)
@given(first=st.floats(0.0, 30.0), g=gaps, tds=st.sampled_from([4.8, 3.3]))
def test_qoe_in_unit_interval(first, g, tds):
    q = qoe_of_stream(_times(first, g), 1.0, tds)
    assert 0.0 < q <= 1.0


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 300), tds=st.sampled_from([4.8, 3.3]), speedup=st.floats(1.0, 20.0))
def test_meeting_expectation_gives_one(n, tds, speedup):
    # first token on time, then at least as fast as the user reads
    t = 1.0 + np.arange(n) / (tds * speedup)
    assert qoe_of_stream(t, 1.0, tds) == 1.0


@settings(max_examples=200, deadline=None)
@given(first=st.floats(0.0, 30.0), g=gaps, cut=st.data())
def test_faster_delivery_never_lowers_qoe(first, g, cut):
    t = _times(first, g)
    # make any subset of tokens arrive earlier (keep order by re-sorting)
    factor = cut.draw(st.lists(st.floats(0.0, 1.0), min_size=t.size, max_size=t.size))
    faster = np.sort(t * np.asarray(factor))
    assert qoe_of_stream(faster) >= qoe_of_stream(t) - 1e-12


def test_late_start_lowers_qoe():
    on_time = 1.0 + np.arange(100) / 4.8
    assert qoe_of_stream(on_time + 10.0) < qoe_of_stream(on_time + 1.0) < 1.0


@settings(max_examples=50, deadline=None)
@given(first=st.floats(0.0, 20.0), g=gaps)
def test_tracker_matches_batch_formula(first, g):
    t = _times(first, g)
    tr = QoETracker(np.array([0.0]), 1.0, 4.8)
    for x in t:
        tr.deliver(np.array([0]), float(x))
    assert np.isclose(tr.qoe()[0], qoe_of_stream(t, 1.0, 4.8))


def test_lost_area_wait_vs_serve():
    # a fresh request: waiting loses more than being served quickly
    args = (np.array([0.0]), np.array([1.0]), np.array([4.8]), np.array([0]), np.array([-np.inf]))
    wait = lost_area(0.0, 5.0, np.inf, *args)[0]
    serve = lost_area(0.0, 5.0, 0.03, *args)[0]
    assert wait > serve >= 0.0
    # (m, 1) alternatives give an (m, n) result
    assert lost_area(0.0, 5.0, np.array([[0.03], [0.5]]), *args).shape == (2, 1)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 5),
    before=st.integers(0, 4),
    g=gaps,
    first=st.floats(0.0, 20.0),
    data=st.data(),
)
def test_deliver_many_equals_repeated_deliver(n, before, g, first, data):
    arrival = np.asarray(data.draw(st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n)))
    tds = np.asarray(data.draw(st.lists(st.sampled_from([4.8, 3.3]), min_size=n, max_size=n)))
    t = 10.0 + _times(first, g)
    a = QoETracker(arrival, 1.0, tds)
    b = QoETracker(arrival, 1.0, tds)
    idx = np.arange(n)
    for x in t[:before]:  # some tokens already delivered one at a time
        a.deliver(idx, float(x))
        b.deliver(idx, float(x))
    rest = t[before:]
    sub = idx[::2] if n > 1 else idx  # a subset of the requests
    for x in rest:
        a.deliver(sub, float(x))
    b.deliver_many(sub, rest)
    assert np.array_equal(a.delivered, b.delivered)
    assert np.allclose(a.digest_last_s, b.digest_last_s, rtol=1e-12, atol=1e-9)
    assert np.allclose(a.deficit, b.deficit, rtol=1e-9, atol=1e-8)
    assert np.allclose(a.qoe(), b.qoe(), rtol=1e-9, atol=1e-12)
