"""Facts from Oobleck's SOSP'23 artifact simulator, for orrery's `artifact` throughput mode.

Source: SymbioticLab/Oobleck, branch `sosp23-artifact`, folder `tools/simulator/` (files
`varuna_simulator.py`, `oobleck_simulator.py`, `bamboo_simulator.py`). The artifact replays a
node trace and, for each system, reads a *measured* failure-free training throughput (samples/s)
from a per-node-count table (30 nodes down to 15; more than 30 uses the 30-node value, fewer
than 15 the 15-node value), with the global batch ("samples_per_step") fixed per model. The
numbers below are those tables, copied as data (each list starts at 30 nodes and goes down one
node at a time to 15). Constants of the recovery models are cited where they are used
(`policies/resilience/varuna.py`, `bamboo.py`, `oobleck.py`).

Bamboo's tables for GPT-3 are all zero in the artifact ("# OOM" in `bamboo_simulator.py`,
`gpt_3_2_7b_simulate_step_delta` / `gpt_3_6_7b_simulate_step_delta`): the artifact treats
Bamboo as unable to train GPT-3 at all; here that is `None` (no measured throughput). Whether it
fits is orrery's memory model's answer (see `policies/resilience/bamboo.py`).
"""

from __future__ import annotations

ARTIFACT_SOURCE = "SymbioticLab/Oobleck@sosp23-artifact:tools/simulator"
TABLE_MAX_NODES = 30
TABLE_MIN_NODES = 15

# global batch (samples per iteration), `samples_per_step` in each *_simulator.py
ARTIFACT_GLOBAL_BATCH = {
    "gpt3-2.7b": 512,  # `1024 / 2`
    "gpt3-6.7b": 1024,
    "bert-large": 8192,
}

# samples/s at 30, 29, ..., 15 ready nodes
ARTIFACT_THROUGHPUT = {
    # varuna_simulator.py, gpt_3_2_7b_simulate_step_delta
    ("varuna", "gpt3-2.7b"): (
        9.767532721, 9.424740405, 9.424740405, 9.099911677, 9.099911677, 9.099911677,
        9.099911677, 7.469736582, 7.469736582, 7.469736582, 7.469736582, 6.424614304,
        6.424614304, 6.424614304, 6.424614304, 4.863785398),
    # varuna_simulator.py, gpt_3_6_7b_simulate_step_delta
    ("varuna", "gpt3-6.7b"): (
        5.240635953, 5.240635953, 5.240635953, 5.096885803, 5.096885803, 5.096885803,
        5.096885803, 4.503390788, 4.503390788, 4.503390788, 4.503390788, 3.953767179,
        3.953767179, 3.953767179, 3.953767179, 3.016421755),
    # varuna_simulator.py, bertLarge_simulate_step_delta
    ("varuna", "bert-large"): (
        343.1328746, 331.6951121, 329.5800552, 326.5438348, 306.0386227, 298.3794267,
        290.038974, 280.0744467, 267.8972968, 255.720147, 243.5429971, 232.9541711,
        222.3653452, 211.7765192, 202.5688445, 193.3611697),
    # oobleck_simulator.py, gpt_3_2_7b_simulate_step_delta
    ("oobleck", "gpt3-2.7b"): (
        9.214308445, 8.90716483, 8.600021215, 8.2928776, 7.985733985, 7.627088295,
        7.512265791, 7.435358417, 7.052828884, 6.704817778, 6.797312924, 6.105000318,
        6.115063714, 5.630658991, 5.630621249, 5.130663366),
    # oobleck_simulator.py, gpt_3_6_7b_simulate_step_delta (0 at 15 nodes: no template fits)
    ("oobleck", "gpt3-6.7b"): (
        5.507784136, 5.324191332, 5.140598527, 4.957005722, 4.773412918, 4.808826127,
        4.329925297, 4.185194343, 3.947198754, 4.010855553, 4.15443025, 3.71233106,
        3.593275995, 3.283996229, 3.530908551, 0.0),
    # oobleck_simulator.py, bertLarge_simulate_step_delta
    ("oobleck", "bert-large"): (
        368.2457947, 362.2151579, 328.35419, 327.7784909, 329.1392983, 307.2134406,
        304.4540075, 278.5264442, 285.8442276, 260.3144683, 261.6788898, 243.5568988,
        228.0545262, 209.2082907, 214.8045205, 192.304776),
    # bamboo_simulator.py, bertLarge_simulate_step_delta
    ("bamboo", "bert-large"): (
        119.2546584, 99.37888199, 99.37888199, 99.37888199, 99.37888199, 99.37888199,
        99.37888199, 74.53416149, 74.53416149, 74.53416149, 74.53416149, 74.53416149,
        74.53416149, 49.68944099, 49.68944099, 49.68944099),
    # bamboo_simulator.py: GPT-3 tables are "# OOM" (all zero)
    ("bamboo", "gpt3-2.7b"): None,
    ("bamboo", "gpt3-6.7b"): None,
}

# Oobleck/Varuna average throughput the artifact reports on its own traces
# (tools/simulator/traces/*.csv = ../shared/data/failures/spot_*.csv), measured by running the
# artifact (eval_tput_vs_freq.py's loop, seed None, steps_per_run 200000, time_hard_stop);
# the targets. The 6.7B 10-minute cell is the paper's "up to 13.9x".
ARTIFACT_OOBLECK_OVER_VARUNA = {
    ("gpt3-2.7b", "6h"): 1.00, ("gpt3-2.7b", "1h"): 1.11, ("gpt3-2.7b", "10m"): 3.92,
    ("gpt3-2.7b", "p3"): 9.60, ("gpt3-2.7b", "g4dn"): 4.97, ("gpt3-6.7b", "10m"): 13.9,
}


# Average samples/s (the artifact's `Result.average_performance`) of its Varuna and Oobleck on its
# own traces, from running the artifact unmodified as eval_tput_vs_freq.py does (seed None,
# start_hour 0, steps_per_run 200000, time_hard_stop True; Varuna no_small_model_fallback False).
# Trace names: traces/{6h,1h,10m}.csv, traces/p3-trace.csv, traces/g4dn-trace.csv.
ARTIFACT_AVERAGE_SAMPLES_PER_S = {
    ("varuna", "gpt3-2.7b", "6h"): 7.2704, ("oobleck", "gpt3-2.7b", "6h"): 7.2902,
    ("varuna", "gpt3-2.7b", "1h"): 6.5361, ("oobleck", "gpt3-2.7b", "1h"): 7.2286,
    ("varuna", "gpt3-2.7b", "10m"): 1.7568, ("oobleck", "gpt3-2.7b", "10m"): 6.8899,
    ("varuna", "gpt3-2.7b", "p3"): 0.5211, ("oobleck", "gpt3-2.7b", "p3"): 5.0051,
    ("varuna", "gpt3-2.7b", "g4dn"): 0.5831, ("oobleck", "gpt3-2.7b", "g4dn"): 2.8994,
    ("varuna", "gpt3-6.7b", "10m"): 0.2551, ("oobleck", "gpt3-6.7b", "10m"): 3.5461,
    ("varuna", "bert-large", "6h"): 260.11, ("oobleck", "bert-large", "6h"): 287.10,
    ("varuna", "bert-large", "1h"): 246.03, ("oobleck", "bert-large", "1h"): 286.28,
    ("varuna", "bert-large", "10m"): 173.52, ("oobleck", "bert-large", "10m"): 282.11,
    ("varuna", "bert-large", "p3"): 116.12, ("oobleck", "bert-large", "p3"): 204.17,
    ("varuna", "bert-large", "g4dn"): 79.10, ("oobleck", "bert-large", "g4dn"): 113.30,
}


def artifact_throughput(system: str, model: str, ready_nodes: int) -> float | None:
    """Measured samples/s of `system` training `model` on `ready_nodes` nodes, from the artifact.

    None: the artifact has no table for this pair (a model it did not measure, or Bamboo on
    GPT-3, which it reports as out of memory)."""
    key = (system, model)
    if key not in ARTIFACT_THROUGHPUT:
        return None
    table = ARTIFACT_THROUGHPUT[key]
    if table is None:
        return None
    n = min(max(int(ready_nodes), TABLE_MIN_NODES), TABLE_MAX_NODES)
    return float(table[TABLE_MAX_NODES - n])


def has_artifact_table(system: str, model: str) -> bool:
    return ARTIFACT_THROUGHPUT.get((system, model)) is not None
