"""Plots: the generic charts and the serving figures the serving domain's hook delegates to."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orrery.experiments.plotting import serving_plots
from orrery.experiments.store import RunRecord


def test_serving_plots_from_run_records(tmp_path):
    runs = []
    for policy, base in (("vllm_fcfs", 0.6), ("andes", 0.9)):
        for rate in (1.0, 4.0):
            for seed in range(2):
                q = np.clip(np.random.default_rng(seed).normal(base - 0.05 * rate, 0.1, 30), 0, 1)
                runs.append(RunRecord(
                    run_id=f"{policy}-{rate}-{seed}", group=f"policy={policy},workload.rate_rps={rate}",
                    values={"policy": policy, "workload.rate_rps": rate},
                    seed=seed, scenario={"policy": policy}, metrics={"qoe_mean": float(q.mean())},
                    table=pd.DataFrame({"qoe": q}),
                ))  # fmt: skip
    paths = serving_plots(tmp_path, pd.DataFrame(), runs)
    assert [p.name for p in paths] == ["serving_qoe_vs_rate.png", "serving_qoe_cdf.png"]
    assert all(p.stat().st_size > 5000 for p in paths)
