"""The serving simulator takes any catalog model x GPU x TP/EP x precision, rejects impossible ones,
and runs with a user parameter file (`hw_params`)."""

from __future__ import annotations

import json

import pytest

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.llm_perf import DEFAULT_PARAMS_PATH
from orrery.sim.serving import ServingScenario, run_serving


def scn(hw: dict, **kw) -> ServingScenario:
    return ServingScenario.from_dict({"policy": "vllm_fcfs", "workload": {"rate_rps": 4.0, "n_requests": 30,
                                      "max_total_tokens": 4096}, "hardware": hw, **kw})


@pytest.mark.parametrize("hw", [
    {"gpu": "h100", "model": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "ep": 4},
    {"gpu": "b200", "model": "qwen3-30b-a3b", "tp": 2, "ep": 2},
    {"gpu": "mi300x", "model": "llama-3.1-405b", "tp": 8, "precision": "fp8"},
    {"gpu": "l40s", "model": "gpt-oss-20b"},
    {"gpu": "t4", "model": "llama-3.1-8b", "weight_bits": 4},
])
def test_any_catalog_deployment_runs(hw):
    res = run_serving(scn(hw))
    m = res.metrics
    assert m["n_finished"] == 30 and m["energy_j"] > 0 and m["throughput_tok_s"] > 0


def test_energy_counts_every_gpu_of_an_ep_replica():
    one = run_serving(scn({"gpu": "h100", "model": "qwen3-30b-a3b"})).metrics
    two = run_serving(scn({"gpu": "h100", "model": "qwen3-30b-a3b", "ep": 2})).metrics
    assert two["energy_j"] > 1.3 * one["energy_j"]


@pytest.mark.parametrize("hw,match", [
    ({"gpu": "h100", "model": "llama-3.1-405b", "tp": 8}, "does not fit"),
    ({"gpu": "l4", "model": "qwen3-32b"}, "does not fit"),
    ({"gpu": "h100", "model": "qwen3-8b", "ep": 2}, "dense model"),
    ({"gpu": "h100", "model": "qwen3-30b-a3b", "tp": 3}, "attention heads"),
    ({"gpu": "h100", "model": "qwen3-8b", "precision": "fp3"}, "precision"),
])
def test_impossible_deployments_fail_clearly(hw, match):
    with pytest.raises(OrreryInputError, match=match):
        run_serving(scn(hw))


def test_hw_params_file(tmp_path):
    doc = json.loads(DEFAULT_PARAMS_PATH.read_text())
    for fam in doc["params"]["families"].values():
        fam["per_seq_s"] *= 4
    p = tmp_path / "params.json"
    p.write_text(json.dumps(doc))
    base = run_serving(scn({"gpu": "h100", "model": "llama-3.1-8b"})).metrics
    slow = run_serving(scn({"gpu": "h100", "model": "llama-3.1-8b"}, hw_params=str(p))).metrics
    assert slow["sim_time_s"] > base["sim_time_s"]
    with pytest.raises(OrreryInputError, match="not found"):
        run_serving(scn({"gpu": "h100", "model": "llama-3.1-8b"}, hw_params=str(tmp_path / "nope.json")))
    (tmp_path / "bad.json").write_text(json.dumps({"params": {"shared": {"per_layer_s": -1}, "families": {}}}))
    with pytest.raises(OrreryInputError, match="per_layer_s"):
        run_serving(scn({"gpu": "h100", "model": "llama-3.1-8b"}, hw_params=str(tmp_path / "bad.json")))


def test_hw_params_is_a_data_key_so_its_hash_enters_the_run_inputs(tmp_path):
    from orrery.experiments.setup import data_paths
    from orrery.sim.training import TrainingScenario

    p = tmp_path / "params.json"
    assert data_paths(scn({"gpu": "h100", "model": "llama-3.1-8b"}, hw_params=str(p))) == {"hw_params": str(p)}
    tr = TrainingScenario.from_dict({"policy": "max_power", "hw_params": str(p), "workload": {
        "power_model": "transfer", "anchor_time_per_epoch_s": 10.0, "anchor_power_w": 200.0, "epochs": 1}})
    assert data_paths(tr).get("hw_params") == str(p)
