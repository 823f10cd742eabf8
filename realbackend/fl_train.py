"""Real local training, evaluation and soft aggregation for multi-model FL (torch, CPU by default).

`aggregate` is FedAvg generalised to several models that share layers. For model m and one of
its parameters k, let A_n be the sample-weighted mean of the weights that the clients of model
n sent back for k (only models n whose k has the same shape), N_n their sample count, and
s(m, n) the policy's share weight (s(m, m) = 1). The new weight is the convex combination

    W'_m[k] = (N_m A_m + sum_{n != m} s(m,n) N_n A_n + sum_{n != m} (1 - s(m,n)) N_n W_m[k])
              / (N_m + sum_{n != m} N_n)

i.e. other models' clients pull the common layers of m towards their weights with strength s,
and the rest of their mass keeps m's current weights. With one model it is plain FedAvg; with
s = 0 models train independently. A parameter that no client touched keeps its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from orrery.policies.fedtrans.base import ArchSpec
from orrery.realbackend import fedtrans_models as fm
from orrery.realbackend.fedtrans_models import Params, cell_of, forward


@dataclass
class ClientUpdate:
    model_id: int
    params: Params
    n_samples: int
    loss_before: float  # loss of the received global model on the client's training data


def local_train(arch: ArchSpec, params: Params, x: np.ndarray, y: np.ndarray, *, epochs: int,
                batch_size: int, lr: float, gen: torch.Generator, momentum: float = 0.9,
                weight_decay: float = 0.0) -> ClientUpdate:
    """SGD on one client's data starting from the global weights; returns the new weights."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    with torch.no_grad():
        loss0 = float(F.cross_entropy(forward(arch, p, xt), yt)) if len(yt) else 0.0
    opt = torch.optim.SGD(list(p.values()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = len(yt)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(forward(arch, p, xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return ClientUpdate(-1, {k: v.detach() for k, v in p.items()}, n, loss0)


@torch.no_grad()
def predict(arch: ArchSpec, params: Params, x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return forward(arch, params, xt).argmax(dim=1).numpy()


def aggregation_weights(model_id: int, key: str, shape: tuple[int, ...], updates: Sequence[ClientUpdate],
                        share: dict[tuple[int, int], float]) -> tuple[np.ndarray, float]:
    """Coefficients of each update and of the current weight for (model, parameter): >= 0, sum 1
    (all zero and 1.0 for the current weight when no update has this parameter)."""
    coef = np.zeros(len(updates))
    keep = 0.0
    for i, u in enumerate(updates):
        t = u.params.get(key)
        if t is None or tuple(t.shape) != tuple(shape) or u.n_samples <= 0:
            continue
        s = 1.0 if u.model_id == model_id else float(share.get((model_id, u.model_id), 0.0))
        coef[i] = s * u.n_samples
        keep += (1.0 - s) * u.n_samples
    total = coef.sum() + keep
    if total <= 0:
        return coef, 1.0
    return coef / total, keep / total


def aggregate(models: dict[int, Params], updates: Sequence[ClientUpdate],
              share: dict[tuple[int, int], float]) -> dict[int, Params]:
    """Soft aggregation of every model (see module doc); shapes are preserved."""
    out: dict[int, Params] = {}
    for mid, params in models.items():
        new: Params = {}
        for key, cur in params.items():
            coef, keep = aggregation_weights(mid, key, tuple(cur.shape), updates, share)
            if keep >= 1.0:
                new[key] = cur.clone()
                continue
            acc = cur * keep
            for c, u in zip(coef, updates, strict=True):
                if c > 0:
                    acc = acc + float(c) * u.params[key]
            new[key] = acc
        out[mid] = new
    return out


def cell_update_ratio(arch: ArchSpec, before: Params, after: Params) -> list[float]:
    """Per cell: ||after - before|| / ||before|| over the cell's weights (FedTrans' bottleneck signal)."""
    num = np.zeros(len(arch.cells))
    den = np.zeros(len(arch.cells))
    for k, w0 in before.items():
        c = cell_of(k)
        if c is None or k not in after:
            continue
        num[c] += float(((after[k] - w0) ** 2).sum())
        den[c] += float((w0 ** 2).sum())
    return [float(np.sqrt(a) / (np.sqrt(b) + 1e-12)) for a, b in zip(num, den, strict=True)]


class TorchTrainer:
    """The torch `LocalTrainer` of the multi-model FL emulation (`sim.fedtrans`).

    One instance per run: it holds the generator that initialises and widens models (seeded by
    the simulator) and pins torch to one thread (determinism, and fairness when runs share cores).
    """

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.gen = torch.Generator()

    def seed(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def init_params(self, arch: ArchSpec) -> Params:
        return fm.init_params(arch, self.gen)

    def widen(self, arch: ArchSpec, params: Params, cell: int, width: int, *, spread: float) -> tuple[ArchSpec, Params]:
        return fm.widen(arch, params, cell, width, self.gen, spread=spread)

    def deepen(self, arch: ArchSpec, params: Params, cell: int) -> tuple[ArchSpec, Params]:
        return fm.deepen(arch, params, cell)

    def local_train(self, arch: ArchSpec, params: Params, x: np.ndarray, y: np.ndarray, *, epochs: int,
                    batch_size: int, lr: float, momentum: float, seed: int) -> ClientUpdate:
        gen = torch.Generator().manual_seed(seed)
        return local_train(arch, params, x, y, epochs=epochs, batch_size=batch_size, lr=lr, gen=gen,
                           momentum=momentum)

    def aggregate(self, models: dict[int, Params], updates: Sequence[ClientUpdate],
                  share: dict[tuple[int, int], float]) -> dict[int, Params]:
        return aggregate(models, updates, share)

    def cell_update_ratio(self, arch: ArchSpec, before: Params, after: Params) -> list[float]:
        return cell_update_ratio(arch, before, after)

    def predict(self, arch: ArchSpec, params: Params, x: np.ndarray) -> np.ndarray:
        return predict(arch, params, x)
