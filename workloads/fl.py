"""FL jobs: arrivals, rounds, participants per round, requirements, deadlines, work size.

A job mix is either generated (exponential inter-arrival gaps; log-uniform participants and
rounds, uniform deadlines, requirements drawn by weight) or read from a job-trace CSV with
the columns of `JOB_COLUMNS`. The defaults follow the Venn evaluation's mix: 20-1500
participants per round, hundreds to a thousand rounds, deadlines 300-1000 s, the 4 nested
AI-Benchmark requirements.

Work is in *work units* (one reference inference, see `hwmodels.edge`): a round's device time
is `s_per_unit * work_units + model_bytes / bw_down + model_bytes / bw_up`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError, TraceFormatError, require_file

JOB_COLUMNS = ("arrival_s", "rounds", "participants", "deadline_s", "work_units", "model_bytes", "requirement")

# The Venn evaluation's 33 synchronous job configs, (participants, rounds, deadline s), from
# SymbioticLab/Venn config/job_config_random_eli.yml (the job list of config/even_workload.yml,
# "Table 1 line 1" of its README); each job picks one uniformly (`job_id_prob` all ones). A job's
# requirement is its *job* index mod 4 (src/setup_config.py `generate_job_by_config`:
# `eligibility = ... else i % num_job_req`, i the job's index, since these configs name no
# eligibility; 4 entries in `job_requirement`), so the four requirements alternate with arrival.
VENN_EVEN_CONFIGS = (
    (1500, 856, 1000), (500, 2568, 1000), (750, 1712, 1000), (100, 1000, 300), (100, 2000, 300),
    (100, 3000, 300), (100, 4000, 300), (200, 1000, 600), (200, 2000, 600), (200, 3000, 600),
    (800, 1000, 1000), (200, 1000, 600), (400, 1000, 1000), (32, 1463, 300), (64, 1463, 300),
    (128, 1463, 300), (20, 2000, 300), (50, 2000, 300), (200, 2000, 600), (500, 2000, 1000),
    (500, 930, 1000), (500, 980, 1000), (500, 1280, 1000), (500, 1620, 1000), (500, 530, 1000),
    (500, 1900, 1000), (500, 1750, 1000), (500, 1800, 1000), (500, 1360, 1000), (500, 1600, 1000),
    (500, 1290, 1000), (500, 1980, 1000), (500, 640, 1000),
)
# Venn's src/setup_config.py `generate_job_by_config` (what src/venn_event.py runs): first job
# at `start_time` = 3600 s, then exponential gaps of mean `arrival_interval` = 1800 s (the job
# config sets none); every job's device task is the config's `workload` (30 in every config of
# config/job_config_random_eli.yml) x the device's computation (AI-Benchmark ms, normalised by
# its mean `avg_comp` = 78) + 2 x `comm_time` 10 s (/ bandwidth normalised by its mean).
# (src/config.py, which uses `workload` 60, is not imported by venn_event.py.)
VENN_FIRST_ARRIVAL_S = 3600.0
VENN_MEAN_INTERARRIVAL_S = 1800.0
VENN_WORKLOAD = 30.0  # config/job_config_random_eli.yml `workload`
# orrery's device time is s_per_unit x work_units (s_per_unit = AI-Benchmark ms / 1000), so
# Venn's 30 x ms/78 seconds is 30 x 1000/78 work units; 10 MB each way takes ~4 s down and
# ~16 s up at orrery's median bandwidths (2.5 / 0.625 MB/s): Venn's 2 x 10 s.
VENN_WORK_UNITS = VENN_WORKLOAD * 1000.0 / 78.0
VENN_MODEL_BYTES = 10e6


class FLJobMix(Strict):
    """How FL jobs are generated (or which job trace to read)."""

    n_jobs: int = Field(50, ge=1, le=100_000, description="number of jobs")
    mean_interarrival_s: float = Field(1800.0, ge=0, description="mean exponential gap between arrivals (s); 0: all at t=0")
    participants_min: int = Field(20, ge=1)
    participants_max: int = Field(1500, ge=1)
    rounds_min: int = Field(100, ge=1)
    rounds_max: int = Field(1000, ge=1)
    deadline_min_s: float = Field(300.0, gt=0)
    deadline_max_s: float = Field(1000.0, gt=0)
    work_units_min: float = Field(100.0, gt=0, description="work per device per round (reference inferences)")
    work_units_max: float = Field(1000.0, gt=0)
    model_bytes_min: float = Field(2e6, ge=0, description="model size sent down and up each round (bytes)")
    model_bytes_max: float = Field(20e6, ge=0)
    requirements: list[str] = Field(default_factory=lambda: ["req1", "req2", "req3", "req4"],
                                    description="requirement of each job class (see traces.devices)")
    requirement_weights: list[float] | None = Field(None, description="relative frequency per requirement; None: equal")
    trace: str | None = Field(None, description="job trace CSV (columns: " + ",".join(JOB_COLUMNS) + "); overrides generation")
    preset: Literal["generated", "venn_even"] = Field(
        "generated", description="'generated': draw from the ranges above; 'venn_even': the Venn "
        "evaluation's 33 job configs (participants, rounds, deadline), requirement = job index "
        "mod 4 over `requirements` (see `venn_requirement`), arrivals from 3600 s with mean gap "
        "`mean_interarrival_s`")
    venn_requirement: Literal["job_index", "config_index"] = Field(
        "job_index", description="venn_even preset: a job's requirement is its job index (in arrival "
        "order) mod the number of requirements, as SymbioticLab/Venn src/setup_config.py "
        "generate_job_by_config does; 'config_index': the index of the config it drew (orrery's "
        "earlier reading, which ties every 1500-participant job to req1)")
    venn_draws_seed: int | None = Field(
        None, ge=0, description="venn_even preset: draw the arrival gaps and configs with numpy's legacy "
        "RandomState(seed) in SymbioticLab/Venn's order (src/setup_config.py generate_job_by_config: "
        "n-1 exponential gaps, then n uniform config picks), so seed 10 (config/even_workload.yml "
        "RANDOMSEED) gives the artifact's exact job list; None: the scenario's own generator")
    rounds_scale: float = Field(1.0, gt=0, le=1.0, description="multiply every job's rounds (at least 1), "
                                "e.g. 0.1 for the 'rounds/10' variant")
    participants_scale: float = Field(1.0, gt=0, le=1.0, description="multiply every job's participants "
                                      "per round (rounded, at least 1), e.g. 0.1 for 'participants/10'")

    @field_validator("requirements")
    @classmethod
    def _reqs(cls, v: list[str]) -> list[str]:
        from orrery.traces.devices import check_requirement

        if not v:
            raise ValueError("at least one requirement is needed")
        for r in v:
            try:
                check_requirement(r)
            except OrreryInputError as err:
                raise ValueError(str(err)) from None
        return v

    @model_validator(mode="after")
    def _ranges(self) -> FLJobMix:
        for lo, hi in (("participants_min", "participants_max"), ("rounds_min", "rounds_max"),
                       ("deadline_min_s", "deadline_max_s"), ("work_units_min", "work_units_max"),
                       ("model_bytes_min", "model_bytes_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) exceeds {hi} ({getattr(self, hi)})")
        w = self.requirement_weights
        if w is not None and (len(w) != len(self.requirements) or min(w) < 0 or sum(w) <= 0):
            raise ValueError("requirement_weights needs one non-negative weight per requirement, not all 0")
        return self


@dataclass(frozen=True)
class JobSet:
    """FL jobs as arrays, sorted by arrival."""

    arrival_s: np.ndarray
    rounds: np.ndarray
    participants: np.ndarray
    deadline_s: np.ndarray
    work_units: np.ndarray
    model_bytes: np.ndarray
    requirement: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.arrival_s)


def _log_uniform_int(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    if lo == hi:
        return np.full(n, lo, dtype=np.int64)
    x = np.exp(rng.uniform(math.log(lo), math.log(hi + 1), n))
    return np.clip(np.floor(x), lo, hi).astype(np.int64)


def generate_jobs(mix: FLJobMix, rng: np.random.Generator) -> JobSet:
    """Draw a job mix; every quantity from its own draw so changing one range shifts no other."""
    if mix.trace is not None:
        from orrery.traces.paths import resolve_data_path

        return load_job_trace(resolve_data_path(mix.trace))
    if mix.preset == "venn_even":
        return _venn_even_jobs(mix, rng)
    n = mix.n_jobs
    gaps = rng.exponential(mix.mean_interarrival_s, n) if mix.mean_interarrival_s > 0 else np.zeros(n)
    gaps[0] = 0.0
    arrival = np.cumsum(gaps)
    participants = _log_uniform_int(rng, mix.participants_min, mix.participants_max, n)
    rounds = _log_uniform_int(rng, mix.rounds_min, mix.rounds_max, n)
    deadline = rng.uniform(mix.deadline_min_s, mix.deadline_max_s, n)
    work = np.exp(rng.uniform(math.log(mix.work_units_min), math.log(mix.work_units_max), n))
    mb = rng.uniform(mix.model_bytes_min, mix.model_bytes_max, n)
    w = np.asarray(mix.requirement_weights or [1.0] * len(mix.requirements), dtype=float)
    req_idx = rng.choice(len(mix.requirements), size=n, p=w / w.sum())
    rounds = _scaled(rounds, mix.rounds_scale)
    participants = _scaled(participants, mix.participants_scale)
    return JobSet(arrival, rounds, participants, deadline, work, mb,
                  tuple(mix.requirements[i] for i in req_idx))


def _scaled(x: np.ndarray, scale: float) -> np.ndarray:
    """`x * scale` rounded to whole numbers, at least 1 (rounds/10, participants/10 variants)."""
    return np.maximum(1, np.round(np.asarray(x, dtype=float) * scale)).astype(np.int64)


def _venn_even_jobs(mix: FLJobMix, rng: np.random.Generator) -> JobSet:
    n = mix.n_jobs
    cfg = np.asarray(VENN_EVEN_CONFIGS, dtype=float)
    if mix.venn_draws_seed is not None:  # the artifact's draws, in its order
        rs = np.random.RandomState(mix.venn_draws_seed)
        gaps = np.zeros(n)
        if mix.mean_interarrival_s > 0:
            gaps[1:] = [rs.exponential(scale=mix.mean_interarrival_s) for _ in range(n - 1)]
        pick = rs.choice(len(cfg), n, p=np.ones(len(cfg)) / len(cfg))
    else:
        pick = rng.integers(0, len(cfg), n)
        gaps = rng.exponential(mix.mean_interarrival_s, n) if mix.mean_interarrival_s > 0 else np.zeros(n)
        gaps[0] = 0.0
    arrival = VENN_FIRST_ARRIVAL_S + np.cumsum(gaps)
    rounds = _scaled(cfg[pick, 1], mix.rounds_scale)
    k = len(mix.requirements)
    req_of = np.arange(n) if mix.venn_requirement == "job_index" else pick
    return JobSet(arrival, rounds, _scaled(cfg[pick, 0], mix.participants_scale), cfg[pick, 2],
                  np.full(n, VENN_WORK_UNITS), np.full(n, VENN_MODEL_BYTES),
                  tuple(mix.requirements[int(i) % k] for i in req_of))


def load_job_trace(path: str | Path) -> JobSet:
    """Read a job trace CSV with the columns of `JOB_COLUMNS` (any order)."""
    from orrery.traces.devices import check_requirement

    p = require_file(path, "FL job trace")
    rows: list[list] = []
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in JOB_COLUMNS if c not in header]
        if missing:
            raise TraceFormatError(p, f"missing column(s) {missing}", line=1, expected=",".join(JOB_COLUMNS))
        idx = {c: header.index(c) for c in JOB_COLUMNS}
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise TraceFormatError(p, f"{len(row)} fields, header has {len(header)}", line=lineno)
            rec = []
            for c in JOB_COLUMNS[:-1]:
                raw = row[idx[c]].strip()
                try:
                    v = float(raw)
                except ValueError:
                    raise TraceFormatError(p, f"not a number: {raw!r}", line=lineno, column=c,
                                           expected="a number") from None
                positive = c in ("rounds", "participants", "deadline_s", "work_units")
                if not math.isfinite(v) or v < 0 or (positive and v <= 0):
                    raise TraceFormatError(p, f"bad value {raw!r}", line=lineno, column=c,
                                           expected="a positive number" if positive else "a number >= 0")
                rec.append(v)
            req = row[idx["requirement"]].strip() or "any"
            try:
                check_requirement(req)
            except OrreryInputError as err:
                raise TraceFormatError(p, str(err), line=lineno, column="requirement") from None
            rec.append(req)
            rows.append(rec)
    if not rows:
        raise TraceFormatError(p, "no jobs", expected="at least one job row")
    rows.sort(key=lambda r: r[0])
    cols = list(zip(*rows, strict=True))
    return JobSet(np.asarray(cols[0]), np.asarray(cols[1], dtype=np.int64), np.asarray(cols[2], dtype=np.int64),
                  np.asarray(cols[3]), np.asarray(cols[4]), np.asarray(cols[5]), tuple(cols[6]))
