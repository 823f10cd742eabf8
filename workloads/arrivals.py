"""Request arrival processes: Poisson, Gamma (bursty) and trace replay.

Pure numpy; every random draw comes from the caller's `numpy.random.Generator`, so the same
stream gives the same arrivals. Times are seconds from 0, sorted ascending. With `n` the result
has exactly `n` arrivals; with `duration_s` every arrival is < `duration_s`; with both, at most
`n` arrivals within the duration.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from orrery.core.errors import OrreryInputError

MAX_ARRIVALS = 100_000_000  # guard against a typo (rate 1e9 for an hour) eating all memory


def _check_positive(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OrreryInputError(f"{name} = {value!r}: expected a positive number") from None
    if not math.isfinite(v) or v <= 0:
        raise OrreryInputError(f"{name} = {value!r}: expected a positive finite number")
    return v


def _check_bounds(n: int | None, duration_s: float | None) -> tuple[int | None, float | None]:
    if n is None and duration_s is None:
        raise OrreryInputError(
            "arrivals need n (a request count) or duration_s (a time window); both are None"
        )
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise OrreryInputError(f"n = {n!r}: expected a positive integer number of requests")
        if n > MAX_ARRIVALS:
            raise OrreryInputError(f"n = {n}: more than {MAX_ARRIVALS} arrivals")
        n = int(n)
    if duration_s is not None:
        duration_s = _check_positive("duration_s", duration_s)
    return n, duration_s


def _renewal(
    gaps: Callable[[int], np.ndarray], rate_rps: float, n: int | None, duration_s: float | None
) -> np.ndarray:
    """Arrival times of a renewal process with i.i.d. gaps drawn in chunks by `gaps(k)`."""
    if n is not None and duration_s is None:
        return np.cumsum(gaps(n))
    assert duration_s is not None
    expected = rate_rps * duration_s
    if n is None and expected > MAX_ARRIVALS:
        raise OrreryInputError(
            f"rate_rps * duration_s = {expected:.3g} expected arrivals exceeds the limit of {MAX_ARRIVALS}"
        )
    limit = n if n is not None else MAX_ARRIVALS
    # Draw a chunk that almost always covers the window; continue if it does not. The chunk
    # sizes depend only on the parameters, so the draws are deterministic for a given stream.
    chunk = int(expected + 6.0 * math.sqrt(expected) + 16)
    if n is not None:
        chunk = min(chunk, n)
    parts: list[np.ndarray] = []
    t0, total = 0.0, 0
    while t0 < duration_s and total < limit:
        k = min(chunk, limit - total)
        times = t0 + np.cumsum(gaps(k))
        parts.append(times)
        total += k
        t0 = float(times[-1])
    out = np.concatenate(parts) if parts else np.empty(0)
    return out[: np.searchsorted(out, duration_s, side="left")]


def poisson_arrivals(
    rate_rps: float,
    rng: np.random.Generator,
    *,
    n: int | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Poisson process arrivals (exponential gaps with mean 1/rate_rps)."""
    rate = _check_positive("rate_rps", rate_rps)
    n, duration_s = _check_bounds(n, duration_s)
    return _renewal(lambda k: rng.exponential(1.0 / rate, k), rate, n, duration_s)


def gamma_arrivals(
    rate_rps: float,
    cv: float,
    rng: np.random.Generator,
    *,
    n: int | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Gamma renewal arrivals: gaps with mean 1/rate_rps and coefficient of variation `cv`.

    cv > 1 is burstier than Poisson (cv = 1 is Poisson), cv < 1 more regular; shape = 1/cv²,
    scale = 1/(rate·shape).
    """
    rate = _check_positive("rate_rps", rate_rps)
    cv = _check_positive("cv", cv)
    n, duration_s = _check_bounds(n, duration_s)
    shape = 1.0 / (cv * cv)
    scale = 1.0 / (rate * shape)
    return _renewal(lambda k: rng.gamma(shape, scale, k), rate, n, duration_s)


def replay_arrivals(
    arrival_s: np.ndarray, time_scale: float = 1.0, *, duration_s: float | None = None
) -> np.ndarray:
    """Trace arrivals scaled in time (time_scale > 1 stretches: lower rate), cut at duration_s.

    Since the input must be sorted, the result is a prefix of the scaled trace: row i of the
    result is row i of the trace, so per-request attributes stay aligned.
    """
    scale = _check_positive("time_scale", time_scale)
    if duration_s is not None:
        duration_s = _check_positive("duration_s", duration_s)
    a = np.asarray(arrival_s, dtype=np.float64)
    if a.ndim != 1:
        raise OrreryInputError(f"arrival_s must be one-dimensional, got shape {a.shape}")
    if a.size:
        if not np.isfinite(a).all():
            raise OrreryInputError("arrival_s contains NaN or infinite times")
        if a[0] < 0:
            raise OrreryInputError(f"arrival_s starts at {a[0]!r}: expected non-negative times")
        d = np.diff(a)
        if (d < 0).any():
            i = int(np.argmax(d < 0)) + 1
            raise OrreryInputError(
                f"arrival_s is not sorted: index {i} ({a[i]!r}) < index {i - 1} ({a[i - 1]!r})"
            )
    out = a * scale
    if duration_s is not None:
        out = out[: np.searchsorted(out, duration_s, side="left")]
    return out
