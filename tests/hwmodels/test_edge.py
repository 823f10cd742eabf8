import numpy as np
import pytest

from orrery.core.errors import TraceFormatError
from orrery.hwmodels.edge import (
    DEFAULT_MODEL,
    file_checksum,
    fit_error,
    fit_population_model,
    load_device_specs,
    sample_hardware,
)


def test_sample_hardware_shapes_and_ranges():
    hw = sample_hardware(5000, np.random.default_rng(1))
    assert len(hw) == 5000
    assert hw.s_per_unit.dtype == np.float32
    assert (hw.s_per_unit * 1000 >= DEFAULT_MODEL.speed_ms_q[0] - 1e-3).all()
    assert (hw.s_per_unit * 1000 <= DEFAULT_MODEL.speed_ms_q[-1] + 1e-2).all()
    assert set(np.unique(hw.ram_gb)) <= set(DEFAULT_MODEL.ram_gb_values)
    # faster phones (lower s_per_unit) have more RAM: the copula keeps the correlation
    assert np.corrcoef(hw.s_per_unit, hw.ram_gb)[0, 1] < -0.3


def test_same_seed_same_hardware():
    a = sample_hardware(100, np.random.default_rng(3))
    b = sample_hardware(100, np.random.default_rng(3))
    assert np.array_equal(a.s_per_unit, b.s_per_unit) and np.array_equal(a.bw_up_bytes_s, b.bw_up_bytes_s)


def test_committed_fit_matches_data(shared_data):
    path = shared_data / "fl" / "aibenchmark_device_specs.csv"
    assert file_checksum(path) == DEFAULT_MODEL.source["sha256_16"]
    specs = load_device_specs(path)
    assert len(specs) == DEFAULT_MODEL.source["rows"]
    fitted = fit_population_model(specs)
    assert fitted.speed_ms_q == pytest.approx(DEFAULT_MODEL.speed_ms_q, abs=1e-2)
    assert fitted.ram_gb_probs == pytest.approx(DEFAULT_MODEL.ram_gb_probs, abs=1e-3)
    assert fitted.loadings == pytest.approx(DEFAULT_MODEL.loadings, abs=2e-3)
    err = fit_error(specs, n=20_000)
    assert err["ks_speed_ms"] < 0.06 and err["ks_ram_gb"] < 0.03
    assert err["spearman_speed_cpu_abs_err"] < 0.05


@pytest.mark.parametrize("content,needle", [
    ("device,cpu_score,ram_gb\nx,1,2\n", "missing column"),
    ("device,cpu_score,ram_gb,android_os,speed_ms\nx,1,2,11,fast\n", "line 2"),
    ("device,cpu_score,ram_gb,android_os,speed_ms\nx,1,2,11,0\n", "speed_ms"),
    ("device,cpu_score,ram_gb,android_os,speed_ms\nx,1,2\n", "fields"),
    ("", "empty"),
])
def test_malformed_specs(tmp_path, content, needle):
    p = tmp_path / "specs.csv"
    p.write_text(content)
    with pytest.raises(TraceFormatError, match=needle):
        load_device_specs(p)
