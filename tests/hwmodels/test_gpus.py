"""GPU catalog: consistent specs, aliases, clear errors."""

import pytest

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import ALIASES, GPUS, get_gpu


@pytest.mark.parametrize("name", sorted(GPUS))
def test_specs_are_consistent(name):
    g = GPUS[name]
    assert 0 < g.idle_w < g.tdp_w
    assert g.power_limit_min_w < g.power_limit_max_w <= g.tdp_w
    assert g.idle_w <= g.blocking_w < g.tdp_w
    assert 0 < g.sm_clock_min_mhz < g.sm_clock_max_mhz
    assert g.flops_fp16 > g.flops_fp32 > 0 and g.mem_bw_bytes_per_s > 0 and g.mem_bytes > 0
    limits = g.power_limits_w()
    assert limits[0] == g.power_limit_max_w and limits[-1] == g.power_limit_min_w
    assert all(a - b == 25 for a, b in zip(limits[:-1], limits[1:-1], strict=False))
    assert 0 < (limits[-2] - limits[-1] if len(limits) > 1 else 25) <= 25
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


REQUIRED = ["p100", "v100", "t4", "a10g", "l4", "l40s", "rtx6000", "rtx-a6000", "a40", "a100-40gb", "a100",
            "a100-pcie", "a100-pcie-40gb", "h100", "h100-pcie", "h200", "b200", "mi300x"]


@pytest.mark.parametrize("alias", REQUIRED)
def test_catalog_has_the_common_gpus_with_a_source_per_number(alias):
    from orrery.hwmodels.gpus import NUMERIC_FIELDS

    g = get_gpu(alias)
    for f in NUMERIC_FIELDS:
        assert g.source(f), f"{g.name}.{f} has no source"
    assert g.mem_bytes >= 16 * 1024**3 and g.interconnect_bw_bytes_per_s > 0


def test_datasheet_numbers_and_precisions():
    h, b, m = get_gpu("h100"), get_gpu("b200"), get_gpu("mi300x")
    assert h.peak_flops(8) == pytest.approx(2 * h.peak_flops(16), rel=1e-3) and h.native_bits(4.25) == 8
    assert b.peak_flops(4) == 2 * b.peak_flops(8) == 4 * b.peak_flops(16) and b.native_bits(4.25) == 4
    assert get_gpu("a100").native_bits(8) == 16  # no FP8 tensor cores: weight-only dequantise
    assert m.vendor == "amd" and m.mem_bytes == 192e9 and m.mem_bw_bytes_per_s == 5.3e12
    assert get_gpu("rtx6000").power_limit_max_w == 260  # not a multiple of 25 W
    assert get_gpu("h200").fit_family == get_gpu("h100").fit_family == "hopper"
    assert "estimate" in b.source("idle_w")


def test_zeus_grid_follows_a_range_that_is_not_a_multiple_of_25():
    from orrery.policies.energy.base import EnergyView
    from orrery.policies.energy.zeus_power_limit import PowerLimitProfiler

    g = get_gpu("rtx6000")  # 100-260 W
    assert g.power_limits_w()[:3] == [260.0, 235.0, 210.0] and g.power_limits_w()[-2:] == [110.0, 100.0]
    view = EnergyView(time_s=0.0, gpu=g.name, n_gpus=1, power_limit_min_w=g.power_limit_min_w,
                      power_limit_max_w=g.power_limit_max_w, sm_clock_min_mhz=300.0, sm_clock_max_mhz=1770.0,
                      power_limit_w=260.0)
    grid = PowerLimitProfiler(0, 5, 25.0)._limits(view)
    assert grid == g.power_limits_w() and all(g.power_limit_min_w <= w <= g.power_limit_max_w for w in grid)
