"""ServingWorkload: validation messages, generation from each source, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from orrery.traces.llm import load_azure_llm
from orrery.workloads.serving import Requests, ServingWorkload

CONV = "shared:llm/azure_llm_2023_conv.csv"
SHAREGPT = "shared:llm/sharegpt_8k_stats_llama2.csv"


def _rngs(a: int = 0, b: int = 1) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng(a), np.random.default_rng(b)


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"n_requests": 10}, "'poisson' needs rate_rps"),
        ({"arrival": "gamma", "duration_s": 10}, "'gamma' needs rate_rps"),
        ({"rate_rps": 1.0}, "needs n_requests or duration_s"),
        ({"arrival": "trace"}, "'trace' needs trace_path"),
        (
            {"rate_rps": 1.0, "n_requests": 5, "lengths": "trace"},
            "lengths = 'trace' needs trace_path",
        ),
        ({"rate_rps": 1.0, "n_requests": 5, "lengths": "sharegpt_file"}, "needs lengths_path"),
        ({"rate_rps": 0.0, "n_requests": 5}, "rate_rps"),
        ({"rate_rps": 1.0, "n_requests": 5, "cv": 0.0}, "cv"),
        ({"rate_rps": 1.0, "n_requests": 0}, "n_requests"),
        ({"rate_rps": 1.0, "n_requests": 5, "max_total_tokens": 1}, "max_total_tokens"),
        ({"rate_rps": 1.0, "n_requests": 5, "arrival": "uniform"}, "arrival"),
        ({"rate_rps": 1.0, "n_requests": 5, "burst": 3}, "burst"),
        ({"arrival": "trace", "trace_path": "no/such/file.csv"}, "trace_path: data file not found"),
        (
            {
                "rate_rps": 1.0,
                "n_requests": 5,
                "lengths": "sharegpt_file",
                "lengths_path": "shared:x.csv",
            },
            "lengths_path: data file not found",
        ),
    ],
)
def test_validation_errors(kw: dict, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern):
        ServingWorkload(**kw)


def test_poisson_default_lengths() -> None:
    w = ServingWorkload(rate_rps=5.0, n_requests=300)
    r = w.generate(*_rngs())
    assert isinstance(r, Requests) and len(r) == 300
    assert np.all(np.diff(r.arrival_s) >= 0) and r.arrival_s[0] >= 0
    assert r.prompt_tokens.dtype == np.int64 and r.output_tokens.dtype == np.int64
    assert np.all(r.prompt_tokens >= 1) and np.all(r.prompt_tokens + r.output_tokens <= 4096)
    r2 = w.generate(*_rngs())
    np.testing.assert_array_equal(r.arrival_s, r2.arrival_s)
    np.testing.assert_array_equal(r.prompt_tokens, r2.prompt_tokens)
    # independent streams: changing the length seed leaves arrivals alone
    r3 = w.generate(*_rngs(0, 2))
    np.testing.assert_array_equal(r.arrival_s, r3.arrival_s)
    assert not np.array_equal(r.prompt_tokens, r3.prompt_tokens)


def test_gamma_duration() -> None:
    r = ServingWorkload(
        arrival="gamma", rate_rps=4.0, cv=2.0, duration_s=50.0, max_total_tokens=2048
    ).generate(*_rngs())
    assert 0 < len(r) < 1000 and r.arrival_s[-1] < 50.0
    assert np.all(r.prompt_tokens + r.output_tokens <= 2048)


def test_trace_replay_keeps_rows(shared_data: Path) -> None:
    tr = load_azure_llm(shared_data / "llm" / "azure_llm_2023_conv.csv")
    w = ServingWorkload(
        arrival="trace",
        trace_path=CONV,
        lengths="trace",
        duration_s=120.0,
        time_scale=2.0,
        max_total_tokens=100_000,
    )
    r = w.generate(*_rngs())
    k = int(np.sum(tr.arrival_s * 2.0 < 120.0))
    assert len(r) == k
    np.testing.assert_allclose(r.arrival_s, tr.arrival_s[:k] * 2.0)
    np.testing.assert_array_equal(r.prompt_tokens, tr.prompt_tokens[:k])
    np.testing.assert_array_equal(r.output_tokens, tr.output_tokens[:k])


def test_trace_n_requests_and_clip(shared_data: Path) -> None:
    r = ServingWorkload(
        arrival="trace", trace_path=CONV, lengths="trace", n_requests=5000
    ).generate(*_rngs())
    assert len(r) == 5000 and np.all(r.prompt_tokens + r.output_tokens <= 4096)


def test_trace_arrivals_with_default_lengths(shared_data: Path) -> None:
    r = ServingWorkload(arrival="trace", trace_path=CONV, n_requests=50).generate(*_rngs())
    assert len(r) == 50 and r.arrival_s[0] == 0.0


def test_poisson_with_trace_lengths_and_sharegpt_file(shared_data: Path) -> None:
    r = ServingWorkload(rate_rps=2.0, n_requests=200, lengths="trace", trace_path=CONV).generate(
        *_rngs()
    )
    assert len(r) == 200 and np.all(r.output_tokens <= 1000)  # conv trace outputs are ≤ 1000
    r = ServingWorkload(
        rate_rps=2.0, n_requests=200, lengths="sharegpt_file", lengths_path=SHAREGPT
    ).generate(*_rngs())
    assert len(r) == 200 and r.output_tokens.max() <= 1024


def test_requests_read_only() -> None:
    r = ServingWorkload(rate_rps=1.0, n_requests=3).generate(*_rngs())
    with pytest.raises(ValueError):
        r.arrival_s[0] = 5.0
