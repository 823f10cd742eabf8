"""GPU energy models: committed fits match the data (checksums), report errors, carry no raw
measurements, reject bad input; the measured mode reads the real sweep at run time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from orrery.core.errors import OrreryInputError, TraceFormatError
from orrery.core.files import sha256_file
from orrery.hwmodels.gpu_energy import (
    POWER_LIMIT_PARAMS,
    STAGE_PARAMS,
    exp_energy,
    fit_exp_energy,
    fit_freq_time,
    fit_power_limit,
    freq_time,
    get_power_limit_model,
    load_computations,
    load_stage_profile,
    measured_power_limit_models,
    pareto_mask,
    power_limit_models,
    time_curve,
)


def test_committed_params_carry_checksums_and_errors(shared_data):
    pl = json.loads(POWER_LIMIT_PARAMS.read_text())
    for name, digest in pl["sources"].items():
        assert sha256_file(shared_data / "gpu" / name) == digest
    for gpu in ("v100", "a40", "a100"):
        for m in pl["gpus"][gpu].values():
            assert m["fit_error"]["time_mape_fitted_pct"] < 15
    st = json.loads(STAGE_PARAMS.read_text())
    for prof in st["profiles"].values():
        assert sha256_file(shared_data / "gpu" / prof["source"]) == prof["sha256"]
        assert prof["fit_error"]["energy_mape_heldout_pct"] < 10


def test_pareto_and_exp_fit():
    t = np.array([1.0, 1.1, 1.2, 1.3, 1.25])
    e = np.array([10.0, 9.0, 8.5, 8.2, 9.5])
    assert pareto_mask(t, e).tolist() == [True, True, True, True, False]
    tt = np.linspace(0.05, 0.08, 12)
    ee = exp_energy(tt, 30.0, -40.0, 10.0)
    assert np.allclose(exp_energy(tt, *fit_exp_energy(tt, ee)), ee, rtol=1e-3)


def test_power_limit_model_range_and_monotone():
    m = get_power_limit_model("v100", "imagenet/resnet50/b128/adadelta")
    pls = np.arange(m.pl_min_w, m.pl_max_w + 1, 25.0)
    assert np.all(np.diff(m.time_s(pls)) < 0)  # more power, faster
    with pytest.raises(OrreryInputError, match="outside"):
        m.time_s(m.pl_max_w + 50)


def test_power_limit_time_fit_finds_the_knee():
    pl = np.arange(100.0, 301.0, 25.0)
    t = time_curve(pl, 3600.0, 190.0, 1.6, 5.0)
    p = np.minimum(0.9 * pl, 230.0)
    _, tm = fit_power_limit(pl, t, p)
    assert np.allclose(time_curve(pl, *tm), t, rtol=5e-3)
    assert abs(tm[1] - 190.0) < 10 and tm[0] == pytest.approx(3600.0, rel=0.01)


@pytest.mark.parametrize("gpu", ["v100", "a40"])
def test_fitted_power_limit_models_keep_the_energy_saving_of_the_sweep(gpu, shared_data):
    """Energy saved at the energy-optimal limit vs the maximum: the fit against the sweep."""
    measured = measured_power_limit_models(shared_data / "gpu" / f"zeus_power_limit_sweep_{gpu}.csv", gpu)
    fitted = power_limit_models(gpu)
    errs = []
    for key, m in measured.items():
        f = fitted[key]
        pls = np.asarray([pt[0] for pt in m.measured])
        sav = [1 - mod.energy_j(pls).min() / mod.energy_j(pls[-1]) for mod in (m, f)]
        errs.append(abs(sav[0] - sav[1]) * 100)
    assert np.mean(errs) < 4.5  # percentage points (the exponential time curve missed A40 by 7)


def test_bad_profiles_get_clear_errors(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("stage,instruction,frequency,time\n0,forward,1410,0.1\n")
    with pytest.raises(TraceFormatError, match="missing columns"):
        load_stage_profile(f)
    f.write_text("stage,instruction,frequency,time,energy\n0,sideways,1410,0.1,3\n")
    with pytest.raises(TraceFormatError, match="instruction"):
        load_stage_profile(f)
    f.write_text("stage,instruction,frequency,time,energy\n0,forward,1410,-0.1,3\n")
    with pytest.raises(TraceFormatError, match="line 2"):
        load_stage_profile(f)


# The committed JSON may hold fitted coefficients (3 numbers), ranges (2), errors, counts and
# checksums - never the measured points (../shared/data/SOURCES.md): no list longer than this.
MAX_PARAM_LIST = 4  # the longest model: t_inf, knee, exponent, softness
RAW_KEYS = {"measured", "points", "freq_max_point", "freqs_mhz", "time_s", "power_w", "energy_j", "rows"}


def _walk(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(obj, list):
        yield path, obj
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, obj


@pytest.mark.parametrize("params", [POWER_LIMIT_PARAMS, STAGE_PARAMS], ids=lambda p: p.name)
def test_committed_params_hold_no_raw_measurements(params):
    data = json.loads(params.read_text())
    for path, v in _walk(data):
        assert path.rsplit("/", 1)[-1].split("[")[0] not in RAW_KEYS, f"{params.name}: raw-data key at {path}"
        if isinstance(v, list):
            assert len(v) <= MAX_PARAM_LIST, f"{params.name}: list of {len(v)} values at {path} (raw points?)"


def test_committed_params_contain_no_measured_value(shared_data):
    """No number in the JSON equals a measured time, power or energy of the source files."""
    measured: set[float] = set()
    for name, cols in (("zeus_power_limit_sweep_v100.csv", ("time_per_epoch", "average_power")),
                       ("zeus_power_limit_sweep_a40.csv", ("time_per_epoch", "average_power")),
                       ("perseus_zeus_global_A100.csv", ("time", "energy")),
                       ("perseus_zeus_global_A40.csv", ("time", "energy")),
                       ("perseus_stage_profile_bloom+a100_sxm_bf16.csv", ("time", "energy")),
                       ("perseus_stage_profile_bloom+a40_bf16.csv", ("time", "energy"))):
        df = pd.read_csv(shared_data / "gpu" / name)
        for c in cols:
            measured |= {float(x) for x in df[c]}
    for params in (POWER_LIMIT_PARAMS, STAGE_PARAMS):
        leaked = [(p, v) for p, v in _walk(json.loads(params.read_text()))
                  if isinstance(v, float) and v in measured]
        assert not leaked, f"{params.name}: measured values committed: {leaked[:5]}"


def test_measured_models_interpolate_the_sweep_read_at_run_time(shared_data, tmp_path):
    path = shared_data / "gpu" / "zeus_power_limit_sweep_v100.csv"
    models = measured_power_limit_models(path, "v100")
    fitted = power_limit_models("v100")
    assert set(models) == set(fitted)  # the same workloads as the committed fit
    m = models["imagenet/resnet50/b128/adadelta"]
    df = pd.read_csv(path)
    g = df[(df.dataset == "imagenet") & (df.network == "resnet50") & (df.batch_size == 128)
           & (df.optimizer == "adadelta")].groupby("power_limit")[["time_per_epoch", "average_power"]].mean()
    assert np.allclose(m.time_s(g.index.to_numpy(float)), g.time_per_epoch)  # exact at measured limits
    assert np.allclose(m.power_w(g.index.to_numpy(float)), g.average_power)
    f = fitted[m.key]
    assert (m.pl_min_w, m.pl_max_w) == (f.pl_min_w, f.pl_max_w)
    mid = (g.index[2] + g.index[3]) / 2
    assert min(g.time_per_epoch.iloc[2:4]) <= m.time_s(mid) <= max(g.time_per_epoch.iloc[2:4])
    a100 = measured_power_limit_models(shared_data / "gpu" / "perseus_zeus_global_A100.csv", "a100")
    assert set(a100) == set(power_limit_models("a100")) and a100["perseus/bloom-3b"].unit == "iteration"
    with pytest.raises(OrreryInputError, match="not found"):
        measured_power_limit_models(tmp_path / "nope.csv", "v100")
    bad = tmp_path / "g.csv"
    bad.write_text("model_name,dp,tp,pp,num_microbatches,power_limit_0,time\nx,1,1,4,8,300,1.0\n")
    with pytest.raises(TraceFormatError, match="missing columns"):
        measured_power_limit_models(bad, "a100")


def test_fitted_stage_profile_needs_no_data_and_csv_is_read_when_named(shared_data):
    fit = load_computations("bloom-a100_sxm")
    real = load_computations(str(shared_data / "gpu" / "perseus_stage_profile_bloom+a100_sxm_bf16.csv"))
    assert set(fit) == set(real)
    for k in fit:
        assert fit[k].all_freqs_mhz[0] == real[k].all_freqs_mhz[0] == 1410.0
        assert np.all(np.diff(fit[k].times_s) > 0) and np.all(np.diff(fit[k].energies_j) < 0)
        # the fitted choices span the real Pareto-optimal clocks
        assert min(fit[k].freqs_mhz) == min(real[k].freqs_mhz) and max(fit[k].freqs_mhz) == max(real[k].freqs_mhz)
        t, e = fit[k].at_frequency(1200.0)
        tr, er = real[k].at_frequency(1200.0)
        assert abs(t / tr - 1) < 0.05 and abs(e / er - 1) < 0.05
        # the maximum clock (the max-power baseline): the clock saturation keeps its time, and
        # so its energy, where the profile has them (a plain alpha + beta / f was 12% high)
        t, e = fit[k].at_frequency(1410.0)
        tr, er = real[k].at_frequency(1410.0)
        assert abs(t / tr - 1) < 0.01 and abs(e / er - 1) < 0.02


def test_clock_time_fit_saturates_and_falls_back_to_the_line():
    f = np.arange(900.0, 1411.0, 15.0)
    t = freq_time(f, 0.02, 40.0, 1300.0, 40.0)
    a, b, fs, soft = fit_freq_time(f, t)
    assert abs(fs - 1300.0) < 30 and np.allclose(freq_time(f, a, b, fs, soft), t, rtol=2e-3)
    line = 0.02 + 40.0 / f
    a, b, fs, soft = fit_freq_time(f, line)
    assert np.allclose(freq_time(f, a, b, fs, soft), line, rtol=1e-6)  # no saturation in the data
    assert np.allclose(freq_time(f, 0.02, 40.0), line)
