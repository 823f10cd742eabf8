"""Oobleck planner speed: templates for GPT-3 6.7B and up to 32 nodes (target: < 10 s).

Times (1) the template dynamic program for every node count n0..32 on the real layer profiles,
(2) the first instantiation on 32 nodes and (3) a re-instantiation after a failure.
"""

from __future__ import annotations

import json
import time

from orrery.hwmodels.gpus import get_gpu
from orrery.policies.resilience.base import ClusterView
from orrery.policies.resilience.oobleck import Oobleck
from orrery.policies.resilience.templates import contiguous_range, plan_templates
from orrery.sim.resilience import ResilienceScenario, build_layers

TARGET_S = 10.0
N_NODES = 32


def main() -> None:
    sc = ResilienceScenario.from_dict({"policy": "oobleck", "model": {"name": "gpt3-6.7b"}})
    layers = build_layers(sc)
    mem = get_gpu(sc.cluster.gpu).mem_bytes - sc.cluster.mem_reserve_bytes
    t0 = time.perf_counter()
    tps = plan_templates(layers, mem, N_NODES - 1)
    t_templates = time.perf_counter() - t0
    n0, nmax = contiguous_range(tps)

    nodes = tuple(f"node{i}" for i in range(N_NODES))
    base = dict(layers=layers, global_microbatches=sc.model.batch // sc.model.microbatch_size,
                mem_bytes=mem, max_nodes=N_NODES, network_bw_bytes_per_s=12.5e9,
                storage_bw_bytes_per_s=2e9)
    pol = Oobleck(f=1)
    t1 = time.perf_counter()
    d0 = pol.schedule(ClusterView(0.0, "start", nodes, (), nodes, **base))
    t_first = time.perf_counter() - t1
    t2 = time.perf_counter()
    d1 = pol.schedule(ClusterView(60.0, "change", nodes[1:], nodes[:1], (), current=d0.pipelines, **base))
    t_reconf = time.perf_counter() - t2
    wall = t_templates + t_first + t_reconf
    print(f"GPT-3 6.7B on {sc.cluster.gpu}: {len(layers)} layers, templates n0={n0}..{nmax}")
    print(f"template DP: {t_templates:.3f} s; first instantiation (incl. DP): {t_first:.3f} s "
          f"-> {len(d0.pipelines)} pipelines; reconfiguration after 1 failure: {t_reconf:.3f} s "
          f"-> {len(d1.pipelines)} pipelines, recovery {d1.pause_s:.1f} s simulated")
    print(json.dumps({"benchmark": "oobleck_planner", "model": "gpt3-6.7b", "nodes": N_NODES,
                      "templates_s": round(t_templates, 4), "instantiate_s": round(t_first, 4),
                      "reconfigure_s": round(t_reconf, 4), "wall_s": round(wall, 4),
                      "target_wall_s": TARGET_S, "met": wall < TARGET_S}))


if __name__ == "__main__":
    main()
