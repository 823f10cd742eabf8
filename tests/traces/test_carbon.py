"""Carbon traces: real formats, gaps/duplicates, additivity, synthetic parameters vs the data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orrery.core.errors import OrreryInputError, TraceFormatError
from orrery.traces.carbon import SYNTHETIC_PARAMS, fit_synthetic, load_carbon_trace, synthetic_trace

CHASE_HDR = "location,timestamp,duration,value\n"


def test_real_traces_load(shared_data):
    es = load_carbon_trace(f"{shared_data}/carbon/electricitymaps_ES_2022_hourly.csv")
    assert len(es.values_g_per_kwh) == 8760 and es.interval_s == 3600 and es.report["gaps"] == 0
    miso = load_carbon_trace(f"{shared_data}/carbon/chase_miso_2022-10.csv")
    assert miso.interval_s == 1800 and str(miso.start_utc.tz) == "UTC"


@pytest.mark.parametrize("zone,path", [("ES", "carbon/electricitymaps_ES_2022_hourly.csv"),
                                       ("MISO", "carbon/chase_miso_2022-10.csv")])
def test_committed_synthetic_params_match_a_refit(shared_data, zone, path):
    p = fit_synthetic(load_carbon_trace(f"{shared_data}/{path}"))
    assert p["mean"] == pytest.approx(SYNTHETIC_PARAMS[zone]["mean"], rel=1e-3)
    assert p["phi"] == pytest.approx(SYNTHETIC_PARAMS[zone]["phi"], abs=1e-3)


def test_gaps_and_duplicates(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text(CHASE_HDR + "X,2022-10-20T06:00:00+02:00,30,100\nX,2022-10-20T06:30:00+02:00,30,110\n"
                 "X,2022-10-20T06:30:00+02:00,30,130\nX,2022-10-20T07:30:00+02:00,30,150\n")
    with pytest.raises(TraceFormatError, match="duplicated"):
        load_carbon_trace(str(f))
    tr = load_carbon_trace(str(f), duplicates="mean", gaps="interpolate")
    assert tr.values_g_per_kwh.tolist() == [100, 120, 135, 150]
    assert tr.start_utc.hour == 4  # converted to UTC
    assert tr.report == {"duplicates": 1, "gaps": 1, "rows": 4}
    with pytest.raises(TraceFormatError, match="missing interval"):
        load_carbon_trace(str(f), duplicates="first", gaps="error")
    assert load_carbon_trace(str(f), duplicates="first", gaps="ffill").values_g_per_kwh.tolist() == [100, 110, 110, 150]


def test_bad_traces_get_clear_errors(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(TraceFormatError, match="unrecognised"):
        load_carbon_trace(str(f))
    f.write_text(CHASE_HDR + "X,2022-10-20T06:00:00+00:00,30,abc\n")
    with pytest.raises(TraceFormatError, match="line 2"):
        load_carbon_trace(str(f))
    with pytest.raises(OrreryInputError):
        load_carbon_trace("synthetic:MARS")


@settings(max_examples=50, deadline=None)
@given(a=st.floats(0, 5e5), b=st.floats(0, 5e5), c=st.floats(0, 5e5), seed=st.integers(0, 5))
def test_carbon_is_additive_over_intervals(a, b, c, seed):
    tr = synthetic_trace(SYNTHETIC_PARAMS["US-CAL-CISO"], 2 * 86400, seed)
    t0, t1, t2 = sorted([a, b, c])
    whole = tr.carbon_g(300.0, t0, t2)
    assert whole == pytest.approx(tr.carbon_g(300.0, t0, t1) + tr.carbon_g(300.0, t1, t2), rel=1e-9, abs=1e-9)
    assert whole >= 0
    # a constant trace: carbon = energy x intensity / 3.6e6
    k = load_carbon_trace("constant:400")
    assert k.carbon_g(250.0, t0, t2) == pytest.approx(250.0 * (t2 - t0) * 400 / 3.6e6)


def test_synthetic_is_deterministic_and_diurnal():
    a = synthetic_trace(SYNTHETIC_PARAMS["US-CAL-CISO"], 86400 * 30, 1).values_g_per_kwh
    assert np.array_equal(a, synthetic_trace(SYNTHETIC_PARAMS["US-CAL-CISO"], 86400 * 30, 1).values_g_per_kwh)
    by_hour = a.reshape(-1, 24).mean(axis=0)
    assert by_hour.max() - by_hour.min() > 50
