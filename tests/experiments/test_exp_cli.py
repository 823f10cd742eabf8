"""The `orrery` CLI: exit statuses 0/1/2, list --json, and resume after a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import BASE_STUDY

from orrery.experiments.cli import COMMANDS, main
from orrery.experiments.runner import run_study
from orrery.experiments.store import read_run
from orrery.experiments.study import load_study


def test_subcommands_table():
    assert {"run", "validate", "report", "list", "demo", "fit"} <= set(COMMANDS)


def test_validate_ok_and_bad_input_exit_2_without_traceback(write_study, capsys):
    assert main(["validate", str(write_study())]) == 0
    assert "ok: each independent variable" in capsys.readouterr().out
    bad = write_study(BASE_STUDY.replace('"throughput_rps"]', '"qoe"]'), name="bad.toml")
    assert main(["run", str(bad), "--jobs", "1", "--out", str(bad.parent / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "'qoe' not produced by domain 'toy'" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert main(["run", "no_such_study"]) == 2
    assert "study not found" in capsys.readouterr().err
    assert main(["validate", str(bad), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_shipped_study_names_resolve(write_study, monkeypatch, capsys):
    import orrery.experiments.expansion as study_mod  # resolve_study_path reads its STUDIES_DIR

    path = write_study(name="toy_shipped.toml")
    monkeypatch.setattr(study_mod, "STUDIES_DIR", path.parent)
    assert study_mod.resolve_study_path("toy_shipped") == path
    assert main(["validate", "toy_shipped"]) == 0
    assert "6 runs" in capsys.readouterr().out


def test_internal_error_exit_1_and_report(write_study, tmp_path, capsys):
    text = BASE_STUDY.replace('policy = ["base", "fast"]', 'policy = ["base", "fast"]\nfail = [false, true]')
    text = text.replace('control = { policy = "base" }', 'control = { policy = "base", fail = false }')
    out = tmp_path / "o"
    assert main(["run", str(write_study(text)), "--jobs", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "toy run asked to fail" in err and "Traceback" not in err
    # the control runs were kept and can be reported on
    assert len(list((out / "runs").glob("*.parquet"))) == 6  # control + (fast, fail=false)
    assert main(["report", str(out)]) == 0
    assert "## Hypothesis" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_cli_subprocess_run_and_list_json(write_study, tmp_path, toy_env):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "orrery.experiments.cli"]
    p = subprocess.run([*cmd, "run", str(write_study()), "--out", str(out), "--jobs", "2"],
                       env=toy_env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "reproducibility: OK" in p.stdout and (out / "summary.csv").is_file()
    p = subprocess.run([*cmd, "list", "--json"], env=toy_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    cat = json.loads(p.stdout)
    assert cat["policies"]["toy"] == ["alias_of_base", "base", "fast"]
    assert "a100" in {k.lower() for k in cat["gpus"]} or len(cat["gpus"]) >= 5
    assert cat["domains"]["toy"]["metrics"]["latency_s"] == "lower"


def test_sigkill_mid_study_loses_no_finished_run_and_repeats_none(write_study, tmp_path, toy_env):
    text = BASE_STUDY.replace("seeds = 3", "seeds = 4").replace("[scenario]", "[scenario]\nsleep_s = 0.25")
    study_path = write_study(text)
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orrery.experiments.cli", "run", str(study_path), "--out", str(out), "--jobs", "1"],
        env=toy_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runs_dir = out / "runs"
    deadline = time.time() + 60
    while time.time() < deadline:
        if runs_dir.is_dir() and len(list(runs_dir.glob("*.parquet"))) >= 3:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kept = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.parquet")}
    assert 3 <= len(kept) < 8
    for name in kept:
        assert read_run(runs_dir / name).run_id + ".parquet" == name  # every file is whole

    res = run_study(load_study(study_path), out, jobs=1)
    assert res.resumed == len(kept) and res.executed == 8 - len(kept)
    assert {n: (runs_dir / n).stat().st_mtime_ns for n in kept} == kept  # none repeated
    assert len(list(runs_dir.glob("*.parquet"))) == 8
    assert res.manifest["status"] == "complete"
