"""The request workload of a serving scenario: when requests arrive and how long they are.

`ServingWorkload` is the pydantic spec nested in the serving scenario; `generate()` turns it
into `Requests` (arrays sorted by arrival) from two independent RNG streams, so changing the
length model never changes the arrival times and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError
from orrery.core.files import file_version
from orrery.traces.llm import RequestTrace, load_azure_llm_window, load_sharegpt_stats
from orrery.traces.paths import resolve_data_path
from orrery.workloads.arrivals import gamma_arrivals, poisson_arrivals, replay_arrivals
from orrery.workloads.lengths import EmpiricalLengths, clip_total, fitted_sharegpt_lengths


@dataclass(frozen=True)
class Requests:
    """One row per request, sorted by arrival: arrival (s), prompt and output token counts."""

    arrival_s: np.ndarray  # float64
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("Requests arrays must have the same length")
        for a in (self.arrival_s, self.prompt_tokens, self.output_tokens):
            a.setflags(write=False)

    def __len__(self) -> int:
        return len(self.arrival_s)


@lru_cache(maxsize=8)
def _cached_trace(path: str, mtime_ns: int, size: int, day: int | None = None, days: int = 1,
                  every: int = 1) -> RequestTrace:
    return load_azure_llm_window(path, day=day, days=days, every=every)


@lru_cache(maxsize=8)
def _cached_empirical(path: str, mtime_ns: int, size: int) -> EmpiricalLengths:
    return EmpiricalLengths(load_sharegpt_stats(path))


MAX_RATE_RPS = 1e6  # a million requests/s to one simulated deployment is a typo, not a study
MAX_REQUESTS = 50_000_000  # arrays of this many requests already take gigabytes


class ServingWorkload(Strict):
    """Arrival process + length model of an LLM serving workload.

    Fields not used by the chosen combination (cv for Poisson, time_scale without a trace) are
    ignored rather than rejected, so a study can sweep `arrival` over one base scenario.
    """

    arrival: Literal["poisson", "gamma", "trace"] = Field("poisson", description="arrival process")
    rate_rps: float | None = Field(None, gt=0, le=MAX_RATE_RPS, allow_inf_nan=False,
                                   description="mean request rate (1/s); poisson/gamma")
    cv: float = Field(1.0, gt=0, allow_inf_nan=False, description="coefficient of variation of gaps; gamma only")
    n_requests: int | None = Field(None, gt=0, le=MAX_REQUESTS, description="number of requests (cap for traces)")
    duration_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="arrival window (s)")
    trace_path: str | None = Field(None, description="Azure LLM CSV; path or 'shared:<path>'")
    time_scale: float = Field(1.0, gt=0, allow_inf_nan=False,
                              description="trace replay: >1 stretches time (lower rate)")
    trace_day: int | None = Field(
        None, ge=0, description="replay only UTC calendar day N of the trace (0: its first day); None: all of it"
    )
    trace_days: int = Field(1, ge=1, description="with trace_day: how many days from it (7: a whole week)")
    trace_sample_every: int = Field(
        1, ge=1, description="keep every k-th request of the trace (scales a fleet-wide trace to a few replicas)"
    )
    lengths: Literal["sharegpt_default", "sharegpt_file", "trace"] = Field(
        "sharegpt_default", description="length model"
    )
    lengths_path: str | None = Field(
        None, description="ShareGPT stats CSV for lengths='sharegpt_file'"
    )
    max_total_tokens: int = Field(4096, gt=1, description="prompt + output clip (model context)")

    @model_validator(mode="after")
    def _consistent(self) -> ServingWorkload:
        if self.arrival in ("poisson", "gamma"):
            if self.rate_rps is None:
                raise ValueError(
                    f"arrival = {self.arrival!r} needs rate_rps (requests per second, > 0)"
                )
            if self.n_requests is None and self.duration_s is None:
                raise ValueError(
                    f"arrival = {self.arrival!r} needs n_requests or duration_s (or both)"
                )
            if self.n_requests is None and self.duration_s is not None:
                expected = self.rate_rps * self.duration_s
                if expected > MAX_REQUESTS:
                    raise ValueError(
                        f"rate_rps x duration_s = {expected:.3g} requests, more than {MAX_REQUESTS:,}; "
                        "lower the rate or the duration, or cap it with n_requests"
                    )
        if self.arrival == "trace" and self.trace_path is None:
            raise ValueError(
                "arrival = 'trace' needs trace_path (an Azure LLM CSV, e.g. 'shared:llm/azure_llm_2023_conv.csv')"
            )
        if self.lengths == "trace" and self.trace_path is None:
            raise ValueError(
                "lengths = 'trace' needs trace_path (the Azure LLM CSV whose token counts to use)"
            )
        if self.lengths == "sharegpt_file" and self.lengths_path is None:
            raise ValueError("lengths = 'sharegpt_file' needs lengths_path (a ShareGPT stats CSV)")
        needs_trace = self.arrival == "trace" or self.lengths == "trace"
        if needs_trace and self.trace_path is not None:
            _resolve("trace_path", self.trace_path)
        if self.lengths == "sharegpt_file" and self.lengths_path is not None:
            _resolve("lengths_path", self.lengths_path)
        return self

    def check_inputs(self) -> None:
        """Parse the data files this workload reads (whole; cached by path, mtime and size), so a
        malformed trace fails `orrery validate` instead of the run."""
        if self.arrival == "trace" or self.lengths == "trace":
            assert self.trace_path is not None
            _cached_trace(*file_version(_resolve("trace_path", self.trace_path)),
                          self.trace_day, self.trace_days, self.trace_sample_every)
        if self.lengths == "sharegpt_file":
            assert self.lengths_path is not None
            _cached_empirical(*file_version(_resolve("lengths_path", self.lengths_path)))

    def generate(
        self, rng_arrivals: np.random.Generator, rng_lengths: np.random.Generator
    ) -> Requests:
        """The requests, sorted by arrival; deterministic in the two generators."""
        trace: RequestTrace | None = None
        if self.arrival == "trace" or self.lengths == "trace":
            assert self.trace_path is not None
            trace = _cached_trace(*file_version(_resolve("trace_path", self.trace_path)),
                                  self.trace_day, self.trace_days, self.trace_sample_every)

        if self.arrival == "trace":
            assert trace is not None
            arrival = replay_arrivals(trace.arrival_s, self.time_scale, duration_s=self.duration_s)
            if self.n_requests is not None:
                arrival = arrival[: self.n_requests]
        elif self.arrival == "poisson":
            assert self.rate_rps is not None
            arrival = poisson_arrivals(
                self.rate_rps, rng_arrivals, n=self.n_requests, duration_s=self.duration_s
            )
        else:
            assert self.rate_rps is not None
            arrival = gamma_arrivals(
                self.rate_rps, self.cv, rng_arrivals, n=self.n_requests, duration_s=self.duration_s
            )
        n = len(arrival)

        if self.lengths == "trace":
            assert trace is not None
            if self.arrival == "trace":  # same rows: keep each request's own lengths
                prompt, output = clip_total(
                    trace.prompt_tokens[:n], trace.output_tokens[:n], self.max_total_tokens
                )
            else:
                emp = EmpiricalLengths((trace.prompt_tokens, trace.output_tokens))
                prompt, output = emp.sample(n, rng_lengths, max_total_tokens=self.max_total_tokens)
        elif self.lengths == "sharegpt_file":
            assert self.lengths_path is not None
            emp = _cached_empirical(*file_version(_resolve("lengths_path", self.lengths_path)))
            prompt, output = emp.sample(n, rng_lengths, max_total_tokens=self.max_total_tokens)
        else:
            prompt, output = fitted_sharegpt_lengths().sample(
                n, rng_lengths, max_total_tokens=self.max_total_tokens
            )

        return Requests(
            np.array(arrival, dtype=np.float64),
            np.array(prompt, dtype=np.int64),
            np.array(output, dtype=np.int64),
        )


def _resolve(field: str, value: str) -> Path:
    try:
        return resolve_data_path(value)
    except OrreryInputError as err:
        raise OrreryInputError(f"{field}: {err}") from None
