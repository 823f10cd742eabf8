"""Open tables: metrics.parquet / metrics.csv (long form) and series/<name>.parquet read back with
DuckDB and pandas give the numbers of summary.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orrery.experiments.tables import PRIMARY_TABLE, id_columns


@pytest.mark.parametrize("name", ["oobleck", "chase"])
def test_metrics_tables_read_back_with_duckdb_and_pandas_match_summary(tiny_result, name):
    duckdb = pytest.importorskip("duckdb")
    out, res = tiny_result(name)
    study = res.study.describe()
    summary = pd.read_csv(out / "summary.csv")
    long_csv = pd.read_csv(out / "metrics.csv")
    long_pq = pd.read_parquet(out / "metrics.parquet")
    cols = id_columns(study)
    assert list(long_pq.columns) == [*cols, "metric", "value"]
    assert list(long_csv.columns) == list(long_pq.columns)
    for v in study.variables:
        assert v in long_pq.columns  # every independent variable is its own column
    assert set(long_pq["run_id"]) == {r.run_id for r in res.records}
    assert (long_pq["study"] == study.name).all()

    con = duckdb.connect()
    ok = "FILTER (WHERE NOT isnan(value))"  # summary.csv leaves NaN (a metric that does not apply) out
    agg = con.execute(
        f"""SELECT "group", metric, avg(value) {ok} AS mean, stddev_samp(value) {ok} AS std,
                   count(value) {ok} AS n
            FROM read_parquet('{out / "metrics.parquet"}') GROUP BY "group", metric"""
    ).df()
    agg_csv = con.execute(
        f"""SELECT "group", metric, avg(value) {ok} AS mean FROM read_csv_auto('{out / "metrics.csv"}')
            GROUP BY "group", metric"""
    ).df()
    merged = summary.merge(agg, on=["group", "metric"], suffixes=("", "_db"))
    assert len(merged) == len(summary) > 0
    np.testing.assert_allclose(merged["mean_db"], merged["mean"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(merged["std_db"], merged["std"], rtol=1e-9, equal_nan=True)
    assert (merged["n_db"] == merged["n"]).all()
    m2 = summary.merge(agg_csv, on=["group", "metric"], suffixes=("", "_csv"))
    np.testing.assert_allclose(m2["mean_csv"], m2["mean"], rtol=1e-12, equal_nan=True)
    by_pandas = long_csv.groupby(["group", "metric"])["value"].mean().rename("mean_pd").reset_index()
    m3 = summary.merge(by_pandas, on=["group", "metric"])
    np.testing.assert_allclose(m3["mean_pd"], m3["mean"], rtol=1e-12, equal_nan=True)


def test_series_tables_hold_every_run_with_its_identifying_columns(tiny_result):
    duckdb = pytest.importorskip("duckdb")
    out, res = tiny_result("oobleck")
    study = res.study.describe()
    names = sorted({n for r in res.records for n in r.series})
    assert names and sorted(p.stem for p in (out / "series").glob("*.parquet")) == sorted([PRIMARY_TABLE, *names])
    for name in names:
        df = pd.read_parquet(out / "series" / f"{name}.parquet")
        assert list(df.columns[: len(id_columns(study))]) == id_columns(study)
        for r in res.records:
            mine = df[df["run_id"] == r.run_id].drop(columns=id_columns(study)).reset_index(drop=True)
            pd.testing.assert_frame_equal(mine, r.series[name].reset_index(drop=True), check_dtype=False)
    # a query across runs: the last samples_done per run equals the run's metric
    q = duckdb.connect().execute(
        f"""SELECT run_id, max(samples_done) AS done FROM read_parquet('{out / "series" / "samples.parquet"}')
            GROUP BY run_id"""
    ).df().set_index("run_id")["done"]
    for r in res.records:
        done = r.metrics["samples_done"]
        if done != done:  # NaN: a job that cannot run (e.g. Bamboo out of memory) trained nothing
            assert q[r.run_id] == 0.0
        else:
            assert q[r.run_id] == pytest.approx(done, rel=1e-9)
    table = pd.read_parquet(out / "series" / f"{PRIMARY_TABLE}.parquet")
    assert len(table) == sum(len(r.table) for r in res.records)


def test_mixed_type_variables_become_one_column_type(tmp_path):
    from types import SimpleNamespace

    from orrery.experiments.description import StudyDescription
    from orrery.experiments.tables import metrics_frame, write_tables

    study = StudyDescription(name="s", domain="toy", metrics={"m": "higher"}, variables=["policy", "x"], groups=())
    recs = [
        SimpleNamespace(run_id="a", group="g1", values={"policy": "p", "x": 1}, scenario={}, seed=0,
                        metrics={"m": 1.0}, series={}, table=pd.DataFrame()),
        SimpleNamespace(run_id="b", group="g2", values={"policy": "p", "x": [1, 2]}, scenario={}, seed=0,
                        metrics={"m": 2.0}, series={}, table=pd.DataFrame()),
    ]
    df = metrics_frame(study, recs)
    assert df["x"].tolist() == ["1", "[1, 2]"]
    write_tables(tmp_path, study, recs)
    assert pd.read_parquet(tmp_path / "metrics.parquet")["x"].tolist() == ["1", "[1, 2]"]


def test_orrery_report_recomputes_with_another_correction_and_alpha(tiny_result, tmp_path):
    import shutil

    from orrery.experiments.cli import main

    out, _ = tiny_result("zeus")
    copy = tmp_path / "zeus"
    shutil.copytree(out, copy)
    assert main(["report", str(copy), "--correction", "holm", "--alpha", "0.1"]) == 0
    summary = pd.read_csv(copy / "summary.csv")
    treated = summary[summary["role"] == "treatment"]
    assert (treated["correction"] == "holm").all() and treated["p_adjusted"].notna().any()
    assert "Holm" in (copy / "report.md").read_text() and "alpha 0.1" in (copy / "report.md").read_text()
    assert "Holm" in (copy / "report.html").read_text(encoding="utf-8")
    assert main(["report", str(copy), "--alpha", "1.5"]) == 2  # bad input
