"""A tiny toy domain for the experiments tests (the real domains are built elsewhere).

Import it (or pass `--plugin orrery_toy_domain` with this folder on PYTHONPATH) to register
domain "toy" and its policies "base", "fast" and "alias_of_base" (which behaves like "base").
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from orrery.core.config import Strict
from orrery.policies import registry
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import RNGStreams
from orrery.sim.scenario import Scenario


class ToyWorkload(Strict):
    rate_rps: float = Field(1.0, gt=0)
    n_requests: int = Field(20, ge=1)


class ToyScenario(Scenario):
    domain: ClassVar[str] = "toy"

    workload: ToyWorkload = ToyWorkload()
    trace_path: str = ""
    sleep_s: float = Field(0.0, ge=0)
    jitter: bool = False  # True: results depend on the wall clock (breaks reproducibility)
    fail: bool = False


SPEED = {"base": 1.0, "fast": 2.0, "alias_of_base": 1.0}


@registry.register("toy", "base")
class BasePolicy:
    pass


@registry.register("toy", "fast")
class FastPolicy:
    pass


@registry.register("toy", "alias_of_base")
class AliasPolicy:
    pass


registry._LOADED.add("toy")  # no policies/toy package: the classes above are the whole domain


def run(sc: ToyScenario) -> RunResult:
    if sc.fail:
        raise RuntimeError("toy run asked to fail")
    if sc.sleep_s:
        time.sleep(sc.sleep_s)
        marker = os.environ.get("TOY_RUN_LOG")
        if marker:
            with open(marker, "a") as f:
                f.write(json.dumps({"seed": sc.seed, "policy": sc.policy}) + "\n")
    if sc.trace_path:
        Path(sc.trace_path).read_text()
    rng = RNGStreams(sc.seed)
    n = sc.workload.n_requests
    service = rng["service"].exponential(1.0 / SPEED[sc.policy], n)
    gaps = rng["arrivals"].exponential(1.0 / sc.workload.rate_rps, n)
    if sc.jitter:
        service = service + (time.perf_counter_ns() % 1000) * 1e-9
    arrival = np.cumsum(gaps)
    finish = arrival + service
    table = pd.DataFrame({"request": np.arange(n), "arrival_s": arrival, "latency_s": service})
    series = {"done": pd.DataFrame({"t_s": np.sort(finish), "n_done": np.arange(1, n + 1)})}
    metrics = {
        "latency_s": float(service.mean()),
        "throughput_rps": float(n / finish.max()),
        "p90_latency_s": float(np.quantile(service, 0.9)),
    }
    return RunResult(metrics, table, series)


def plots(out_dir, summary, runs):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for r in runs:
        ax.plot(r.series["done"]["t_s"], r.series["done"]["n_done"], lw=0.5)
    p = out_dir / "toy_done.png"
    fig.savefig(p)
    plt.close(fig)
    return [p]


DOMAIN = register_domain(
    Domain(
        "toy",
        ToyScenario,
        run,
        metrics={"latency_s": "lower", "throughput_rps": "higher", "p90_latency_s": "lower"},
        plots=plots,
        description="toy queue for the experiments tests",
    )
)
