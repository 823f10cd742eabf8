"""Oobleck-artifact fidelity: measured speed tables, the artifact's Varuna and Bamboo memory."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import ScenarioError
from orrery.sim.resilience import ResilienceScenario, _Job, run_resilience
from orrery.workloads.gpt import get_model
from orrery.workloads.oobleck_artifact import ARTIFACT_THROUGHPUT, artifact_throughput


def _sc(policy, model="gpt3-2.7b", throughput="artifact", trace=None, **kw):
    d = {"policy": policy, "model": {"name": model, "throughput": throughput},
         "trace": trace or {"n_initial": 30, "interval_s": 3600.0, "n_intervals": 0}}
    d.update(kw)
    return ResilienceScenario.from_dict(d)


def test_table_lookup_clamps_to_measured_range():
    t = ARTIFACT_THROUGHPUT[("varuna", "gpt3-2.7b")]
    assert artifact_throughput("varuna", "gpt3-2.7b", 30) == t[0]
    assert artifact_throughput("varuna", "gpt3-2.7b", 40) == t[0]
    assert artifact_throughput("varuna", "gpt3-2.7b", 15) == t[-1]
    assert artifact_throughput("varuna", "gpt3-2.7b", 3) == t[-1]
    assert artifact_throughput("bamboo", "gpt3-2.7b", 30) is None  # the artifact's "OOM"
    assert artifact_throughput("varuna", "gpt3-1.3b", 30) is None


@pytest.mark.parametrize("policy", ["varuna", "oobleck"])
def test_failure_free_speed_is_the_measured_one(policy):
    r = run_resilience(_sc(policy, horizon_s=6 * 3600.0))
    measured = artifact_throughput(policy, "gpt3-2.7b", 30)
    assert r.metrics["artifact_throughput"] == 1.0
    # Varuna pays 50 s per 10 iterations of checkpointing; Oobleck nothing
    ckpt = 50.0 / (10 * 512 / measured) if policy == "varuna" else 0.0
    assert r.metrics["samples_per_s"] == pytest.approx(measured / (1 + ckpt), rel=0.02)


def test_artifact_batch_sizes_and_bert():
    assert _sc("varuna").model.batch == 512
    assert _sc("varuna", model="gpt3-6.7b").model.batch == 1024
    bert = _sc("varuna", model="bert-large")
    assert bert.model.batch == 8192 and bert.model.tokens == 512
    assert 3.3e8 < get_model("bert-large").n_params < 3.5e8
    with pytest.raises(ScenarioError, match="seq_len"):
        ResilienceScenario.from_dict({"policy": "varuna", "model": {"name": "bert-large", "seq_len": 2048}})


def test_artifact_mode_rejects_unmeasured_pairs():
    with pytest.raises(ScenarioError, match="throughput"):
        _sc("varuna", model="gpt3-1.3b")


def test_varuna_artifact_restart_and_forced_checkpoint():
    trace = {"n_initial": 30, "interval_s": 3600.0, "n_intervals": 1}
    r = run_resilience(_sc("varuna", trace=trace))
    restart = r.table[r.table["action"] == "restart"].iloc[0]
    assert restart["pause_s"] == pytest.approx(515.0 - 50.0)  # rendezvous; the checkpoint follows
    assert "artifact constants" in restart["reason"]
    old = run_resilience(_sc("varuna", trace=trace, policy_params={"constants": "orrery"}))
    assert old.table[old.table["action"] == "restart"].iloc[0]["pause_s"] == 240.0
    assert old.metrics["samples_per_s"] > r.metrics["samples_per_s"]


def test_bamboo_memory_answer_is_explained():
    art = run_resilience(_sc("bamboo", throughput="analytic"))
    assert art.metrics["feasible"] == 0
    assert "no recomputation" in art.table["reason"].iloc[0]
    assert "split evenly by parameters" in art.table["reason"].iloc[0]
    mb1 = run_resilience(ResilienceScenario.from_dict({
        "policy": "bamboo", "model": {"name": "gpt3-2.7b", "microbatch_size": 1},
        "trace": {"n_initial": 30, "n_intervals": 0}}))
    assert mb1.metrics["feasible"] == 1 and "busiest GPU" in mb1.table["reason"].iloc[0]
    orr = run_resilience(_sc("bamboo", throughput="analytic", policy_params={"memory": "orrery"}))
    assert orr.metrics["feasible"] == 1 and "recomputation on" in orr.table["reason"].iloc[0]


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.1, 100), it=st.floats(1, 100), every=st.integers(1, 20),
       first=st.integers(1, 20), ckpt=st.floats(0, 200), e=st.floats(0, 1e5), de=st.floats(0, 1e4))
def test_checkpointed_progress_is_bounded_and_monotone(rate, it, every, first, ckpt, e, de):
    job = _Job(512)
    job.rate, job.it_s = rate, it
    job.ckpt_i, job.ckpt_c, job.ckpt_first = every * it, ckpt, first * it
    c1, u1 = job.progress(e)
    c2, u2 = job.progress(e + de)
    assert 0 <= c1 and 0 <= u1 and c1 + u1 <= rate * e * (1 + 1e-9) + 1e-9
    assert c2 >= c1 - 1e-6 * max(1.0, c1)  # committed work never goes back within a segment
    assert u1 <= max(every, first) * it * rate * (1 + 1e-9)


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(["varuna", "oobleck"]), st.sampled_from(["gpt3-2.7b", "gpt3-6.7b", "bert-large"]),
       st.integers(0, 20), st.floats(300, 7200), st.floats(0, 1), st.floats(0, 1))
def test_artifact_mode_never_beats_its_tables(policy, model, seed, interval, p_remove, p_add):
    sc = _sc(policy, model=model, seed=seed, trace={
        "n_initial": 24, "interval_s": interval, "n_intervals": 8, "p_remove": p_remove,
        "p_add": p_add, "n_min": 12, "n_max": 32})
    m = run_resilience(sc).metrics
    best = max(artifact_throughput(policy, model, n) for n in range(15, 31))
    assert m["feasible"] == 1
    assert 0 <= m["samples_per_s"] <= best * (1 + 1e-9)
    assert math.isfinite(m["lost_samples"]) and m["lost_samples"] >= 0
