"""Engine core: named RNG streams, the columnar recorder, simpy time."""

import numpy as np
import pytest

from orrery.sim.engine import RNGStreams, Simulation, stream_key
from orrery.sim.recorder import Recorder


def test_streams_are_reproducible_and_independent():
    a, b = RNGStreams(7), RNGStreams(7)
    x = a["arrivals"].random(5)
    # drawing from another stream first must not shift this one
    b["lengths"].random(100)
    assert np.array_equal(x, b["arrivals"].random(5))
    assert not np.array_equal(RNGStreams(7)["lengths"].random(5), x)
    assert not np.array_equal(RNGStreams(8)["arrivals"].random(5), x)


def test_stream_key_is_stable_across_processes():
    # a fixed value: Python's salted hash() would change between runs
    assert stream_key("arrivals") == stream_key("arrivals")
    assert stream_key("arrivals") != stream_key("lengths")
    assert 0 <= stream_key("x") < 2**32


def test_negative_seed_rejected():
    with pytest.raises(ValueError, match="seed"):
        RNGStreams(-1)


def test_recorder_rows_and_chunks_keep_order():
    rec = Recorder()
    t = rec.table("events", ["t_s", "kind"])
    t.append(0.0, "a")
    t.extend(t_s=np.array([1.0, 2.0]), kind=np.array(["b", "c"]))
    t.append(3.0, "d")
    df = rec.frames()["events"]
    assert df["t_s"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert df["kind"].tolist() == ["a", "b", "c", "d"]
    assert len(t) == 4


def test_recorder_rejects_bad_rows():
    t = Recorder().table("x", ["a", "b"])
    with pytest.raises(ValueError, match="2 values|got 1"):
        t.append(1)
    with pytest.raises(ValueError, match="missing"):
        t.extend(a=[1])
    with pytest.raises(ValueError, match="unequal"):
        t.extend(a=[1, 2], b=[1])


def test_simulation_event_log_in_time_order():
    sim = Simulation(seed=1)
    log = sim.rec.table("log", ["t_s", "who"])

    def proc(name, delays):
        for d in delays:
            yield sim.timeout(d)
            log.append(sim.now, name)

    sim.process(proc("a", [1.0, 2.0]))
    sim.process(proc("b", [1.5, 0.1]))
    sim.run()
    df = sim.rec.frames()["log"]
    assert df["who"].tolist() == ["a", "b", "b", "a"]
    assert df["t_s"].is_monotonic_increasing
    with pytest.raises(ValueError, match="negative delay"):
        sim.timeout(-1)


def test_at_fires_at_the_absolute_time_exactly():
    sim = Simulation(0)
    seen = []

    def proc():
        yield sim.timeout(0.1)
        t = 0.1 + 0.2 + 0.3  # 0.1 + (t - 0.1) != t in floats
        yield sim.at(t)
        seen.append(sim.now == t)
        with pytest.raises(ValueError):
            sim.at(t - 1.0)

    sim.process(proc())
    sim.run()
    assert seen == [True]


def test_run_keeps_pre_run_objects_frozen_only_while_it_runs():
    import gc

    seen = []
    sim = Simulation(0)

    def proc():
        seen.append(gc.get_freeze_count())  # inside the run: the objects made before it are frozen
        yield sim.timeout(1.0)

    sim.process(proc())
    assert gc.get_freeze_count() == 0
    sim.run(until=2.0)
    assert seen and seen[0] > 0 and gc.get_freeze_count() == 0  # put back after
    # a process that froze objects itself keeps them frozen (the run leaves its freeze alone)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        sim2 = Simulation(0)
        sim2.process(proc())
        sim2.run(until=1.5)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_run_unfreezes_when_an_event_raises():
    import gc

    sim = Simulation(0)

    def boom():
        yield sim.timeout(1.0)
        raise ValueError("boom")

    sim.process(boom())
    with pytest.raises(ValueError, match="boom"):
        sim.run(until=3.0)
    assert gc.get_freeze_count() == 0
