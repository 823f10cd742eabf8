"""Training workloads: DNN jobs (Zeus/Chase) and pipeline-parallel LLM training (Perseus).

A DNN job is (dataset, network, batch size, optimizer) with a time per epoch and power per GPU
power limit (fitted models, `hwmodels.gpu_energy`) and the epochs it needs to reach its target
metric (`zeus_epochs_to_target.csv` where available, else the committed summary below).

A pipeline job is S stages x M microbatches scheduled 1F1B: stage s runs min(S-s-1, M) warm-up
forwards, then alternates one forward and one backward, then drains the backwards. The
iteration is a DAG of computations (`pipeline_1f1b`) that `sim/training.py` and the Perseus
policy share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orrery.core.errors import OrreryInputError, TraceFormatError, require_file

# Epochs to the target metric, median over the public runs (zeus_epochs_to_target.csv, the
# target each Zeus experiment used), per (dataset, network, batch size). Embedded so that shipped
# studies run without the data folder; `epochs_to_target_table` recomputes it from the CSV.
DEFAULT_TARGETS = {"cifar100": 0.6, "imagenet": 0.65, "librispeech": 40.0, "movielens-1m": 0.41,
                   "sentiment140": 0.84, "squad": 84.0}


# Output of `epochs_to_target_table(load_epochs_to_target("shared:gpu/zeus_epochs_to_target.csv"))`,
# committed (tests/sim/test_training.py checks it against the CSV). A missing batch size never
# reached the target.
EPOCHS_TO_TARGET: dict[str, dict[int, float]] = {'cifar100/shufflenetv2': {8: 40.0,
                           16: 19.0,
                           32: 17.0,
                           64: 18.0,
                           128: 19.0,
                           256: 30.0,
                           512: 42.0,
                           1024: 77.0,
                           2048: 191.0,
                           4096: 477.0},
 'imagenet/resnet50': {128: 32.0, 192: 22.0, 256: 21.0, 360: 21.0, 512: 24.0, 1024: 32.0},
 'librispeech/deepspeech2': {2: 7.0,
                             4: 6.5,
                             8: 6.5,
                             12: 6.0,
                             16: 7.0,
                             24: 7.0,
                             32: 7.0,
                             48: 7.0,
                             56: 8.0,
                             64: 8.0,
                             72: 8.0,
                             96: 8.0,
                             128: 9.0,
                             156: 9.0,
                             192: 10.0,
                             256: 13.0},
 'movielens-1m/ncf': {32: 34.0,
                      64: 10.0,
                      128: 4.0,
                      256: 4.0,
                      512: 4.0,
                      1024: 4.0,
                      2048: 4.0,
                      4096: 5.0,
                      8192: 4.0,
                      16384: 4.0},
 'sentiment140/bert_base_uncased': {8: 3.0, 16: 3.0, 32: 3.0, 40: 3.0, 48: 3.0, 56: 3.0, 64: 3.0, 128: 3.0},
 'squad/bert_base_uncased': {4: 4.0, 8: 4.0, 12: 4.0, 16: 4.0, 24: 4.0, 32: 4.0, 48: 4.0, 56: 4.0}}

# Training-set sizes (samples) to turn epochs into steps.
DATASET_SIZES = {"cifar100": 50_000, "imagenet": 1_281_167, "librispeech": 281_241,
                 "movielens-1m": 994_169, "sentiment140": 1_600_000, "squad": 87_599}
DEFAULT_EPOCHS = 10.0  # for a workload with no epochs-to-target entry and no explicit epochs


def epochs_to_target(dataset: str, network: str, batch_size: int) -> float | None:
    """Epochs this (dataset, network, batch size) needs to reach its target; None: never."""
    return EPOCHS_TO_TARGET.get(f"{dataset}/{network}", {}).get(int(batch_size))


@dataclass(frozen=True)
class Computation:
    stage: int
    kind: str  # "forward" | "backward"
    microbatch: int


def pipeline_1f1b(n_stages: int, n_microbatches: int) -> tuple[list[Computation], list[tuple[int, ...]]]:
    """The 1F1B iteration DAG: computations and each one's predecessors (indices).

    Edges: the previous computation on the same stage (a GPU runs one thing at a time);
    F(s, m) after F(s-1, m) (activations); B(s, m) after B(s+1, m) (gradients); B(S-1, m)
    after F(S-1, m). Communication time is not modelled (Perseus' profile includes none).
    """
    if n_stages < 1 or n_microbatches < 1:
        raise OrreryInputError(f"need >= 1 stage and microbatch, got {n_stages} x {n_microbatches}")
    S, M = n_stages, n_microbatches
    per_stage: list[list[Computation]] = []
    for s in range(S):
        warm = min(S - s - 1, M)
        seq = [Computation(s, "forward", m) for m in range(warm)]
        for j in range(M - warm):
            seq.append(Computation(s, "forward", warm + j))
            seq.append(Computation(s, "backward", j))
        seq += [Computation(s, "backward", m) for m in range(M - warm, M)]
        per_stage.append(seq)
    comps = [c for seq in per_stage for c in seq]
    index = {c: i for i, c in enumerate(comps)}
    preds: list[list[int]] = [[] for _ in comps]
    for seq in per_stage:
        for a, b in zip(seq, seq[1:], strict=False):
            preds[index[b]].append(index[a])
    for c in comps:
        i = index[c]
        if c.kind == "forward" and c.stage > 0:
            preds[i].append(index[Computation(c.stage - 1, "forward", c.microbatch)])
        if c.kind == "backward":
            if c.stage < S - 1:
                preds[i].append(index[Computation(c.stage + 1, "backward", c.microbatch)])
            else:
                preds[i].append(index[Computation(c.stage, "forward", c.microbatch)])
    return comps, [tuple(sorted(set(p))) for p in preds]


EPOCH_COLUMNS = ("dataset", "network", "batch_size", "optimizer", "learning_rate", "run",
                 "target_metric", "target_epoch")


def load_epochs_to_target(path: str | Path) -> pd.DataFrame:
    p = require_file(path, "epochs-to-target table")
    df = pd.read_csv(p)
    missing = [c for c in EPOCH_COLUMNS if c not in df.columns]
    if missing:
        raise TraceFormatError(p, f"missing columns {missing}", line=1, expected=", ".join(EPOCH_COLUMNS))
    return df


def epochs_to_target_table(df: pd.DataFrame, targets: dict[str, float] = DEFAULT_TARGETS) -> dict[str, dict[int, float]]:
    """Median epochs to each dataset's target per (dataset/network, batch size).

    A batch size whose runs never reach the target is absent: that is the "does not converge"
    signal Zeus' pruning uses. Runs are first reduced to their best learning rate/optimizer.
    """
    out: dict[str, dict[int, float]] = {}
    for (ds, net), g in df.groupby(["dataset", "network"]):
        target = targets.get(ds)
        if target is None:
            continue
        g = g[np.isclose(g["target_metric"].astype(float), target)]
        per_bs = {}
        for bs, gb in g.groupby("batch_size"):
            best = gb.groupby(["optimizer", "learning_rate"])["target_epoch"].median().min()
            if np.isfinite(best):
                per_bs[int(bs)] = float(best)
        out[f"{ds}/{net}"] = per_bs
    return out
