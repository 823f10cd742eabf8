"""Live progress of a running simulation through one small callback.

Whoever runs a simulation (the study runner, a notebook) installs a reporter with
`reporting(fn)`; `Simulation.run(until)` then calls `fn(sim_time_s, horizon_s, events)` about
every `INTERVAL_S` of wall time and once at the end. Without a reporter nothing changes and
nothing is measured; with one, the events run in the same order (results stay bit-identical).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Reporter = Callable[[float, float, int], None]  # (simulated time s, horizon s, events so far)
INTERVAL_S = 0.25
CHECK_EVERY = 256  # events between two looks at the wall clock

_reporter: Reporter | None = None


def current() -> Reporter | None:
    """The installed reporter, or None."""
    return _reporter


@contextmanager
def reporting(fn: Reporter | None) -> Iterator[None]:
    """Install `fn` as the progress reporter for simulations run inside the block."""
    global _reporter
    previous, _reporter = _reporter, fn
    try:
        yield
    finally:
        _reporter = previous
