"""`orrery calibrate --backend real` and `orrery validate-real` (small, CPU)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from orrery.experiments.cli import main


@pytest.fixture(scope="module")
def quick_calibration(tmp_path_factory):
    """One `orrery calibrate --quick` on the CPU for the module (it takes seconds: shared)."""
    out = tmp_path_factory.mktemp("cal") / "cal.json"
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        code = main(["calibrate", "--backend", "real", "--quick", "--device", "cpu", "--kv-tokens", "2048",
                     "--out", str(out)])  # fmt: skip
    return code, out, said.getvalue()


def test_calibrate_quick_writes_params(quick_calibration):
    code, out, said = quick_calibration
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "orrery-real-engine-latency" and doc["params"]["kv_capacity_tokens"] == 2048
    assert "no GPU energy source" in said


def test_cuda_without_gpu_is_a_clear_input_error(capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert main(["calibrate", "--device", "cuda", "--quick"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_validate_real_on_a_small_scenario(tmp_path, capsys, quick_calibration):
    code, cal, _ = quick_calibration
    assert code == 0
    scn = tmp_path / "scn.toml"
    scn.write_text('policy = "andes"\n[hardware]\nmax_num_seqs = 16\n[workload]\narrival = "poisson"\n'
                   'rate_rps = 1.0\nn_requests = 6\nmax_total_tokens = 128\n')
    csv = tmp_path / "err.csv"
    assert main(["validate-real", str(scn), "--params", str(cal), "--device", "cpu", "--out", str(csv),
                 "--no-drift-probe"]) == 0  # the probe is tested in test_rb_calibrate
    out = capsys.readouterr().out
    assert "TTFT mean" in out and "QoE mean" in out and csv.is_file()
    assert main(["validate-real", str(scn), "--params", str(tmp_path / "nope.json"), "--device", "cpu"]) == 2
