"""Nothing lost, nothing silently wrong (issue 13): results folders, resume keys, resource and
file-system errors, small CLI promises. Each test failed before its fix."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
from conftest import BASE_STUDY

import orrery.experiments.setup as study_mod  # validate_setup calls its canon
from orrery.core.errors import OrreryInputError
from orrery.experiments import runner as runner_mod
from orrery.experiments import store as store_mod
from orrery.experiments.cli import RichProgress, catalog, main
from orrery.experiments.runner import default_out, run_study
from orrery.experiments.store import ResultsStore
from orrery.experiments.study import load_study, validate_setup

# ----------------------------------------------------------------------------- item 1: fit + run keys


def test_fit_llm_refuses_to_write_into_the_package(capsys):
    from orrery.hwmodels import fit_llm
    from orrery.hwmodels.llm_perf import DEFAULT_PARAMS_PATH

    before = DEFAULT_PARAMS_PATH.read_bytes()
    assert main(["fit", "llm", "--out", str(DEFAULT_PARAMS_PATH)]) == 2
    assert "refusing to write inside the installed package" in capsys.readouterr().err
    assert DEFAULT_PARAMS_PATH.read_bytes() == before
    assert not fit_llm.DEFAULT_OUT.is_absolute() and fit_llm.DEFAULT_OUT.parts[0] == "results"
    with pytest.raises(OrreryInputError, match="inside the installed package"):
        fit_llm.write_params({"params": {}}, DEFAULT_PARAMS_PATH.parent / "new.json")


def test_fit_llm_honours_orrery_shared_data(tmp_path, monkeypatch, capsys):
    # a folder named by ORRERY_SHARED_DATA is searched first: its (broken) file is the one read
    bad = tmp_path / "elsewhere" / "llm" / "mlenergy" / "Qwen__Qwen3-8B__lm-arena-chat.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    monkeypatch.delenv("ORRERY_DATA", raising=False)
    monkeypatch.setenv("ORRERY_SHARED_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "llm"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid JSON" in err
    assert not (tmp_path / "results").exists()


def test_fit_llm_default_writes_under_results_not_the_package(shared_data, tmp_path, monkeypatch, capsys):
    from orrery.hwmodels.llm_perf import DEFAULT_PARAMS_PATH

    before = DEFAULT_PARAMS_PATH.read_bytes()
    monkeypatch.setenv("ORRERY_SHARED_DATA", str(shared_data))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "llm"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["out"]) == tmp_path / "results" / "fit" / "llm_serving_mlenergy.json"
    assert (tmp_path / "results" / "fit" / "llm_serving_mlenergy.json").is_file()
    assert DEFAULT_PARAMS_PATH.read_bytes() == before


TRACE_STUDY = BASE_STUDY.replace("[scenario]", '[scenario]\ntrace_path = "trace.txt"')


def test_changed_data_or_parameter_file_reruns(write_study, tmp_path, monkeypatch):
    path = write_study(TRACE_STUDY)
    (tmp_path / "trace.txt").write_text("v1")
    params = tmp_path / "params.json"
    params.write_text('{"a": 1}')
    monkeypatch.setattr(runner_mod, "shipped_param_files", lambda: [params])
    out = tmp_path / "o"
    first = run_study(load_study(path), out, jobs=1)
    assert first.executed == 6
    again = run_study(load_study(path), out, jobs=1)
    assert again.resumed == 6 and again.executed == 0
    (tmp_path / "trace.txt").write_text("v2")  # a data file the runs read changed
    res = run_study(load_study(path), out, jobs=1)
    assert res.resumed == 0 and res.executed == 6
    params.write_text('{"a": 2}')  # a parameter file changed
    res = run_study(load_study(path), out, jobs=1)
    assert res.resumed == 0 and res.executed == 6
    assert res.manifest["reproducibility"]["ok"]
    assert res.manifest["param_files"] == {str(params): store_mod.hashlib.sha256(b'{"a": 2}').hexdigest()}


def test_shipped_parameter_files_are_in_every_runs_inputs():
    names = {p.name for p in runner_mod.shipped_param_files()}
    assert {"llm_serving_mlenergy.json", "sharegpt_lengths.json", "gpu_energy_power_limit.json"} <= names


# ----------------------------------------------------------------------------- item 3: results folders


def test_second_writer_gets_exit_2_or_waits(write_study, tmp_path, capsys):
    path = write_study()
    out = tmp_path / "o"
    holder = ResultsStore(out)
    with holder.lock():
        assert main(["run", str(path), "--jobs", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "in use by another orrery run" in err and str(out) in err and "--wait" in err
        assert not (out / "runs").exists()  # nothing was touched

    # --wait: blocks until the other writer is done, then runs
    lock = ResultsStore(out).lock()
    lock.__enter__()
    t = threading.Thread(target=lambda: (time.sleep(1.0), lock.__exit__(None, None, None)))
    t.start()
    assert main(["run", str(path), "--jobs", "1", "--out", str(out), "--wait"]) == 0
    t.join()
    assert len(list((out / "runs").glob("*.parquet"))) == 6


def test_scale_has_its_own_default_folder(write_study):
    text = BASE_STUDY + '\n[scales.big]\n"workload.n_requests" = 40\n'
    path = write_study(text)
    assert default_out(load_study(path)) != default_out(load_study(path, scale="big"))
    assert default_out(load_study(path, scale="big")).name == "toy_study-big"


def test_folder_of_another_study_is_refused_unless_force(write_study, tmp_path, capsys):
    out = tmp_path / "o"
    a = write_study(name="a.toml")
    b = write_study(BASE_STUDY.replace('name = "toy_study"', 'name = "other_study"'), name="b.toml")
    assert main(["run", str(a), "--jobs", "1", "--out", str(out)]) == 0
    kept = sorted(p.name for p in (out / "runs").glob("*.parquet"))
    capsys.readouterr()
    assert main(["run", str(b), "--jobs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds study 'toy_study'" in err and "--force" in err
    assert sorted(p.name for p in (out / "runs").glob("*.parquet")) == kept
    # the same study at another scale is another study's results too
    scaled = write_study(BASE_STUDY + '\n[scales.big]\n"workload.n_requests" = 40\n', name="c.toml")
    assert main(["run", str(scaled), "--scale", "big", "--jobs", "1", "--out", str(out)]) == 2
    assert main(["run", str(b), "--jobs", "1", "--out", str(out), "--force"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["study"]["name"] == "other_study"
    now = {p.name for p in (out / "runs").glob("*.parquet")}
    assert len(now) == 6 and set(manifest["runs"]) == {n.removesuffix(".parquet") for n in now}


# ----------------------------------------------------------------------------- item 4: resources, fs errors


def test_out_is_a_file_exit_2_naming_it(write_study, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["run", str(write_study()), "--jobs", "1", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "is a file" in err and "internal error" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_out_exit_2(write_study, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["run", str(write_study()), "--jobs", "1", "--out", str(ro / "o")]) == 2
        assert str(ro) in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_write_exit_2_and_no_temp_file(write_study, tmp_path, monkeypatch, capsys, code):
    out = tmp_path / "o"

    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store_mod.os, "fsync", fail)
    assert main(["run", str(write_study()), "--jobs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "internal error" not in err
    assert ("no space left" in err) if code == errno.ENOSPC else ("read-only" in err)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_grid_size_checked_up_front(write_study, capsys):
    values = ", ".join(str(i) for i in range(1, 2001))
    text = BASE_STUDY.replace('policy = ["base", "fast"]', f'policy = ["base", "fast"]\n"workload.n_requests" = [{values}]')
    text = text.replace("seeds = 3", "seeds = 1000")
    path = write_study(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "4,000,000 runs" in err and "--max-runs" in err
    assert main(["validate", str(path), "--max-runs", "10", "--seeds", "1"]) == 2
    assert "4,000 runs" in capsys.readouterr().err


def test_setup_validation_is_linear_in_groups(write_study, monkeypatch):
    def study_text(n: int) -> str:
        values = ", ".join(str(i) for i in range(1, n + 1))
        return BASE_STUDY.replace(
            'policy = ["base", "fast"]', f'policy = ["base", "fast"]\n"workload.n_requests" = [{values}]'
        ).replace("seeds = 3", "seeds = 1")

    calls = {"n": 0}
    real = study_mod.canon

    def counting(v):
        calls["n"] += 1
        return real(v)

    counts = []
    for n in (100, 400):
        study = load_study(write_study(study_text(n), name=f"s{n}.toml"))
        monkeypatch.setattr(study_mod, "canon", counting)
        calls["n"] = 0
        validate_setup(study)
        monkeypatch.setattr(study_mod, "canon", real)
        counts.append(calls["n"])
    assert counts[1] <= 5 * counts[0]  # 4x the groups: ~4x the work (quadratic would be 16x)


# ----------------------------------------------------------------------------- item 9: small ones


def test_jobs_zero_is_rejected(write_study, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(write_study()), "--jobs", "0", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    with pytest.raises(OrreryInputError, match="--jobs"):
        run_study(load_study(write_study()), tmp_path / "o2", jobs=0)
    assert not (tmp_path / "o2").exists()


def test_relative_trace_path_resolves_against_the_study_file(tmp_path, monkeypatch):
    sub = tmp_path / "studies"
    sub.mkdir()
    (sub / "trace.txt").write_text("data")
    (sub / "s.toml").write_text(TRACE_STUDY)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    study = load_study(sub / "s.toml")
    assert study.runs()[0].scenario.trace_path == str(sub / "trace.txt")
    assert validate_setup(study).data_files == {str(sub / "trace.txt"): store_mod.hashlib.sha256(b"data").hexdigest()}
    assert run_study(study, tmp_path / "o", jobs=1).executed == 6


def test_version_reads_the_installed_distribution(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"orrery {metadata.version('orrery-sim')}"


def test_list_shows_shipped_studies(capsys):
    cat = catalog()
    assert {"andes_qoe", "serving_quick", "zeus"} <= set(cat["studies"])
    assert cat["studies"]["zeus"]["domain"] == "training"
    assert main(["list"]) == 0
    assert "serving_quick" in capsys.readouterr().out


class _Recorder:
    def __init__(self):
        self.calls = []
        self.totals = None

    def start(self, total, resumed, repro_total=0):
        self.totals = (total, resumed, repro_total)

    def advance(self, label, repro=False):
        self.calls.append((label, repro))

    def stop(self):
        pass


def test_progress_counts_reproducibility_reruns_apart_and_keeps_case_names(write_study, tmp_path):
    text = BASE_STUDY + '\n[[cases]]\nname = "a_rather_long_case_name_that_used_to_be_cut_off"\n'
    prog = _Recorder()
    run_study(load_study(write_study(text)), tmp_path / "o", jobs=1, progress=prog)
    assert prog.totals == (6, 0, 2)
    assert sum(r for _, r in prog.calls) == 2 and sum(not r for _, r in prog.calls) == 6
    assert all(label.endswith("case=a_rather_long_case_name_that_used_to_be_cut_off") for label, _ in prog.calls)
    bar = RichProgress("toy")
    bar.start(6, 0, 2)
    label = "policy=fast,workload.n_requests=20,case=" + "x" * 60
    bar.advance(label, repro=True)
    bar.stop()
    tasks = {t.description: t for t in bar.bar.tasks}
    assert tasks["reproducibility re-runs"].completed == 1 and tasks["toy runs"].completed == 0
    assert tasks["reproducibility re-runs"].fields["last"] == label


# ----------------------------------------------------------------------------- item 6: checksums


def _flip_in_series(path: Path) -> None:
    """Change one byte inside a stored series table, where readers take it from: the Arrow
    schema (base64) in the Parquet footer."""
    import base64

    import pyarrow.parquet as pq

    blob = pq.read_schema(path).metadata[store_mod.SERIES_PREFIX + b"done"]
    b64 = pq.read_metadata(path).metadata[b"ARROW:schema"]
    o = base64.b64decode(b64).index(blob) + len(blob) - 20  # inside the last values
    j = (o // 3) * 4 + 1
    data = path.read_bytes()
    i = data.index(b64) + j
    new = b"B" if data[i : i + 1] != b"B" else b"C"
    path.write_bytes(data[:i] + new + data[i + 1 :])


def test_corrupt_series_is_detected_rerun_and_skipped_by_report(write_study, tmp_path, capsys):
    path = write_study()
    out = tmp_path / "o"
    run_study(load_study(path), out, jobs=1)
    victim = sorted((out / "runs").glob("*.parquet"))[0]
    _flip_in_series(victim)
    with pytest.raises(store_mod.CorruptRunError, match="checksum"):
        store_mod.read_run(victim)
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped corrupt run file" in err and victim.name in err
    res = run_study(load_study(path), out, jobs=1)
    assert res.resumed == 5 and res.executed == 1  # the corrupt one was not kept
    store_mod.read_run(victim)


# ----------------------------------------------------------------------------- item 7: signals


def _is_resource_tracker(child) -> bool:
    """True for multiprocessing's resource tracker; a child that exits while listed is not a worker."""
    import psutil

    try:
        return "resource_tracker" in " ".join(child.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True  # short-lived helper (e.g. a fork that already exited): not one of the pool's workers


def _start_pool_run(write_study, tmp_path, toy_env):
    import subprocess
    import sys

    import psutil

    text = BASE_STUDY.replace("[scenario]", "[scenario]\nsleep_s = 30.0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orrery.experiments.cli", "run", str(write_study(text)),
         "--out", str(tmp_path / "o"), "--jobs", "2"],
        env=toy_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    driver = psutil.Process(proc.pid)
    deadline = time.time() + 60
    workers: list = []
    while time.time() < deadline and len(workers) < 2:
        workers = [c for c in driver.children(recursive=True) if not _is_resource_tracker(c)]
        time.sleep(0.1)
    assert len(workers) >= 2, "the pool did not start"
    time.sleep(1.0)  # the workers are inside their (30 s) runs
    return proc, workers


def _gone(workers, within_s: float = 5.0) -> bool:
    import psutil

    _, alive = psutil.wait_procs(workers, timeout=within_s)
    return not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_pool_like_ctrl_c(write_study, tmp_path, toy_env, sig):
    import signal

    proc, workers = _start_pool_run(write_study, tmp_path, toy_env)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert "finished runs are kept" in err.decode()
    assert _gone(workers)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"


def test_sigkill_of_the_driver_takes_the_workers_down(write_study, tmp_path, toy_env):
    import signal

    proc, workers = _start_pool_run(write_study, tmp_path, toy_env)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _gone(workers)
