"""Runner and store: outputs, resume, corrupted files, reproducibility check, Dask vs pool."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from conftest import BASE_STUDY

from orrery.experiments.report import write_result
from orrery.experiments.runner import StudyFailed, run_study
from orrery.experiments.store import read_meta, read_run
from orrery.experiments.study import load_study


def test_run_writes_the_results_layout_and_provenance(write_study, tmp_path):
    out = tmp_path / "out"
    trace = tmp_path / "trace.csv"
    trace.write_text("t,n\n0,1\n")
    text = BASE_STUDY.replace("[scenario]", f'[scenario]\ntrace_path = "{trace}"')
    res = run_study(load_study(write_study(text)), out, jobs=1, writer=write_result)
    runs = sorted((out / "runs").glob("*.parquet"))
    assert len(runs) == 6 and res.executed == 6 and res.resumed == 0
    rec = read_run(runs[0])
    assert set(rec.values) == {"policy"} and rec.seed in (0, 1, 2)
    assert rec.scenario["policy"] == rec.values["policy"] and rec.group == f"policy={rec.values['policy']}"
    assert set(rec.metrics) >= {"latency_s", "throughput_rps"}
    assert list(rec.table.columns) == ["request", "arrival_s", "latency_s"] and len(rec.table) == 20
    assert list(rec.series["done"].columns) == ["t_s", "n_done"]
    assert rec.series["done"]["n_done"].dtype == "int64"

    summary = pd.read_csv(out / "summary.csv")
    for col in ["group", "policy", "metric", "mean", "std", "ci95_low", "ci95_high", "n", "verdict"]:
        assert col in summary.columns
    assert len(summary) == 2 * 2 and set(summary["n"]) == {3}
    fast_lat = summary[(summary.policy == "fast") & (summary.metric == "latency_s")].iloc[0]
    assert fast_lat["ratio"] < 1

    m = json.loads((out / "manifest.json").read_text())
    assert m["name"] == "toy_study" and m["hypothesis"].startswith("the fast policy")
    assert m["status"] == "complete"
    assert m["code"]["git_commit"] or m["code"]["package_version"]
    for pkg in ["numpy", "scipy", "simpy", "pandas", "pydantic", "pyarrow"]:
        assert m["packages"][pkg]
    assert m["host"]["hostname"] and m["started_at"] and m["finished_at"]
    assert len(m["runs"]) == 6
    assert all(len(r["scenario_hash"]) == 16 and r["wall_s"] is not None for r in m["runs"].values())
    assert m["reproducibility"]["ok"] is True and len(m["reproducibility"]["checks"]) == 2
    assert m["data_files"] == {str(trace): hashlib.sha256(trace.read_bytes()).hexdigest()}
    assert m["counts"]["executed"] == 6 and m["backend"]["kind"] == "inprocess"
    assert (out / "plots" / "latency_s.png").stat().st_size > 1000
    assert (out / "plots" / "toy_done.png").is_file()  # the domain's own hook
    report = (out / "report.md").read_text()
    assert "the fast policy lowers latency" in report and "![latency_s](plots/latency_s.png)" in report


def test_resume_keeps_finished_runs_and_reruns_a_corrupted_file(write_study, tmp_path):
    out = tmp_path / "out"
    study = load_study(write_study())
    run_study(study, out, jobs=1)
    files = sorted((out / "runs").glob("*.parquet"))
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    again = run_study(study, out, jobs=1)
    assert again.executed == 0 and again.resumed == 6
    assert {p.name: p.stat().st_mtime_ns for p in files} == stamps

    victim = files[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # a truncated file
    files[3].write_bytes(data[:4] + b"\x00" * 64 + data[68:])  # garbage in the pages
    (out / "runs" / ".stray.parquet.123.tmp").write_bytes(b"partial")
    third = run_study(study, out, jobs=1)
    assert third.executed == 2 and third.resumed == 4
    assert read_run(victim).run_id == victim.stem and read_run(files[3]).run_id == files[3].stem
    assert not list((out / "runs").glob(".*.tmp"))
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["attempts"]) == 3


def test_a_non_reproducible_domain_fails_the_study(write_study, tmp_path):
    text = BASE_STUDY.replace("[scenario]", "[scenario]\njitter = true")
    with pytest.raises(StudyFailed, match="reproducibility check failed"):
        run_study(load_study(write_study(text)), tmp_path / "out", jobs=1)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["status"] == "failed" and m["reproducibility"]["ok"] is False


def test_a_failing_control_group_stops_before_the_treatments(write_study, tmp_path):
    text = BASE_STUDY.replace('policy = ["base", "fast"]', 'policy = ["base", "fast"]\nfail = [true, false]')
    text = text.replace('control = { policy = "base" }', 'control = { policy = "base", fail = true }')
    with pytest.raises(StudyFailed, match="toy run asked to fail"):
        run_study(load_study(write_study(text)), tmp_path / "out", jobs=1)
    assert not list((tmp_path / "out" / "runs").glob("*.parquet"))


def test_dask_local_cluster_and_process_pool_give_identical_results(write_study, tmp_path):
    study = load_study(write_study())
    pool = run_study(study, tmp_path / "pool", jobs=2)
    dask = run_study(
        study, tmp_path / "dask", dask="local",
        dask_local_kwargs={"n_workers": 1, "threads_per_worker": 2, "processes": False},
    )  # fmt: skip
    assert dask.manifest["backend"]["kind"] == "dask" and pool.manifest["backend"]["kind"] == "local"
    digests = {r.run_id: r.digest for r in pool.records}
    assert digests == {r.run_id: r.digest for r in dask.records} and len(digests) == 6
    for name in digests:
        a, b = read_run(tmp_path / "pool" / "runs" / f"{name}.parquet"), read_run(tmp_path / "dask" / "runs" / f"{name}.parquet")
        assert a.metrics == b.metrics
        pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(pool.summary, dask.summary)
    assert read_meta(tmp_path / "dask" / "runs" / f"{name}.parquet")["scenario_hash"]
