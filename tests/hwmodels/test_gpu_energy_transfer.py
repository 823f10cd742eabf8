"""Training energy curves that transfer to a new workload (#14 section 2): family shapes, anchors,
leave-one-workload-out, `orrery fit gpu-energy` and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orrery.hwmodels import gpu_energy_transfer as gt

LIMITS = np.arange(100.0, 251.0, 25.0)


def sweep(p0: float, t0: float = 100.0) -> dict:
    """A synthetic sweep of the shape every test workload shares: power caps at 0.9 pl, time
    grows as the power falls below the uncapped draw p0."""
    p = np.minimum(p0, 0.9 * LIMITS)
    t = t0 * (p0 / p) ** 0.8
    return {"power_limit_w": LIMITS, "time_s": t, "power_w": p}


def test_curve_passes_through_its_anchors_and_follows_the_shared_shape():
    items = [sweep(p0) for p0 in (120.0, 160.0, 200.0, 220.0)]
    curve = gt.fit_power_limit_curve("volta", items)
    new = sweep(180.0, t0=42.0)  # a workload the fit never saw, anchored at 250 W only
    T, P = curve.predict(LIMITS, 250.0, new["time_s"][-1], new["power_w"][-1])
    assert T[-1] == pytest.approx(new["time_s"][-1]) and P[-1] == pytest.approx(new["power_w"][-1])
    assert np.max(np.abs(T / new["time_s"] - 1)) < 0.06
    assert np.max(np.abs(P / new["power_w"] - 1)) < 0.06
    assert not curve.extrapolated(LIMITS, 180.0)
    assert curve.extrapolated([10.0], 180.0)  # u = 0.06: far below anything fitted
    # one more measured limit: the curve goes through it too
    T2, _ = curve.predict(LIMITS, 250.0, 42.0, 180.0, second=(100.0, 60.0, 90.0))
    assert T2[0] == pytest.approx(60.0, rel=1e-6)


def test_leave_one_workload_out_picks_the_best_limit_on_a_shared_shape():
    pts = {f"ds{g}/net{g}/b{b}/adam": sweep(p0) for g, p0 in enumerate((150.0, 160.0, 170.0, 180.0))
           for b in (32, 64)}
    cv = gt.leave_one_workload_out(pts, "volta", ceiling=False)
    assert cv["n"] == 8 and cv["groups"] == 4
    assert cv["within_one_step"] == 1.0 and cv["met"]
    assert gt.zeus_choice(LIMITS, np.ones(7), np.full(7, 50.0)) == 250.0  # ties: the higher limit
    for second, mode in (("min", "depth"), ("second_lowest", "shift"), ("middle", "shift")):
        cv2 = gt.leave_one_workload_out(pts, "volta", second=second, second_mode=mode, ceiling=False)
        assert cv2["within_one_step"] == 1.0 and cv2["anchors"] == f"max + {second}"


def test_flat_sweeps_bound_what_any_curve_can_reach():
    """A workload no limit throttles has a flat true cost: its measured best is noise, a flat
    prediction ties to the highest limit (Zeus's rule), and the report's ceiling says so."""
    pts = {f"ds{g}/net{g}/b32/adam": sweep(p0) for g, p0 in enumerate((150.0, 170.0, 190.0))}
    flat = sweep(60.0)  # draws 60 W: 100-250 W limits never bind
    flat["time_s"] = flat["time_s"] * np.where(LIMITS == 150.0, 0.97, 1.0)  # one lucky run at 150 W
    pts["flat/net/b32/adam"] = flat
    cv = gt.leave_one_workload_out(pts, "volta", ceiling=False)
    row = next(r for r in cv["rows"] if r["workload"] == "flat/net/b32/adam")
    assert cv["bound_sweeps"] == 3 and cv["within_one_step_bound"] == 1.0
    assert row["best_w"] == 150.0 and not row["bound"] and not row["tie_rule_within_one_step"]
    assert cv["ceiling_tie_rule"] == pytest.approx(3 / 4) and cv["within_one_step"] <= cv["ceiling_tie_rule"]


def test_unfitted_family_borrows_the_mean_shape_and_says_so(tmp_path):
    doc = {"power_limit": {f: {"family": f, "log_time": [0.0] * len(gt.KNOTS_U), "log_power": [0.1] * len(gt.KNOTS_U),
                               "u_range": [0.5, 2.0], "n_workloads": 3} for f in ("volta", "ampere")}}
    assert gt.power_limit_curve(doc, "v100").trust == "fitted"
    c = gt.power_limit_curve(doc, "h100")
    assert c.trust == "borrowed" and c.family == "hopper"


def test_clock_curve_is_exact_at_the_max_clock_and_slower_below():
    f = np.array([1000.0, 1200.0, 1410.0])
    curves = [((0, "forward"), f / 1410.0, np.array([1.3, 1.1, 1.0]), np.array([0.6, 0.8, 1.0]))]
    cur = gt.fit_clock_curve("ampere", curves)
    t, e = cur.predict(f, 1410.0, 0.05, 20.0)
    assert t[-1] == pytest.approx(0.05) and e[-1] == pytest.approx(20.0)
    assert t[0] > t[1] > t[2]


def _write_sweep(path, rows):
    path.write_text("dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
                    + "".join(f"{r}\n" for r in rows))


def test_fit_cli_writes_a_parameter_file_and_rejects_bad_files(tmp_path, capsys):
    rows = []
    for g, p0 in enumerate((120.0, 170.0, 210.0)):
        s = sweep(p0)
        rows += [f"d{g},n{g},32,adam,{pl:g},{t:.4f},{p:.3f}" for pl, t, p in zip(LIMITS, s["time_s"], s["power_w"],
                                                                               strict=True)]
    good = tmp_path / "my_sweep.csv"
    _write_sweep(good, rows)
    out = tmp_path / "fit.json"
    assert gt.main([str(good), "--gpu", "v100", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == gt.SCHEMA and doc["power_limit"]["volta"]["n_workloads"] == 3
    assert gt.main([str(good), "--out", str(out)]) == 2  # no GPU in the file name, no --gpu
    assert "--gpu" in capsys.readouterr().err
    bad = tmp_path / "v100_bad.csv"
    _write_sweep(bad, rows[:3] + ["d9,n9,32,adam,100,-5,80"])
    assert gt.main([str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "v100_bad.csv" in err and "time_per_epoch" in err and "line 5" in err


# ---- power cap in the clock shape (#14 section 2: A100 -> A40) -----------------------------------
FREQS = np.arange(855.0, 1741.0, 15.0)


def _clock_profile(p_max_w: float, limit_w: float, t_max_s: float = 0.1, a: float = 0.8):
    """A synthetic stage profile of one shape: uncapped time t_max (a / x + 1 - a), power
    p_max x^2; a power limiter holds every clock whose uncapped draw exceeds `limit_w` at the
    clock where it equals the limit (x_cap = sqrt(limit / p_max))."""
    import pandas as pd

    x = FREQS / FREQS.max()
    x_eff = np.minimum(x, np.sqrt(limit_w / p_max_w))
    t = t_max_s * (a / x_eff + 1 - a)
    p = p_max_w * x_eff ** 2
    rows = [{"stage": s, "instruction": ins, "frequency": f, "time": ti * (1 + 0.3 * s), "energy": ti * (1 + 0.3 * s) * pi}
            for s in (0, 1) for ins in ("forward", "backward") for f, ti, pi in zip(FREQS, t, p, strict=True)]
    return pd.DataFrame(rows), x_eff


def test_uncapped_curves_drop_the_points_the_limiter_held():
    df, x_eff = _clock_profile(400.0, 300.0)  # x_cap = 0.866
    curves = gt.clock_curves_uncapped(df, 300.0)
    assert len(curves) == 4
    for _key, x, t, p, x0 in curves:
        assert x.max() == x0 and np.all(p * 1.0 <= 1.0 + 1e-12) and t[-1] == pytest.approx(1.0)
        assert x0 < np.sqrt(gt.CAP_FRAC * 300.0 / 400.0) + 1e-9  # nothing at or above 90 % of the limit
    # a limit nothing reaches keeps every point
    assert all(len(c[1]) == len(FREQS) for c in gt.clock_curves_uncapped(df, 1000.0))


def test_cap_model_predicts_a_capped_gpu_from_an_uncapped_one():
    src, _ = _clock_profile(400.0, 10_000.0)  # the source GPU never reaches its limit
    cur = gt.fit_clock_curve("ampere", gt.clock_curves_uncapped(src, 10_000.0))
    dst, x_eff = _clock_profile(400.0, 300.0, t_max_s=0.25)  # the target GPU's limiter holds x >= 0.866
    g = dst[(dst.stage == 0) & (dst.instruction == "forward")].sort_values("frequency")
    f, t, e = (g[c].to_numpy(float) for c in ("frequency", "time", "energy"))
    i = int(np.argmin(np.abs(f - gt.SECOND_CLOCK_X * f.max())))
    tc, ec, x_cap = cur.predict_capped(f, f.max(), t[-1], e[-1], 300.0, second=(f[i], t[i], e[i]))
    assert x_cap == pytest.approx(np.sqrt(0.75), abs=0.01)
    assert tc[-1] == pytest.approx(t[-1]) and ec[-1] == pytest.approx(e[-1])  # exact at the anchor
    # a power law costs the slope penalty nothing (the index-based penalty was off by 6 % at 0.5)
    assert np.max(np.abs(tc / t - 1)) < 0.005 and np.max(np.abs(ec / e - 1)) < 0.005
    assert np.all(tc[f >= x_cap * f.max()] == t[-1])  # the limiter's flat top
    # the shape without the cap misses the flat top by far more
    tn, en = cur.predict(f, f.max(), t[-1], e[-1])
    assert np.max(np.abs(en / e - 1)) > 0.15
    # a capped anchor with no way to locate the cap falls back to the plain shape (x_cap = 1)
    t1, e1, xc1 = cur.predict_capped(f, f.max(), t[-1], e[-1], 300.0)
    assert xc1 == 1.0 and np.allclose(t1, tn) and np.allclose(e1, en)
    # an explicit effective clock (e.g. NVML's reading during the anchor run) is used as given
    _, _, xc2 = cur.predict_capped(f, f.max(), t[-1], e[-1], 300.0, x_cap=0.9)
    assert xc2 == 0.9


def test_cap_model_leaves_an_uncapped_anchor_alone():
    src, _ = _clock_profile(400.0, 10_000.0)
    cur = gt.fit_clock_curve("ampere", gt._clock_curves(src))
    f = FREQS
    t, e = cur.predict(f, f.max(), 0.1, 30.0)  # 300 W at max clock
    tc, ec, x_cap = cur.predict_capped(f, f.max(), 0.1, 30.0, 500.0, second=(f[0], 0.2, 20.0))
    assert x_cap == 1.0 and np.array_equal(t, tc) and np.array_equal(e, ec)


def test_profile_power_limit_is_per_gpu_and_rejects_impossible_draws():
    import pandas as pd

    df = pd.DataFrame({"time": [0.05, 0.1], "energy": [23.7, 46.0]})  # 474 W, 460 W
    assert gt.profile_power_limit_w(df, "A100-SXM4-80GB") == 500.0  # the HGX 500 W board
    assert gt.profile_power_limit_w(df * [1.0, 0.5], "A100-SXM4-80GB") == 400.0  # 237 W: the default board
    with pytest.raises(gt.OrreryInputError, match="my_profile.*A40"):
        gt.profile_power_limit_w(df, "A40", "my_profile")
    cur = gt.fit_clock_curve("ampere", gt.clock_curves_uncapped(_clock_profile(400.0, 300.0)[0], 300.0))
    assert cur.extrapolated(FREQS, FREQS.max()) and not cur.extrapolated(FREQS[:10], FREQS.max())


def test_absolute_clock_option_transfers_a_shape_set_in_mhz_to_a_gpu_with_another_max_clock():
    import pandas as pd

    def prof(f_max):  # static + dynamic power, memory-bound share: the shape is set in MHz, not f / f_max
        f = np.arange(600.0, f_max + 1, 15.0)
        t = 0.1 * (0.7 * 1410.0 / f + 0.3)
        p = 60.0 + 300.0 * (f / 1410.0) ** 3
        return pd.DataFrame({"stage": 0, "instruction": "forward", "frequency": f, "time": t, "energy": t * p})

    src, dst = prof(1410.0), prof(1110.0)  # a lower-clocked GPU of the same family, no cap
    f, t, e = (dst[c].to_numpy(float) for c in ("frequency", "time", "energy"))
    errs = {}
    for fref in (0.0, 1410.0):
        cur = gt.fit_clock_curve("ampere", gt.clock_curves_uncapped(src, 10_000.0, fref), f_ref_mhz=fref)
        tp, ep, _ = cur.predict_capped(f, f.max(), t[-1], e[-1], 10_000.0)
        assert tp[-1] == pytest.approx(t[-1]) and ep[-1] == pytest.approx(e[-1])
        errs[fref] = max(np.max(np.abs(tp / t - 1)), np.max(np.abs(ep / e - 1)))
    assert errs[1410.0] < 0.03 and errs[0.0] > 3 * errs[1410.0]


def _physical_profile(a_per_ghz: float, f_knee: float, f_max: float, limit_w: float):
    """Two computations of the physical clock model (static + C V^2 f power with a V/f knee,
    memory + compute time); clocks whose power would pass `limit_w` run as the limiter holds them."""
    import pandas as pd

    vf = gt.VFCurve("ampere", a_per_ghz, 0.0, f_knee)
    rows = []
    for ins, (S, k, tm, tc) in {"forward": (80.0, 120.0, 0.02, 80.0), "backward": (60.0, 180.0, 0.01, 150.0)}.items():
        f = np.arange(800.0, f_max + 1, 15.0)
        p = S + k * f / 1000.0 * vf.g(f)
        grid = np.linspace(800.0, f_max, 20001)
        pg = S + k * grid / 1000.0 * vf.g(grid)
        f_eff = grid[np.flatnonzero(pg <= limit_w)[-1]]
        fe = np.minimum(f, f_eff)
        t, p = tm + tc / fe, np.minimum(p, S + k * f_eff / 1000.0 * vf.g(f_eff))
        rows += [{"stage": 0, "instruction": ins, "frequency": a, "time": b, "energy": b * c} for a, b, c in zip(f, t, p, strict=True)]
    return pd.DataFrame(rows), vf


def test_physical_vf_curve_is_recovered_from_a_profile():
    df, vf = _physical_profile(0.6, 1100.0, 1410.0, 10_000.0)
    got = gt.fit_vf_curve("ampere", df, 10_000.0)
    assert got.f_knee_mhz == pytest.approx(1100.0, abs=25.0)
    f = np.arange(800.0, 1411.0, 10.0)
    assert np.max(np.abs(got.g(f) / vf.g(f) - 1)) < 0.01
    with pytest.raises(gt.OrreryInputError, match="V/f"):
        gt.fit_vf_curve("ampere", df, 100.0)  # every point above 90 % of a 100 W limit


def test_physical_model_predicts_a_capped_profile_from_three_clocks():
    """The V/f curve of one GPU, a computation of another (same knee and form, a cap) measured at
    its max clock and two uncapped clocks: the whole profile follows, the limiter's flat top held."""
    src, _ = _physical_profile(0.6, 1100.0, 1410.0, 10_000.0)
    vf = gt.fit_vf_curve("ampere", src, 10_000.0)
    dst, _ = _physical_profile(0.6, 1100.0, 1740.0, 300.0)
    g = dst[dst.instruction == "backward"].sort_values("frequency")
    f, t, e = (g[c].to_numpy(float) for c in ("frequency", "time", "energy"))
    anchors = [(f[i], t[i], e[i]) for i in (0, 20, len(f) - 1)]  # 800 MHz, 1100 MHz, max
    assert e[-1] / t[-1] > gt.CAP_FRAC * 300.0  # the max-clock anchor is capped
    tp, ep, f_eff = gt.predict_physical(vf, f, anchors, 300.0)
    assert np.max(np.abs(tp / t - 1)) < 0.01 and np.max(np.abs(ep / e - 1)) < 0.02
    assert tp[-1] == pytest.approx(t[-1]) and ep[-1] == pytest.approx(e[-1])
    assert f_eff < f.max() and np.all(tp[f >= f_eff] == t[-1])
    # the plain relative-clock shape from the same source misses the capped target by far more
    cur = gt.fit_clock_curve("ampere", gt._clock_curves(src))
    _, en = cur.predict(f, f.max(), t[-1], e[-1])
    assert np.max(np.abs(en / e - 1)) > 0.1
    with pytest.raises(gt.OrreryInputError, match="two anchors"):
        gt.predict_physical(vf, f, anchors[1:], 300.0)  # one uncapped anchor cannot fix S and k


def test_shift_option_locates_where_a_bursty_workload_starts_to_slow():
    """A workload whose peaks meet the limit above its average draw (beta = 1.4) slows at limits
    the family shape (in u = limit / average draw) calls safe; one more measured limit, used to
    shift u, finds beta, and the predicted curve follows the sweep; the depth rescale cannot."""
    items = [sweep(p0) for p0 in (120.0, 160.0, 200.0, 220.0)]
    curve = gt.fit_power_limit_curve("volta", items)
    beta, p0 = 1.4, 130.0
    seen = np.minimum(beta * p0, 0.9 * LIMITS)  # the power the limiter acts on
    t, p = 50.0 * (beta * p0 / seen) ** 0.8, seen / beta
    sec = (LIMITS[1], t[1], p[1])
    T0, _ = curve.predict(LIMITS, 250.0, t[-1], p[-1])
    Td, _ = curve.predict(LIMITS, 250.0, t[-1], p[-1], second=sec)
    Ts, _ = curve.predict(LIMITS, 250.0, t[-1], p[-1], second=sec, second_mode="shift")
    err = {k: float(np.max(np.abs(v / t - 1))) for k, v in (("max", T0), ("depth", Td), ("shift", Ts))}
    assert err["shift"] < 0.03 and err["max"] > 0.2 and err["depth"] > 3 * err["shift"]
    assert Ts[1] == pytest.approx(t[1], rel=0.01) and Ts[-1] == pytest.approx(t[-1])
    # an unthrottled workload keeps its flat curve (beta near 1 when the second point says nothing)
    flat = sweep(60.0)
    Tf, _ = curve.predict(LIMITS, 250.0, flat["time_s"][-1], flat["power_w"][-1],
                          second=(LIMITS[1], flat["time_s"][1], flat["power_w"][1]), second_mode="shift")
    assert np.allclose(Tf, flat["time_s"][-1], rtol=1e-3)
    with pytest.raises(gt.OrreryInputError, match="second_mode"):
        curve.predict(LIMITS, 250.0, 1.0, 100.0, second=sec, second_mode="nope")
