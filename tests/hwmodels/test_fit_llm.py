"""The transferable LLM serving fit: shipped parameters, leave-one-model-out CV, check, bad input."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from orrery.core.errors import OrreryInputError
from orrery.hwmodels import fit_llm
from orrery.hwmodels.llm_perf import DEFAULT_PARAMS_PATH, load_default_params

# Figures of the committed fit's leave-one-model-out cross-validation (all held-out rows): medians
# 8.9 / 8.8 / 8.1 % (ITL, power, throughput) meet the 10 %; the p90s (27-29 %) miss its 20 %.
# The misses are single-GPU B200 runs whose steps were not steady (median p90/median ITL 1.46 against
# 1.05-1.10 on H100 and on multi-GPU B200) and 14 adjacent B200 measurements no step model can
# reproduce (`consistency`); the in-sample p90 is ~21-25 %. These bounds keep the model from
# regressing; on the steady rows ITL and throughput meet the 20 % p90 (STEADY_BOUNDS).
CV_BOUNDS = {"itl_median_abs_err": 0.10, "power_median_abs_err": 0.10, "throughput_median_abs_err": 0.10,
             "itl_p90_abs_err": 0.29, "power_p90_abs_err": 0.30, "throughput_p90_abs_err": 0.30}
STEADY_BOUNDS = {"itl_p90_abs_err": 0.20, "throughput_p90_abs_err": 0.20, "power_p90_abs_err": 0.25}


@pytest.fixture(scope="module")
def mlenergy(shared_data):
    return shared_data / "llm" / "mlenergy"


def test_shipped_params_name_their_data_and_errors(mlenergy):
    doc = json.loads(DEFAULT_PARAMS_PATH.read_text())
    assert doc["schema"] == "orrery.hwmodels.llm_serving/2"
    files = {f["file"]: f["sha256"] for f in doc["data"]["files"]}
    assert set(files) == {p.name for p in mlenergy.glob("*.json")}
    for name, sha in files.items():
        assert hashlib.sha256((mlenergy / name).read_bytes()).hexdigest() == sha
    assert set(doc["params"]["families"]) == {"hopper", "blackwell"}
    cv = doc["cross_validation"]
    assert cv["n_rows"] == doc["data"]["n_rows"] == len(doc["fit_rows"])
    assert set(cv["per_model"]) == set(doc["data"]["models"]) and set(cv["per_gpu"]) == set(doc["data"]["gpus"])
    assert "rows" not in doc and "measured" not in json.dumps(doc)
    load_default_params()  # parses


def test_leave_one_model_out_cross_validation(mlenergy):
    rows = fit_llm.load_rows([mlenergy])
    res = fit_llm.cross_validate(rows)
    o = res["overall"]
    for k, bound in CV_BOUNDS.items():
        assert o[k] <= bound, (k, o[k])
    shipped = json.loads(DEFAULT_PARAMS_PATH.read_text())["cross_validation"]["overall"]
    for k, v in shipped.items():
        assert o[k] == pytest.approx(v, abs=0.02)  # the shipped table is what this code computes
    met = all(o[f"{k}_{s}_abs_err"] <= t for k in fit_llm.METRICS for s, t in fit_llm.TARGETS.items())
    assert res["met"] == met
    cons = res["consistency"]
    for k, bound in STEADY_BOUNDS.items():
        assert cons["steady"][k] <= bound, (k, cons["steady"][k])
    assert cons["steady_rows"] >= 120
    h100 = [v for g, v in cons["per_gpu"].items() if g.startswith("H100")]
    assert all(v["flagged_pairs"] == 0 and v["itl_p90_over_median"] < 1.15 for v in h100)
    assert len(res["per_model"]) == 10 and sum(v["n"] for v in res["per_model"].values()) == len(rows)


def _copy(src, dst, edit):
    doc = json.loads(src.read_text())
    edit(doc)
    dst.write_text(json.dumps(doc))
    return dst


def test_check_predicts_unfitted_configurations(mlenergy, tmp_path, capsys):
    def shift(doc):  # configurations the fit never saw: other max_num_seqs
        for c in doc["configurations"]:
            c["max_num_seqs"] += 1
    f = _copy(mlenergy / "Qwen__Qwen3-8B__lm-arena-chat.json", tmp_path / "m.json", shift)
    same = mlenergy / "Qwen__Qwen3-8B__gpqa.json"
    out = tmp_path / "c.csv"
    assert fit_llm.main(["--check", str(f), str(same), "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "itl median" in text and "Qwen/Qwen3-8B" in text
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 19  # only the shifted file: the fitted one is skipped
    assert {"itl_ms_measured", "itl_ms_predicted", "power_w_measured", "power_w_predicted", "throughput_err"} <= set(rows[0])
    w = [float(r["power_w_measured"]) for r in rows]
    assert max(w) < 1000  # per GPU: the file's avg_power_watts is over num_gpus


def test_unknown_architecture_and_bad_files_exit_2(mlenergy, tmp_path, capsys):
    src = mlenergy / "Qwen__Qwen3-8B__lm-arena-chat.json"
    f = _copy(src, tmp_path / "u.json", lambda d: d.update(model_id="acme/Frobnicator-7B"))
    assert fit_llm.main(["--check", str(f)]) == 2
    err = capsys.readouterr().err
    assert "acme/Frobnicator-7B" in err and "model catalog" in err

    def drop(d):
        del d["configurations"][3]["median_itl_ms"]
    f = _copy(src, tmp_path / "d.json", drop)
    assert fit_llm.main([str(f)]) == 2
    err = capsys.readouterr().err
    assert "d.json" in err and "line 3" in err and "median_itl_ms" in err

    def text(d):
        d["configurations"][1]["avg_power_watts"] = "lots"
    f = _copy(src, tmp_path / "t.json", text)
    with pytest.raises(OrreryInputError, match="avg_power_watts"):
        fit_llm.load_rows([f])
    (tmp_path / "j.json").write_text('{"configurations": [\n{oops}]}')
    assert fit_llm.main([str(tmp_path / "j.json")]) == 2
    assert "line 2" in capsys.readouterr().err
    with pytest.raises(OrreryInputError, match="inside the installed package"):
        fit_llm.write_params({}, DEFAULT_PARAMS_PATH)


def test_trust_levels_say_how_far_a_deployment_lies_from_the_fit():
    t = fit_llm.deployment_trust("meta-llama/Llama-3.1-8B-Instruct", "H100")
    assert t["level"] == "measured" and t["error_source"] == "in-sample fit error"
    t = fit_llm.deployment_trust("llama-3.1-70b", "h100", tp=4)  # dense, inside the fitted sizes
    assert t["level"] == "interpolated" and t["expected_error"]["itl_median_abs_err"] > 0
    t = fit_llm.deployment_trust("llama-2-13b", "a100")  # no Ampere data at all
    assert t["level"] == "extrapolated" and "ampere" in t["reasons"][0]
    t = fit_llm.deployment_trust("deepseek-v3", "h100", tp=8)
    assert t["level"] == "extrapolated" and "active parameters" in t["reasons"][0]
    assert t["expected_error"] == {}


def _row(batch, thr, itl_ms, power_w, **kw):
    return {"model_id": "m", "task": "t", "gpu": "G", "tp": 1, "ep": 1, "dp": 1, "num_gpus": 1,
            "batch": batch, "throughput": thr, "itl_s": itl_ms / 1e3, "power_w": power_w, **kw}


def test_series_flags_name_measurements_no_step_model_can_reproduce():
    ok = [_row(8, 800, 10, 400), _row(16, 1400, 11.4, 420), _row(64, 3000, 21, 500)]
    assert fit_llm.series_flags(ok) == []
    faster = ok + [_row(128, 8000, 16, 520)]  # a larger batch with a shorter step
    f = fit_llm.series_flags(faster)
    assert len(f) == 1 and f[0]["batch"] == [64, 128] and "mean step" in f[0]["why"] and "median ITL" in f[0]["why"]
    idle = ok + [_row(128, 3000, 42, 380)]  # the step doubles while the power drops
    f = fit_llm.series_flags(idle)
    assert len(f) == 1 and "power 500 -> 380" in f[0]["why"]
    assert fit_llm.series_flags([_row(8, 800, 10, 400), _row(9, 700, 9, 300)]) == []  # batch < 1.2x: not compared


def test_resident_context_is_bounded_by_the_kv_cache(mlenergy):
    """A full batch cannot hold more KV than the cache: large batches are capped, small ones not."""
    import numpy as np
    rows = [r for r in fit_llm.load_rows([mlenergy / "Qwen__Qwen3-14B__lm-arena-chat.json"]) if "B200" in r["gpu"]]
    prob = fit_llm.Problem(rows)
    p = load_default_params()
    b = prob.batch
    want = b * 1500.0
    got = prob.resident_context(want, b, p.shared)
    c = prob.c
    cache_tokens = (c.mem_bytes * 0.9 - c.weight_bytes_per_gpu - p.shared.activation_reserve_bytes) / c.kv_bytes_per_token
    assert np.all(got <= want) and np.all(got <= cache_tokens * (1 + 1e-12))
    small = b <= 64
    assert np.array_equal(got[small], want[small]) and np.all(got[b >= 1000] < want[b >= 1000])
