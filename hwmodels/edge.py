"""Edge (phone) hardware: compute speed, RAM, OS, network bandwidth of an FL device population.

Why a model and not the file: studies must run with no download, and a million devices must
be drawn in a second. The default `EdgePopulationModel` below is fitted to the AI-Benchmark
table (`../shared/data/fl/aibenchmark_device_specs.csv`, 952 phone models, checksum in
`FIT_SOURCE`): marginal quantiles of each attribute plus a one-factor Gaussian copula (one
latent "phone generation" factor explains the strong rank correlations: newer phones are
faster, have more RAM and a newer Android). `fit_population_model()` reproduces the committed
numbers from the file (a test checks it), `fit_error()` reports how far samples are off.

Units: one *work unit* is one inference of the AI-Benchmark reference model; a device's
`s_per_unit` is its measured inference time (`speed_ms` / 1000). A training sample costs
about 3 units (forward + backward). Network bandwidth is not in the data: the default
(log-normal, median 20 Mbit/s down, 5 Mbit/s up) is an assumption in the range of published
mobile measurements, stated here so a study can override it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from orrery.core.errors import TraceFormatError, require_file
from orrery.core.files import sha256_file

SPEC_COLUMNS = ("device_id", "device", "cpu_score", "ram_gb", "fp16_mem_score", "android_os", "speed_ms")
_NUMERIC = ("cpu_score", "ram_gb", "fp16_mem_score", "android_os", "speed_ms")
QUANTILE_LEVELS = tuple(np.linspace(0.0, 1.0, 21).round(4).tolist())

FIT_SOURCE = {
    "file": "shared:fl/aibenchmark_device_specs.csv",
    "sha256_16": "ddcd8552fe3b4675",
    "rows": 952,
}


@dataclass(frozen=True)
class DeviceSpecs:
    """A device-spec table as arrays (one entry per phone model)."""

    name: np.ndarray
    cpu_score: np.ndarray
    ram_gb: np.ndarray
    android_os: np.ndarray
    speed_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.speed_ms)


def load_device_specs(path: str | Path) -> DeviceSpecs:
    """Read an AI-Benchmark style CSV; malformed content raises `TraceFormatError`."""
    p = require_file(path, "device spec file")
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TraceFormatError(p, "empty file", line=1, expected="a header " + ",".join(SPEC_COLUMNS))
        header = [h.strip() for h in header]
        missing = [c for c in ("cpu_score", "ram_gb", "android_os", "speed_ms") if c not in header]
        if missing:
            raise TraceFormatError(p, f"missing column(s) {missing}", line=1,
                                   expected="a header with " + ",".join(SPEC_COLUMNS))
        idx = {c: header.index(c) for c in header}
        cols: dict[str, list[float]] = {c: [] for c in _NUMERIC if c in idx}
        names: list[str] = []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) != len(header):
                raise TraceFormatError(p, f"{len(row)} fields, header has {len(header)}", line=lineno)
            for c in cols:
                raw = row[idx[c]].strip()
                try:
                    v = float(raw)
                except ValueError:
                    raise TraceFormatError(p, f"not a number: {raw!r}", line=lineno, column=c,
                                           expected="a number") from None
                if not np.isfinite(v) or v < 0 or (c == "speed_ms" and v <= 0):
                    raise TraceFormatError(p, f"bad value {raw!r}", line=lineno, column=c,
                                           expected="a finite positive number")
                cols[c].append(v)
            names.append(row[idx["device"]] if "device" in idx else str(lineno - 2))
    if not names:
        raise TraceFormatError(p, "no data rows", expected="at least one device")
    return DeviceSpecs(
        name=np.asarray(names, dtype=object),
        cpu_score=np.asarray(cols["cpu_score"]),
        ram_gb=np.asarray(cols["ram_gb"]),
        android_os=np.asarray(cols["android_os"]),
        speed_ms=np.asarray(cols["speed_ms"]),
    )


@dataclass(frozen=True)
class EdgePopulationModel:
    """Marginal quantiles + one-factor Gaussian copula loadings (see module doc)."""

    speed_ms_q: tuple[float, ...]
    cpu_score_q: tuple[float, ...]
    ram_gb_values: tuple[float, ...]
    ram_gb_probs: tuple[float, ...]
    os_major_values: tuple[float, ...]
    os_major_probs: tuple[float, ...]
    # loadings on the latent factor: speed (negative: faster = newer), cpu, ram, os
    loadings: tuple[float, float, float, float]
    bw_down_median_bytes_s: float = 20e6 / 8
    bw_up_median_bytes_s: float = 5e6 / 8
    bw_sigma: float = 0.8
    source: dict = field(default_factory=lambda: dict(FIT_SOURCE))


# Committed fit of aibenchmark_device_specs.csv (regenerate with fit_population_model()).
DEFAULT_MODEL = EdgePopulationModel(
    speed_ms_q=(9.5, 19.0, 23.0, 26.0, 28.0, 29.0, 35.0, 41.0, 51.0, 55.0, 63.0, 70.0, 79.6,
                89.0, 98.0, 109.25, 121.0, 136.0, 155.0, 190.0, 1495.0),
    cpu_score_q=(0.06, 1.7, 2.0, 2.3, 2.62, 3.1, 4.0, 4.3, 4.7, 5.095, 6.1, 6.6, 7.4, 7.815, 9.3,
                 10.3, 11.8, 12.8, 14.6, 16.6, 24.8),
    ram_gb_values=(0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0),
    ram_gb_probs=(0.0011, 0.0137, 0.0074, 0.0725, 0.0861, 0.2143, 0.1901, 0.2815, 0.1155, 0.0179),
    os_major_values=(5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0),
    os_major_probs=(0.0252, 0.0315, 0.0294, 0.0305, 0.0567, 0.1103, 0.2458, 0.2668, 0.2006,
                    0.0021, 0.0011),
    loadings=(-0.918, 0.958, 0.923, 0.853),
)


def _normal_scores(x: np.ndarray) -> np.ndarray:
    r = stats.rankdata(x) / (len(x) + 1)
    return stats.norm.ppf(r)


def fit_population_model(specs: DeviceSpecs) -> EdgePopulationModel:
    """Fit marginals and the one-factor copula to a spec table (first principal factor)."""
    q = np.asarray(QUANTILE_LEVELS)
    ram_v, ram_c = np.unique(specs.ram_gb, return_counts=True)
    os_major = np.floor(specs.android_os)
    os_v, os_c = np.unique(os_major, return_counts=True)
    z = np.vstack([_normal_scores(a) for a in (specs.speed_ms, specs.cpu_score, specs.ram_gb, os_major)])
    corr = np.corrcoef(z)
    w, v = np.linalg.eigh(corr)
    lead = v[:, -1] * np.sqrt(w[-1])
    if lead[1] < 0:
        lead = -lead
    lead = np.clip(lead, -0.999, 0.999)
    return EdgePopulationModel(
        speed_ms_q=tuple(np.round(np.quantile(specs.speed_ms, q), 3).tolist()),
        cpu_score_q=tuple(np.round(np.quantile(specs.cpu_score, q), 3).tolist()),
        ram_gb_values=tuple(ram_v.tolist()),
        ram_gb_probs=tuple(np.round(ram_c / ram_c.sum(), 4).tolist()),
        os_major_values=tuple(os_v.tolist()),
        os_major_probs=tuple(np.round(os_c / os_c.sum(), 4).tolist()),
        loadings=tuple(float(x) for x in np.round(lead, 3)),
    )


def _from_quantiles(u: np.ndarray, qvals: tuple[float, ...], log: bool = False) -> np.ndarray:
    levels = np.asarray(QUANTILE_LEVELS)
    vals = np.asarray(qvals, dtype=float)
    if log:
        return np.exp(np.interp(u, levels, np.log(np.maximum(vals, 1e-9))))
    return np.interp(u, levels, vals)


def _from_categorical(u: np.ndarray, values: tuple[float, ...], probs: tuple[float, ...]) -> np.ndarray:
    cdf = np.cumsum(np.asarray(probs, dtype=float))
    cdf /= cdf[-1]
    idx = np.minimum(np.searchsorted(cdf, u, side="right"), len(values) - 1)
    return np.asarray(values, dtype=float)[idx]


@dataclass(frozen=True)
class DeviceHardware:
    """Per-device hardware arrays of a population (float32 to keep 1M devices small)."""

    s_per_unit: np.ndarray  # compute seconds per work unit
    cpu_score: np.ndarray
    ram_gb: np.ndarray
    android_os: np.ndarray
    bw_down_bytes_s: np.ndarray
    bw_up_bytes_s: np.ndarray

    def __len__(self) -> int:
        return len(self.s_per_unit)

    def attributes(self) -> dict[str, np.ndarray]:
        """Named attributes that user eligibility predicates may test."""
        return {
            "s_per_unit": self.s_per_unit,
            "speed_ms": self.s_per_unit * 1000.0,
            "cpu_score": self.cpu_score,
            "ram_gb": self.ram_gb,
            "android_os": self.android_os,
            "bw_down_bytes_s": self.bw_down_bytes_s,
            "bw_up_bytes_s": self.bw_up_bytes_s,
        }


def sample_hardware(n: int, rng: np.random.Generator,
                    model: EdgePopulationModel = DEFAULT_MODEL) -> DeviceHardware:
    """Draw `n` devices' hardware from the fitted copula model."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    lat = rng.standard_normal(n)
    us = []
    for load in model.loadings:
        eps = rng.standard_normal(n)
        zz = load * lat + np.sqrt(max(1.0 - load * load, 0.0)) * eps
        us.append(stats.norm.cdf(zz))
    speed = _from_quantiles(us[0], model.speed_ms_q, log=True)
    cpu = _from_quantiles(us[1], model.cpu_score_q)
    ram = _from_categorical(us[2], model.ram_gb_values, model.ram_gb_probs)
    osv = _from_categorical(us[3], model.os_major_values, model.os_major_probs)
    bw_down = model.bw_down_median_bytes_s * np.exp(model.bw_sigma * rng.standard_normal(n))
    bw_up = model.bw_up_median_bytes_s * np.exp(model.bw_sigma * rng.standard_normal(n))
    f32 = np.float32
    return DeviceHardware(
        s_per_unit=(speed / 1000.0).astype(f32), cpu_score=cpu.astype(f32), ram_gb=ram.astype(f32),
        android_os=osv.astype(f32), bw_down_bytes_s=bw_down.astype(f32), bw_up_bytes_s=bw_up.astype(f32),
    )


def hardware_from_specs(specs: DeviceSpecs, n: int, rng: np.random.Generator,
                        model: EdgePopulationModel = DEFAULT_MODEL) -> DeviceHardware:
    """`n` devices drawn uniformly from the rows of a real spec table (bandwidth from the model)."""
    rows = rng.integers(0, len(specs), n)
    f32 = np.float32
    bw_down = model.bw_down_median_bytes_s * np.exp(model.bw_sigma * rng.standard_normal(n))
    bw_up = model.bw_up_median_bytes_s * np.exp(model.bw_sigma * rng.standard_normal(n))
    return DeviceHardware(
        s_per_unit=(specs.speed_ms[rows] / 1000.0).astype(f32), cpu_score=specs.cpu_score[rows].astype(f32),
        ram_gb=specs.ram_gb[rows].astype(f32), android_os=specs.android_os[rows].astype(f32),
        bw_down_bytes_s=bw_down.astype(f32), bw_up_bytes_s=bw_up.astype(f32),
    )


def fit_error(specs: DeviceSpecs, model: EdgePopulationModel = DEFAULT_MODEL, n: int = 50_000,
              seed: int = 0) -> dict[str, float]:
    """Kolmogorov-Smirnov distance per attribute and rank-correlation error of model samples."""
    hw = sample_hardware(n, np.random.default_rng(seed), model)
    out = {
        "ks_speed_ms": float(stats.ks_2samp(hw.s_per_unit * 1000.0, specs.speed_ms).statistic),
        "ks_cpu_score": float(stats.ks_2samp(hw.cpu_score, specs.cpu_score).statistic),
        "ks_ram_gb": float(stats.ks_2samp(hw.ram_gb, specs.ram_gb).statistic),
        "ks_android_major": float(stats.ks_2samp(hw.android_os, np.floor(specs.android_os)).statistic),
    }
    r_data = stats.spearmanr(specs.speed_ms, specs.cpu_score)[0]
    r_model = stats.spearmanr(hw.s_per_unit, hw.cpu_score)[0]
    out["spearman_speed_cpu_abs_err"] = float(abs(r_data - r_model))
    return out


def file_checksum(path: str | Path) -> str:
    return sha256_file(path)[:16]


# Energy: phones draw a few watts while training; FLINT-style estimates use a constant.
TRAIN_POWER_W = 3.0  # assumption (typical SoC under sustained load), overridable per study
RADIO_POWER_W = 1.5  # assumption for active cellular/Wi-Fi transfer
