"""The simulation engine: a thin layer over `simpy.Environment`.

A `Simulation` owns the simpy clock, independent named RNG streams derived from one seed with
`numpy.random.SeedSequence`, and a columnar `Recorder`. Named streams keep a run reproducible
when a model change adds or removes draws elsewhere: the arrival stream does not shift because
the length stream drew one more number.
"""

from __future__ import annotations

import gc
import hashlib
import math
import time
from contextlib import contextmanager
from heapq import heappush

import numpy as np
import simpy

from orrery.sim import progress
from orrery.sim.recorder import Recorder


def stream_key(name: str) -> int:
    """A stable 32-bit integer for a stream name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")


class RNGStreams:
    """Independent `numpy.random.Generator`s by name, all derived from one seed."""

    def __init__(self, seed: int):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self._streams: dict[str, np.random.Generator] = {}

    def __getitem__(self, name: str) -> np.random.Generator:
        g = self._streams.get(name)
        if g is None:
            ss = np.random.SeedSequence(entropy=self.seed, spawn_key=(stream_key(name),))
            g = self._streams[name] = np.random.Generator(np.random.PCG64(ss))
        return g


class _At(simpy.Event):
    """A triggered event scheduled at an absolute time by `Simulation.at` (like a Timeout)."""

    def __init__(self, env: simpy.Environment, value=None):
        self.env = env
        self.callbacks = []
        self._value = value
        self._ok = True


class Wake:
    """The lightest thing simpy's `Environment.step` can fire: it reads only an event's
    `callbacks` and `_ok`. `Simulation.push_at` schedules one; a caller that sets one shared
    `callbacks` tuple makes no event object or closure per wake-up (the serving replica's)."""

    __slots__ = ("callbacks",)
    _ok = True


class Simulation:
    """A simpy environment with seeded streams and a recorder.

    `sim.env` is the simpy environment; `sim.rng["arrivals"]` a named stream;
    `sim.rec.table("requests", [...])` a columnar table; `sim.run(until=...)` advances time.
    """

    def __init__(self, seed: int = 0, initial_time_s: float = 0.0):
        self.env = simpy.Environment(initial_time=initial_time_s)
        self.rng = RNGStreams(seed)
        self.rec = Recorder()

    @property
    def now(self) -> float:
        return float(self.env.now)

    def process(self, generator) -> simpy.Process:
        return self.env.process(generator)

    def timeout(self, delay_s: float, value=None) -> simpy.Timeout:
        if delay_s < 0:
            raise ValueError(f"negative delay {delay_s} s at t={self.now}")
        return self.env.timeout(delay_s, value)

    def at(self, t_s: float, value=None) -> simpy.Event:
        """An event that fires at the absolute time `t_s` exactly (a timeout of `t_s - now`
        fires at `now + (t_s - now)`, which float round-off may move by an ulp). Macro steps use
        it to land on the same clock values as one timeout per iteration would."""
        return self.push_at(t_s, _At(self.env, value))

    def push_at(self, t_s: float, ev):
        """Schedule the triggered event `ev` (a simpy event or a `Wake`) at the absolute time
        `t_s`; returns it."""
        env = self.env
        if t_s < env._now:
            raise ValueError(f"time {t_s} s is in the past (now {env._now} s)")
        # simpy.Environment.schedule adds a delay to now; push the absolute time instead
        heappush(env._queue, (t_s, simpy.events.NORMAL, next(env._eid), ev))
        return ev

    def run(self, until: float | simpy.Event | None = None) -> None:
        """Advance to `until`; with a progress reporter installed (`sim.progress.reporting`),
        report (simulated time, horizon, events) about every `progress.INTERVAL_S` of wall time.
        The objects made before the run stay out of the cyclic collector's way (`_gc_frozen`)."""
        with _gc_frozen():
            self._run(until)

    def _run(self, until: float | simpy.Event | None) -> None:
        fn = progress.current()
        if fn is None:
            self.env.run(until=until)
            return
        env = self.env
        horizon = float(until) if isinstance(until, int | float) else math.nan
        step = env.step  # the class's step; simpy's run() calls self.step(), so this wraps it
        state = {"n": 0, "last": time.perf_counter()}

        def counted_step() -> None:
            step()
            state["n"] += 1
            if state["n"] % progress.CHECK_EVERY == 0:
                t = time.perf_counter()
                if t - state["last"] >= progress.INTERVAL_S:
                    state["last"] = t
                    fn(float(env.now), horizon, state["n"])

        env.step = counted_step  # type: ignore[method-assign]
        try:
            env.run(until=until)
        finally:
            del env.step
            fn(float(env.now), horizon, state["n"])


@contextmanager
def _gc_frozen():
    """Keep the objects that exist before a run (modules, inputs, the model) out of the cyclic
    collector's passes during it (`gc.freeze`; put back after): its full passes then visit only
    what the run made (2% of a serving run's time at 100k requests). Leaves alone a process
    that froze objects itself."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
