"""`CheckinStream._load` (intervals carried from chunk to chunk, sorted-run merge) produces the
plain reference load's check-ins bit for bit, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import orrery.traces.availability as A
from orrery.traces.availability import CheckinStream, diurnal_availability, from_arrays


def reference_chunk(stream: CheckinStream, c0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plain chunk load: every interval that may check in during [c0, c0 + chunk_s)
    scanned, every check-in stable-sorted by time. Returns (time, device, interval end)."""
    av, R = stream.av, stream.period
    c1 = c0 + stream.chunk_s
    lo = np.searchsorted(av.start_s, c0 - stream.max_dur, side="left")
    hi = np.searchsorted(av.start_s, c1, side="left")
    s, e, d = av.start_s[lo:hi], av.end_s[lo:hi], av.device[lo:hi]
    keep = e > c0
    s, e, d = s[keep], e[keep], d[keep]
    first = s + np.maximum(0.0, np.ceil((c0 - s) / R)) * R
    cnt = np.maximum(0.0, np.ceil((np.minimum(e, c1) - first) / R)).astype(np.int64)
    rep = np.repeat(np.arange(len(cnt)), cnt)
    j = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    t = first[rep] + j * R
    order = np.argsort(t, kind="stable")
    return t[order], d[rep][order], e[rep][order]


def same_chunks(av, recheckin_s, starts, chunk_s=3600.0):
    fast = CheckinStream(av, recheckin_s, chunk_s)
    n = 0
    for c0 in starts:
        fast._load(c0)
        ref = reference_chunk(fast, c0)
        for a, b in zip((fast._t, fast._dev, fast._end), ref, strict=True):
            assert np.array_equal(a, b), c0
        n += len(ref[0])
    return n


@pytest.mark.parametrize("recheckin_s", [300.0, 900.0, 1e15])
def test_chunk_load_equals_the_reference(monkeypatch, recheckin_s):
    monkeypatch.setattr(A, "RUN_SORT_MIN", 1)  # the run merge on every chunk
    merged = []
    runs = CheckinStream._order_by_runs
    monkeypatch.setattr(CheckinStream, "_order_by_runs",
                        staticmethod(lambda *a: merged.append(runs(*a) is not None) or runs(*a)))
    av = diurnal_availability(20_000, 3 * 86400.0, np.random.default_rng(5))
    # consecutive chunks (carried intervals), then jumps forward (a fresh scan)
    starts = [i * 3600.0 for i in range(40)] + [50 * 3600.0, 51 * 3600.0, 70 * 3600.0]
    assert same_chunks(av, recheckin_s, starts) > 10_000
    assert all(merged) and len(merged) >= 40  # the merge decided every chunk (ties included)


def test_chunk_load_keeps_the_reference_order_of_ties(monkeypatch):
    # integer times: many check-ins share a time, where the stable sort's order must hold
    monkeypatch.setattr(A, "RUN_SORT_MIN", 1)
    rng = np.random.default_rng(2)
    s = rng.integers(0, 100_000, 20_000).astype(float)
    av = from_arrays(rng.integers(0, 3000, 20_000), s, s + rng.integers(60, 20_000, 20_000), 3000)
    assert same_chunks(av, 600.0, [i * 3600.0 for i in range(30)]) > 1000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 20_000), st.floats(1, 9000)), min_size=1, max_size=80),
       st.sampled_from([250.0, 700.0, 3000.0]), st.sampled_from([500.0, 1800.0]))
def test_chunk_load_property(rows, recheckin_s, chunk_s):
    d, s, du = (np.array(x) for x in zip(*rows, strict=True))
    av = from_arrays(d, s, s + du, 31)
    k = int(30_000 // chunk_s)
    starts = [i * chunk_s for i in range(k)] + [(k + 3) * chunk_s]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "RUN_SORT_MIN", 1)
        same_chunks(av, recheckin_s, starts, chunk_s)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from([0.0, 1.0, 5.5, 100.0, -0.0]) | st.floats(0, 1e6)),
                min_size=1, max_size=300))
def test_order_by_device_start_is_lexsort(rows):
    # ties on (device, start) keep their input order, as lexsort's stable passes do
    d, s = (np.array(x) for x in zip(*rows, strict=True))
    for dev in (d.astype(np.int32), d.astype(np.int64) + 7):
        assert np.array_equal(A.order_by_device_start(dev, s), np.lexsort((s, dev)))


def test_order_by_device_start_on_generated_intervals():
    rng = np.random.default_rng(4)
    d = np.concatenate([np.flatnonzero(rng.random(50_000) < 0.5), np.repeat(np.arange(50_000), rng.poisson(1.0, 50_000))] * 5)
    s = np.round(rng.uniform(0, 5e5, len(d)), 0)  # whole seconds: many ties
    assert np.array_equal(A.order_by_device_start(d.astype(np.int32), s), np.lexsort((s, d)))
    many = np.zeros(200, dtype=np.int64)  # one device with many intervals: the lexsort fallback
    assert np.array_equal(A.order_by_device_start(many, s[:200]), np.lexsort((s[:200], many)))
