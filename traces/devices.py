"""Device populations and job eligibility.

A population is a set of numpy arrays (hardware from `hwmodels.edge`, a bitmask of the 4
AI-Benchmark job requirements), never one object per device, so a million phones cost tens of
megabytes. Eligibility of a job is a *requirement* string:

- `"any"`: every device;
- `"req1"` .. `"req4"`: the nested requirement sets of the Venn evaluation
  (`aibenchmark_eligibility_4req.csv`: req1 contains req2 and req3, both contain req4);
- a predicate on device attributes, clauses joined by `and`: `"ram_gb >= 6 and android_os >= 11"`;
  clauses may mix with `reqN` (`"req2 and cpu_score > 5"`). Attributes: see
  `DeviceHardware.attributes()`.

Programmatic users may also pass a callable `attrs -> bool array`.
"""

from __future__ import annotations

import csv
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orrery.core.errors import OrreryInputError, TraceFormatError, require_file
from orrery.hwmodels.edge import (
    DEFAULT_MODEL,
    DeviceHardware,
    EdgePopulationModel,
    hardware_from_specs,
    load_device_specs,
    sample_hardware,
)

N_REQS = 4
# Committed fit of aibenchmark_eligibility_4req.csv (959 devices): fraction of devices per
# combination of met requirements, as a bitmask (bit k-1 = requirement k).
DEFAULT_ELIGIBILITY: dict[int, float] = {
    0b0000: 35 / 959,
    0b0001: 305 / 959,
    0b0011: 78 / 959,
    0b0101: 124 / 959,
    0b1111: 417 / 959,
}

_OPS: dict[str, Callable] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Population:
    """A device population: hardware arrays and the requirement bitmask per device."""

    hw: DeviceHardware
    req_mask: np.ndarray  # uint8, bit k-1 set when the device meets requirement k

    def __len__(self) -> int:
        return len(self.req_mask)

    def attributes(self) -> dict[str, np.ndarray]:
        attrs = self.hw.attributes()
        for k in range(1, N_REQS + 1):
            attrs[f"req{k}"] = (self.req_mask >> (k - 1)) & 1 == 1
        return attrs


Requirement = str | Callable[[dict[str, np.ndarray]], np.ndarray]


def parse_requirement(text: str) -> list[tuple[str, str, float] | str]:
    """Parse a requirement string into clauses; raise `OrreryInputError` on bad syntax."""
    t = text.strip()
    if not t:
        raise OrreryInputError("empty requirement (expected 'any', 'req1'..'req4' or 'attr >= value')")
    if t == "any":
        return []
    out: list[tuple[str, str, float] | str] = []
    for part in re.split(r"\s+and\s+", t):
        p = part.strip()
        if re.fullmatch(r"req[1-4]", p):
            out.append(p)
            continue
        m = _CLAUSE.match(p)
        if not m:
            raise OrreryInputError(
                f"bad requirement clause {p!r} in {text!r}: expected 'req1'..'req4' or "
                f"'<attribute> <op> <number>' with op in {', '.join(_OPS)}"
            )
        try:
            value = float(m.group(3))
        except ValueError:
            raise OrreryInputError(f"bad number {m.group(3)!r} in requirement {text!r}") from None
        out.append((m.group(1), m.group(2), value))
    return out


def check_requirement(text: str) -> str:
    """Validate syntax and attribute names (for scenario validation)."""
    known = set(Population(sample_hardware(1, np.random.default_rng(0)), np.zeros(1, np.uint8)).attributes())
    for c in parse_requirement(text):
        if isinstance(c, tuple) and c[0] not in known:
            raise OrreryInputError(
                f"requirement {text!r}: unknown device attribute {c[0]!r}; known: {', '.join(sorted(known))}"
            )
    return text


def eligible_mask(pop: Population, requirement: Requirement) -> np.ndarray:
    """Boolean array: which devices meet `requirement`."""
    attrs = pop.attributes()
    if callable(requirement):
        m = np.asarray(requirement(attrs), dtype=bool)
        if m.shape != (len(pop),):
            raise OrreryInputError(f"requirement predicate returned shape {m.shape}, expected ({len(pop)},)")
        return m
    mask = np.ones(len(pop), dtype=bool)
    for c in parse_requirement(requirement):
        if isinstance(c, str):
            mask &= attrs[c]
        else:
            name, op, value = c
            if name not in attrs:
                raise OrreryInputError(
                    f"requirement {requirement!r}: unknown device attribute {name!r}; "
                    f"known: {', '.join(sorted(attrs))}"
                )
            mask &= _OPS[op](attrs[name], value)
    return mask


def sample_req_masks(n: int, rng: np.random.Generator,
                     fractions: dict[int, float] | None = None) -> np.ndarray:
    fr = fractions or DEFAULT_ELIGIBILITY
    keys = np.asarray(sorted(fr), dtype=np.uint8)
    p = np.asarray([fr[int(k)] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), size=n, p=p / p.sum())]


def load_eligibility(path: str | Path) -> np.ndarray:
    """Read `device_index,eligible_requirements` (e.g. `3,1;2;3;4`, empty = none) -> bitmasks."""
    p = require_file(path, "eligibility file")
    masks: list[int] = []
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header != ["device_index", "eligible_requirements"]:
            raise TraceFormatError(p, f"bad header {header}", line=1,
                                   expected="device_index,eligible_requirements")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise TraceFormatError(p, f"{len(row)} fields", line=lineno, expected="2 fields")
            try:
                int(row[0])
            except ValueError:
                raise TraceFormatError(p, f"not an integer: {row[0]!r}", line=lineno,
                                       column="device_index", expected="an integer") from None
            m = 0
            for tok in filter(None, (x.strip() for x in row[1].split(";"))):
                if tok not in {"1", "2", "3", "4"}:
                    raise TraceFormatError(p, f"unknown requirement {tok!r}", line=lineno,
                                           column="eligible_requirements",
                                           expected="requirement numbers 1-4 separated by ';'")
                m |= 1 << (int(tok) - 1)
            masks.append(m)
    if not masks:
        raise TraceFormatError(p, "no data rows", expected="at least one device")
    return np.asarray(masks, dtype=np.uint8)


def fit_eligibility(masks: np.ndarray) -> dict[int, float]:
    keys, counts = np.unique(masks, return_counts=True)
    return {int(k): float(c / counts.sum()) for k, c in zip(keys, counts, strict=True)}


def make_population(n: int, rng: np.random.Generator, *, model: EdgePopulationModel = DEFAULT_MODEL,
                    specs_path: str | Path | None = None,
                    eligibility_path: str | Path | None = None) -> Population:
    """Draw `n` devices: hardware from the model (or resampled from a spec file), eligibility
    from the committed fractions (or from an eligibility file's fractions)."""
    if specs_path is not None:
        hw = hardware_from_specs(load_device_specs(specs_path), n, rng, model)
    else:
        hw = sample_hardware(n, rng, model)
    fractions = fit_eligibility(load_eligibility(eligibility_path)) if eligibility_path else None
    return Population(hw=hw, req_mask=sample_req_masks(n, rng, fractions))
