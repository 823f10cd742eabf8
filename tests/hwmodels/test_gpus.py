"""GPU catalog: consistent specs, aliases, clear errors."""

import pytest

from orrery.hwmodels.gpus import ALIASES, GPUS, get_gpu
from orrery.sim.errors import OrreryInputError


@pytest.mark.parametrize("name", sorted(GPUS))
def test_specs_are_consistent(name):
    g = GPUS[name]
    assert 0 < g.idle_w < g.tdp_w
    assert g.power_limit_min_w < g.power_limit_max_w <= g.tdp_w
    assert g.idle_w <= g.blocking_w < g.tdp_w
    assert 0 < g.sm_clock_min_mhz < g.sm_clock_max_mhz
    assert g.flops_fp16 > g.flops_fp32 > 0 and g.mem_bw_bytes_per_s > 0 and g.mem_bytes > 0
    limits = g.power_limits_w()
    assert limits[0] == g.power_limit_max_w and limits[-1] >= g.power_limit_min_w
    assert all(a - b == 25 for a, b in zip(limits, limits[1:], strict=False))
    assert g.clamp_power_limit(1e6) == g.power_limit_max_w and g.clamp_power_limit(0) == g.power_limit_min_w


def test_published_facts():
    assert get_gpu("a100").power_limit_max_w == 400 and get_gpu("a100").sm_clock_max_mhz == 1410
    assert get_gpu("h100").power_limit_min_w == 200 and get_gpu("h100").power_limit_max_w == 700
    assert get_gpu("a40").power_limit_max_w == 300 and get_gpu("a40").blocking_w == 70
    assert get_gpu("a100").blocking_w == 84


def test_aliases_and_case_insensitive_lookup():
    for alias, full in ALIASES.items():
        assert get_gpu(alias) is GPUS[full]
    assert get_gpu("h100-sxm5-80gb") is GPUS["H100-SXM5-80GB"]


def test_unknown_gpu_lists_known_names():
    with pytest.raises(OrreryInputError, match="unknown GPU 'b300'.*A100-SXM4-80GB"):
        get_gpu("b300")
