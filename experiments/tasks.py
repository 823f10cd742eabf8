"""What the driver sends a worker (`RunTask`) and what comes back (`RunOutcome`).

Both are plain frozen dataclasses of JSON-like fields, so they pickle to a forked pool worker
or a Dask worker alike; the driver never inspects a dict by string keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["store", "digest"]


@dataclass(frozen=True)
class RunTask:
    """One run to execute.

    mode "store": return the run file's bytes; "digest": the reproducibility re-run, return only
    the result's digest. `metrics` are the names the run must produce; `plugins` the modules a
    worker that did not inherit the driver imports first."""

    run_id: str
    group: str  # the group's label
    values: dict[str, Any]  # the group's variable values
    seed: int
    scenario: dict[str, Any]  # the fully resolved scenario (JSON)
    scenario_hash: str
    inputs_hash: str
    domain: str
    metrics: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    mode: Mode = "store"


@dataclass(frozen=True)
class RunOutcome:
    """A finished (or failed) run as the driver receives it."""

    run_id: str
    mode: Mode
    ok: bool
    wall_s: float
    digest: str | None = None
    payload: bytes | None = None  # the run file (mode "store", ok)
    error: str | None = None  # "Type: message" (not ok)
    input_error: bool = False  # the run rejected its scenario as bad input (exit 2, not 1)
    traceback: str = ""

    @property
    def stored(self) -> bool:
        """A run of the study proper (not the reproducibility re-run)."""
        return self.mode == "store"
