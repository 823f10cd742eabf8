"""scripts/gpu_check.sh's program in its CPU smoke mode, against the fake NVML: the whole GPU
code path (NVML readings, energy windows, calibration with power, sim vs real with energy,
the uncalibrated catalog prediction, the JSON and Markdown) runs, and no GPU setting is
ever written."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from orrery.core.errors import OrreryInputError
from orrery.realbackend.gpu_check import catalog_gpu_for, main, markdown, parse

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, mem_gib, expect", [
    ("NVIDIA H100 80GB HBM3", 80, "H100-SXM5-80GB"),
    ("NVIDIA H100 PCIe", 80, "H100-PCIE-80GB"),
    ("NVIDIA H200", 141, "H200-SXM-141GB"),
    ("NVIDIA A100-SXM4-40GB", 40, "A100-SXM4-40GB"),
    ("NVIDIA A100-SXM4-80GB", 80, "A100-SXM4-80GB"),
    ("NVIDIA A100 80GB PCIe", 80, "A100-PCIE-80GB"),
    ("Tesla V100-PCIE-32GB", 32, "V100-PCIE-32GB"),
    ("NVIDIA L4", 24, "L4"),
    ("NVIDIA L40S", 48, "L40S"),
    ("NVIDIA A40", 48, "A40"),
    ("NVIDIA B200", 180, "B200-SXM-180GB"),
    ("NVIDIA GeForce RTX 4090", 24, None),
])
def test_nvml_names_map_to_the_catalog(name, mem_gib, expect):
    from orrery.hwmodels.gpus import get_gpu

    got = catalog_gpu_for(name, mem_gib * 2**30)
    assert got == expect
    if got is not None:
        assert get_gpu(got).name == got


def test_bad_arguments_are_input_errors():
    with pytest.raises(OrreryInputError, match="--light"):
        parse(["--cpu-smoke", "--light", "1.5"])
    with pytest.raises(OrreryInputError, match="--n-light"):
        parse(["--cpu-smoke", "--n-light", "-3"])
    assert main(["--cpu-smoke", "--overload", "0.5"]) == 2


def test_script_is_read_only_and_runs_the_module():
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    assert "orrery.realbackend.gpu_check" in text and os.access(ROOT / "scripts" / "gpu_check.sh", os.X_OK)
    for write in ("nvidia-smi -pl", "nvidia-smi -lgc", "nvidia-smi -mig", "--allow-gpu-writes"):
        assert write not in text


def test_cpu_smoke_with_fake_nvml(tmp_path, fake_nvml_cls):
    nv = fake_nvml_cls(power_mw=200_000)
    rc = main(["--cpu-smoke", "--out", str(tmp_path), "--light", "0.4", "--n-light", "4", "--n-overload", "6"],
              nvml=nv)
    assert rc == 0
    assert nv.writes() == []  # read-only: no power limit, clock or MIG write
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    md = (tmp_path / "gpu_check.md").read_text()
    assert doc["mode"] == "cpu-smoke" and doc["settings_unchanged"] is True
    assert doc["gpu"]["name"] == "NVIDIA H100 80GB HBM3" and doc["gpu"]["catalog"] == "H100-SXM5-80GB"
    # energy counter vs integrated sampled power, idle and under load: the fake draws 200 W
    assert [c["label"] for c in doc["energy_check"]] == ["idle", "decode batch 32"]
    assert all(c["rel_diff"] < 0.2 and c["counter_avg_w"] == pytest.approx(200, rel=0.1) for c in doc["energy_check"])
    # calibration measured power per batch size
    p = doc["calibration"]["params"]
    assert p["busy_power_w"] == pytest.approx(200, rel=0.1) and p["idle_power_w"] == pytest.approx(200, rel=0.1)
    assert doc["calibration"]["kv_capacity_study_tokens"] <= doc["calibration"]["kv_capacity_from_memory_tokens"]
    # four cases: FCFS and Andes at a light and an overload rate, each with energy from the
    # (fake) counter, cross-checked by sampling, and the simulator's prediction beside it
    labels = [c["label"] for c in doc["cases"]]
    assert labels == ["vllm_fcfs@light", "andes@light", "vllm_fcfs@overload", "andes@overload"]
    r = doc["rates"]
    assert r["light_rps"] < r["saturation_rps"] < r["overload_rps"]
    for c in doc["cases"]:
        assert "NVML total-energy counter" in c["energy_source"]
        assert c["real"]["n_finished"] == c["n_requests"] == c["sim"]["n_finished"]
        assert c["real"]["avg_power_w"] == pytest.approx(200, rel=0.1)
        assert c["real"]["energy_per_request_j"] > 0 and c["sim"]["energy_per_request_j"] > 0
        assert c["energy_counter_vs_sampled"] < 0.2
        for k in ("ttft_mean_s", "tpot_mean_s", "throughput_tok_s", "energy_per_token_j"):
            assert math.isfinite(c["rel_err"][k])
    t = doc["targets"]
    assert set(t) >= {"ttft_mean_s", "tpot_mean_s", "energy_per_token_j", "andes_qoe_above_fcfs_under_overload"}
    # the catalog's uncalibrated prediction for the (fake) H100, one row per calibration point
    u = doc["uncalibrated"]
    assert u["available"] and u["gpu_catalog"] == "H100-SXM5-80GB" and u["model"] == "Llama-3.1-8B"
    assert len(u["itl"]) == len(doc["calibration"]["fit"]["decode"] and u["itl"]) > 0
    assert all(row["predicted_s"] > 0 for row in u["itl"]) and u["power"][-1]["batch"] == 0
    for part in ("## GPU and NVML", "## Calibration", "## Sim vs real", "andes@overload", "H100-SXM5-80GB",
                 "Uncalibrated catalog prediction"):
        assert part in md
    assert doc["complete"] is True
    # written during the run too: a document cut short after calibration still renders
    part = {k: v for k, v in doc.items() if k not in ("rates", "cases", "targets")}
    part["complete"] = False
    text = markdown(part)
    assert "Incomplete" in text and "## Calibration" in text and "## Sim vs real" not in text
    # the same document without NVML says plainly that there is no GPU energy source
    doc["nvml"] = {"available": False, "why": "NVML could not initialise"}
    assert "No GPU energy source" in markdown(doc)
