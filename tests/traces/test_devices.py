import numpy as np
import pytest

from orrery.core.errors import OrreryInputError, TraceFormatError
from orrery.traces.devices import (
    DEFAULT_ELIGIBILITY,
    eligible_mask,
    fit_eligibility,
    load_eligibility,
    make_population,
    parse_requirement,
)


@pytest.fixture(scope="module")
def pop():
    return make_population(20_000, np.random.default_rng(0))


def test_nested_requirements(pop):
    r = {k: eligible_mask(pop, f"req{k}") for k in range(1, 5)}
    assert (r[2] <= r[1]).all() and (r[3] <= r[1]).all() and (r[4] <= r[2]).all() and (r[4] <= r[3]).all()
    assert abs(r[4].mean() - DEFAULT_ELIGIBILITY[0b1111]) < 0.02
    assert eligible_mask(pop, "any").all()


def test_predicates(pop):
    m = eligible_mask(pop, "ram_gb >= 6 and android_os >= 11")
    attrs = pop.attributes()
    assert np.array_equal(m, (attrs["ram_gb"] >= 6) & (attrs["android_os"] >= 11))
    m2 = eligible_mask(pop, "req2 and cpu_score > 5")
    assert np.array_equal(m2, attrs["req2"] & (attrs["cpu_score"] > 5))
    m3 = eligible_mask(pop, lambda a: a["speed_ms"] < 50)
    assert np.array_equal(m3, attrs["speed_ms"] < 50)


@pytest.mark.parametrize("bad", ["", "ram_gb >> 3", "req9", "ram_gb >= x"])
def test_bad_requirement(bad):
    with pytest.raises(OrreryInputError):
        parse_requirement(bad)


def test_unknown_attribute(pop):
    with pytest.raises(OrreryInputError, match="unknown device attribute"):
        eligible_mask(pop, "battery >= 3")


def test_committed_fractions_match_data(shared_data):
    masks = load_eligibility(shared_data / "fl" / "aibenchmark_eligibility_4req.csv")
    fr = fit_eligibility(masks)
    assert set(fr) == set(DEFAULT_ELIGIBILITY)
    for k, v in fr.items():
        assert v == pytest.approx(DEFAULT_ELIGIBILITY[k], abs=1e-9)


def test_population_from_real_files(shared_data):
    pop = make_population(1000, np.random.default_rng(1),
                          specs_path=shared_data / "fl" / "aibenchmark_device_specs.csv",
                          eligibility_path=shared_data / "fl" / "aibenchmark_eligibility_4req.csv")
    assert len(pop) == 1000 and pop.hw.s_per_unit.min() > 0


@pytest.mark.parametrize("content,needle", [
    ("idx,req\n0,1\n", "header"),
    ("device_index,eligible_requirements\n0,1;5\n", "line 2"),
    ("device_index,eligible_requirements\nx,1\n", "device_index"),
    ("device_index,eligible_requirements\n", "no data"),
])
def test_malformed_eligibility(tmp_path, content, needle):
    p = tmp_path / "e.csv"
    p.write_text(content)
    with pytest.raises(TraceFormatError, match=needle):
        load_eligibility(p)
