"""`orrery list --models` / `--gpus`: the catalogs with their sources."""

from __future__ import annotations

import json

from orrery.experiments.cli import main


def test_list_models_and_gpus_json(capsys):
    assert main(["list", "--models", "--gpus", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in out["models"]}
    assert {"Qwen3-30B-A3B", "gpt-oss-20b", "DeepSeek-V3", "Llama-4-Maverick-17B-128E", "gemma-3-12b"} <= names
    moe = next(r for r in out["models"] if r["name"] == "Qwen3-235B-A22B")
    assert moe["experts"] == 128 and moe["experts_per_token"] == 8 and moe["type"] == "MoE"
    gpus = {g["name"]: g for g in out["gpus"]}
    assert "MI300X" in gpus and "B200-SXM-180GB" in gpus
    assert all(g["sources"]["mem_bw_bytes_per_s"] for g in gpus.values())


def test_list_models_table(capsys):
    assert main(["list", "--models"]) == 0
    assert "Qwen3-30B-A3B" in capsys.readouterr().out
