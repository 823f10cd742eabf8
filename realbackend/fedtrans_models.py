"""Transformable torch models built from cells, and FedTrans' function-preserving transformations.

A model is an `ArchSpec` (`policies.fedtrans.base`) plus a flat dict of named tensors:
`c{cell}.l{layer}.w/.b` for hidden layers and `head.w/.b`. Keeping parameters as a dict (not a
`nn.Module`) makes the transformations and the shared-weight aggregation plain tensor surgery.
Layer names are stable across transformations: a layer that a transformation leaves alone
keeps its name and shape, which is exactly how soft aggregation finds common weights.

- `widen(cell, width)`: every layer of the cell grows to `width` units (Net2WiderNet). New unit
  j copies an existing unit g(j) (incoming weights and bias); the consumer of the cell's output
  (next layer's input columns, or the head's) splits each original unit's outgoing weights
  among its copies with random positive ratios summing to 1. The function is unchanged (ReLU
  of copies equals ReLU of the original), while the unequal split breaks the symmetry so the
  copies learn different features.
- `deepen(cell)`: append to the cell a layer initialised to the identity (zero bias; for convs
  a centred 1 in a 3x3 kernel). Its input is post-ReLU (>= 0), so ReLU(I x) = x exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from orrery.policies.fedtrans.base import ArchSpec

Params = dict[str, torch.Tensor]


def layer_names(arch: ArchSpec) -> list[str]:
    return [f"c{c}.l{li}" for c, li, *_ in arch.layers()]


def init_params(arch: ArchSpec, gen: torch.Generator) -> Params:
    """He-uniform initialisation (deterministic given `gen`)."""
    k = 3 if arch.kind == "cnn" else 1
    p: Params = {}
    for c, li, fi, fo, _ in arch.layers():
        bound = math.sqrt(6.0 / (fi * k * k))
        shape = (fo, fi, k, k) if arch.kind == "cnn" else (fo, fi)
        p[f"c{c}.l{li}.w"] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        p[f"c{c}.l{li}.b"] = torch.zeros(fo)
    w = arch.cells[-1][0]
    bound = math.sqrt(1.0 / w)
    p["head.w"] = (torch.rand((arch.n_classes, w), generator=gen) * 2 - 1) * bound
    p["head.b"] = torch.zeros(arch.n_classes)
    return p


def forward(arch: ArchSpec, p: Params, x: torch.Tensor) -> torch.Tensor:
    """Logits for a batch of flat inputs `x` (n, prod(in_shape))."""
    if arch.kind == "mlp":
        h = x.reshape(x.shape[0], -1)
        for c, (_, depth) in enumerate(arch.cells):
            for li in range(depth):
                h = F.relu(F.linear(h, p[f"c{c}.l{li}.w"], p[f"c{c}.l{li}.b"]))
    else:
        h = x.reshape(x.shape[0], *arch.in_shape)
        for c, (_, depth) in enumerate(arch.cells):
            for li in range(depth):
                h = F.relu(F.conv2d(h, p[f"c{c}.l{li}.w"], p[f"c{c}.l{li}.b"], padding=1))
            if c < len(arch.cells) - 1 and h.shape[-1] >= 2 and h.shape[-2] >= 2:
                h = F.max_pool2d(h, 2)
        h = h.mean(dim=(2, 3))
    return F.linear(h, p["head.w"], p["head.b"])


def n_params(p: Params) -> int:
    return sum(t.numel() for t in p.values())


def _consumer(arch: ArchSpec, cell: int, layer: int) -> str:
    """Name of the layer that reads the output of (cell, layer)."""
    if layer + 1 < arch.cells[cell][1]:
        return f"c{cell}.l{layer + 1}"
    if cell + 1 < len(arch.cells):
        return f"c{cell + 1}.l0"
    return "head"


def _widen_layer(p: Params, name: str, consumer: str, width: int, gen: torch.Generator, spread: float) -> None:
    w, b = p[name + ".w"], p[name + ".b"]
    n = w.shape[0]
    if width <= n:
        raise ValueError(f"widen {name}: {width} units is not more than {n}")
    g = torch.cat([torch.arange(n), torch.randint(0, n, (width - n,), generator=gen)])
    p[name + ".w"] = w[g].clone()
    p[name + ".b"] = b[g].clone()
    # split each original unit's outgoing weights among its copies with random ratios that sum
    # to 1 for every (consumer output, original unit) pair: the function is unchanged, and as the
    # ratios differ across consumer outputs the copies get gradients of different directions
    cw = p[consumer + ".w"]
    n_out = cw.shape[0]
    count = torch.zeros(n).index_add_(0, g, torch.ones(width))
    eps = spread * torch.randn((n_out, width), generator=gen)
    eps = eps - (torch.zeros(n_out, n).index_add_(1, g, eps) / count)[:, g]  # zero sum per group
    ratio = 1.0 / count[g] + eps * (count[g] > 1)
    shape = (n_out, width) + (1,) * (cw.dim() - 2)
    p[consumer + ".w"] = (cw[:, g] * ratio.reshape(shape)).contiguous()


def widen(arch: ArchSpec, p: Params, cell: int, width: int, gen: torch.Generator,
          spread: float = 0.5) -> tuple[ArchSpec, Params]:
    """Function-preserving widening of every layer of `cell` to `width` units. A unit with k copies
    gives each copy the ratio 1/k + e of its outgoing weight to every consumer output, e Gaussian
    with std `spread`, centred to sum to 0 over the copies (0: equal split, no symmetry breaking)."""
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0, got {spread}")
    if not 0 <= cell < len(arch.cells):
        raise ValueError(f"cell {cell} outside 0..{len(arch.cells) - 1}")
    q = {k: v.detach().clone() for k, v in p.items()}
    for li in range(arch.cells[cell][1]):
        # the cell's layers widen in order: layer li's input already has `width` columns
        _widen_layer(q, f"c{cell}.l{li}", _consumer(arch, cell, li), width, gen, spread)
    return arch.widen(cell, width), q


def deepen(arch: ArchSpec, p: Params, cell: int) -> tuple[ArchSpec, Params]:
    """Function-preserving deepening: an identity layer appended to `cell`."""
    if not 0 <= cell < len(arch.cells):
        raise ValueError(f"cell {cell} outside 0..{len(arch.cells) - 1}")
    q = {k: v.detach().clone() for k, v in p.items()}
    w, d = arch.cells[cell]
    if arch.kind == "cnn":
        k = torch.zeros(w, w, 3, 3)
        k[torch.arange(w), torch.arange(w), 1, 1] = 1.0
    else:
        k = torch.eye(w)
    q[f"c{cell}.l{d}.w"] = k
    q[f"c{cell}.l{d}.b"] = torch.zeros(w)
    return arch.deepen(cell), q


def cell_of(name: str) -> int | None:
    """Cell index of a parameter name (None for the head)."""
    if name.startswith("c"):
        return int(name[1:name.index(".")])
    return None
