"""Live progress: simulators report simulated time / horizon and events through a callback; the
runner carries it from pool workers to the display; the CLI shows one line per worker with rich
and stays silent when stderr is not a terminal or with --quiet."""

from __future__ import annotations

import io
import math

import pytest

from orrery.experiments.store import result_digest
from orrery.sim import progress


@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "CHECK_EVERY", 1)


def _oobleck_run():
    from tiny_studies import tiny_study

    study = tiny_study("oobleck", seeds=1)
    return study, study.groups[-1].runs[0]


def test_a_simulation_reports_time_horizon_and_events_without_changing_its_result(eager):
    study, run = _oobleck_run()
    plain = study.domain.run(run.scenario)
    calls = []
    with progress.reporting(lambda *a: calls.append(a)):
        watched = study.domain.run(run.scenario)
    assert progress.current() is None  # uninstalled after the block
    assert result_digest(plain.metrics, plain.table, plain.series) == result_digest(
        watched.metrics, watched.table, watched.series
    )
    assert len(calls) > 3
    times = [c[0] for c in calls]
    events = [c[2] for c in calls]
    horizons = {c[1] for c in calls}
    assert times == sorted(times) and events == sorted(events) and events[-1] > 0
    assert len(horizons) == 1 and math.isfinite(h := horizons.pop()) and 0 < times[-1] <= h


class _Collect:
    def __init__(self):
        self.live_calls, self.done = [], 0

    def start(self, total, resumed, repro_total=0):
        pass

    def advance(self, label, repro=False):
        self.done += 1

    def stop(self):
        pass

    def live(self, worker, run_id, sim_s, horizon_s, events):
        self.live_calls.append((worker, run_id, sim_s, horizon_s, events))


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_runner_forwards_live_progress_from_its_workers(eager, tmp_path, jobs):
    from tiny_studies import tiny_study

    from orrery.experiments.runner import run_study

    study = tiny_study("oobleck", seeds=1)
    coll = _Collect()
    run_study(study, tmp_path / "out", jobs=jobs, progress=coll)
    run_ids = {r.run_id for r in study.runs()}
    assert coll.live_calls and {c[1] for c in coll.live_calls} <= run_ids
    assert len({c[1] for c in coll.live_calls}) == len(run_ids)
    if jobs > 1:
        import os

        assert os.getpid() not in {c[0] for c in coll.live_calls}  # reported by the pool's workers


def test_rich_display_shows_one_line_per_worker():
    from rich.console import Console

    from orrery.experiments.cli import RichProgress

    buf = io.StringIO()
    p = RichProgress("demo", console=Console(file=buf, force_terminal=True, width=150))
    p.start(total=4, resumed=0)
    p.live(101, "policy=andes-s0-abc", 50.0, 100.0, 1000)
    p.live(202, "policy=fcfs-s0-def", 10.0, float("nan"), 10)
    p.live(101, "policy=andes-s0-abc", 60.0, 100.0, 3000)
    p.bar.refresh()
    text = buf.getvalue()
    p.advance("policy=andes")
    p.stop()
    assert "worker 1" in text and "worker 2" in text
    assert "t=60/100 s sim" in text and "events/s" in text and "t=10 s sim" in text


def test_no_progress_display_when_quiet_or_not_a_terminal(monkeypatch):
    import sys

    from orrery.experiments.cli import RichProgress, make_progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert make_progress("s") is None
    monkeypatch.setattr(sys, "stderr", Tty())
    assert make_progress("s", quiet=True) is None
    assert isinstance(make_progress("s"), RichProgress)
