"""GPT-3 layer profiles: sizes match the paper, times follow the GPU."""

from __future__ import annotations

import pytest

from orrery.core.errors import UnknownNameError
from orrery.workloads.gpt import GPT3_MODELS, get_model, layer_profiles


@pytest.mark.parametrize(("name", "billions"),
                         [("gpt3-350m", 0.35), ("gpt3-1.3b", 1.3), ("gpt3-2.7b", 2.7), ("gpt3-6.7b", 6.7)])
def test_parameter_counts(name, billions):
    cfg = get_model(name)
    assert abs(cfg.n_params / 1e9 - billions) / billions < 0.08
    profs = layer_profiles(name, "a40")
    assert len(profs) == cfg.n_layers + 2
    # the tied LM head is stored on the last stage as well
    assert sum(p.params for p in profs) >= cfg.n_params * 0.99


def test_times_follow_flops_and_gpu():
    a40 = layer_profiles("gpt3-6.7b", "a40", microbatch_size=4)
    h100 = layer_profiles("gpt3-6.7b", "h100", microbatch_size=4)
    small = layer_profiles("gpt3-1.3b", "a40", microbatch_size=4)
    blk = a40[1]
    assert blk.bwd_s > 2.5 * blk.fwd_s  # backward + recomputed forward
    assert h100[1].fwd_s < blk.fwd_s / 4  # ~6.6x the fp16 peak
    assert small[1].fwd_s < blk.fwd_s
    mb8 = layer_profiles("gpt3-6.7b", "a40", microbatch_size=8)
    assert mb8[1].fwd_s == pytest.approx(2 * blk.fwd_s, rel=0.05)
    assert mb8[1].act_bytes == 2 * blk.act_bytes
    assert blk.state_bytes == 16 * blk.params


def test_unknown_model_and_bad_args():
    with pytest.raises(UnknownNameError, match="gpt3-6.7b"):
        get_model("gpt5")
    with pytest.raises(ValueError):
        layer_profiles("gpt3-350m", "a40", microbatch_size=0)
    assert set(GPT3_MODELS) == {"gpt3-350m", "gpt3-1.3b", "gpt3-2.7b", "gpt3-6.7b"}
