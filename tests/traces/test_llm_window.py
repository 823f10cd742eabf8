"""Replaying one day (or several) of a long Azure LLM trace, thinned, as the 2024 week is used."""

from __future__ import annotations

import numpy as np
import pytest

from orrery.core.errors import TraceFormatError
from orrery.traces import llm
from orrery.traces.llm import load_azure_llm, load_azure_llm_window


def _write_trace(path, n=3000, days=3, seed=0):
    """A trace in the 2024 files' format (7-digit fractions, +00:00 offsets) over `days` days."""
    rng = np.random.default_rng(seed)
    sec = np.sort(rng.uniform(0, days * 86400.0, n))
    t0 = np.datetime64("2024-05-10T00:00:00", "us")
    stamps = np.datetime_as_string(t0 + (sec * 1e6).astype("timedelta64[us]"), unit="us")
    prompt, out = rng.integers(1, 4000, n), rng.integers(1, 500, n)
    with open(path, "w") as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for s, p, o in zip(stamps, prompt, out, strict=True):
            f.write(f"{s.replace('T', ' ')}0+00:00,{p},{o}\n")
    return sec, prompt, out


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(llm, "_CHUNK_ROWS", 257)  # several chunks even for a small file


def test_a_day_is_exactly_that_days_requests(tmp_path, monkeypatch):
    path = tmp_path / "week.csv"
    sec, prompt, out = _write_trace(path)
    for day in (0, 1, 2):
        sel = (sec >= day * 86400) & (sec < (day + 1) * 86400)
        tr = load_azure_llm_window(path, day=day)
        assert len(tr) == sel.sum()
        np.testing.assert_array_equal(tr.prompt_tokens, prompt[sel])
        np.testing.assert_array_equal(tr.output_tokens, out[sel])
        np.testing.assert_allclose(tr.arrival_s, sec[sel] - day * 86400, atol=1e-5)  # time of day kept
    monkeypatch.setattr(llm, "_CHUNK_ROWS", 10**6)
    assert len(load_azure_llm_window(path, day=1)) == ((sec >= 86400) & (sec < 2 * 86400)).sum()


def test_bisection_skips_earlier_days(tmp_path):
    path = tmp_path / "week.csv"
    _write_trace(path, n=20000, days=3)
    with path.open("rb") as f:
        header = len(f.readline())
        import pandas as pd

        off = llm._offset_of_first_at_or_after(f, pd.Timestamp("2024-05-12"), header, path.stat().st_size)
    assert off > path.stat().st_size // 2  # two thirds of the file are before day 2


def test_whole_trace_thinned_and_several_days(tmp_path):
    path = tmp_path / "week.csv"
    sec, prompt, _ = _write_trace(path)
    tr = load_azure_llm_window(path, day=None, every=10)
    np.testing.assert_array_equal(tr.prompt_tokens, prompt[::10])
    two = load_azure_llm_window(path, day=1, days=2, every=3)
    assert len(two) == len(np.flatnonzero(sec >= 86400)[::3])
    full = load_azure_llm(path)
    assert len(load_azure_llm_window(path)) == len(full) == len(sec)


def test_day_outside_the_trace_and_bad_rows_are_reported(tmp_path):
    path = tmp_path / "week.csv"
    _write_trace(path, n=100, days=1)
    with pytest.raises(TraceFormatError, match="no requests on day 5"):
        load_azure_llm_window(path, day=5)
    text = path.read_text().splitlines()
    text[50] = "yesterday," + text[50].split(",", 1)[1]
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(TraceFormatError, match="unparsable timestamp 'yesterday'"):
        load_azure_llm_window(path, day=0)


def test_shipped_study_replays_a_chosen_day(tmp_path, monkeypatch):
    """azure_week with a stand-in 2024 conversation trace: the scale picks the replayed day."""
    from orrery.experiments.study import load_study
    from orrery.traces import datastore

    (tmp_path / "llm").mkdir()
    sec, _, _ = _write_trace(tmp_path / "llm" / "azure_llm_2024_conv_1week.csv", n=4000, days=3)
    monkeypatch.setenv("ORRERY_DATA", str(tmp_path))
    monkeypatch.setattr(datastore, "SHARED_DIR", tmp_path / "none")
    monkeypatch.setenv("ORRERY_CACHE_DIR", str(tmp_path / "cache"))
    study = load_study("azure_week", scale="day2")
    assert set(study.skipped_cases) == {"code_2024"}
    run = next(r for r in study.runs() if r.values.get("case") == "conv_2024")
    reqs = run.scenario.workload.generate(np.random.default_rng(0), np.random.default_rng(1))
    day2 = np.flatnonzero(sec >= 2 * 86400)
    assert len(reqs) == len(day2[::50])
    assert reqs.arrival_s[0] >= 0 and reqs.arrival_s[-1] < 86400
    week = load_study("azure_week", scale="week")
    run = next(r for r in week.runs() if r.values.get("case") == "conv_2024")
    assert len(run.scenario.workload.generate(np.random.default_rng(0), np.random.default_rng(1))) == len(sec[::50])
