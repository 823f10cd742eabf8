"""Request length models: (prompt, output) token counts for the serving workload.

`SyntheticLengths` is the parametric default shipped with the project (no data download): each
marginal is a mixture of log-normals truncated to the observed range, and a Gaussian copula
couples them with the data's rank correlation. The parameters for ShareGPT (Llama-2 tokenizer)
are committed in `params/sharegpt_lengths.json` with the data checksum and the fit quality;
`python -m workloads.fit_lengths` refits them. `EmpiricalLengths` resamples observed pairs
jointly. Both clip each pair so prompt + output fits the model context (`max_total_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from orrery.core.errors import OrreryInputError
from orrery.traces.llm import LengthSamples

PARAMS_DIR = Path(__file__).resolve().parent / "params"
SHAREGPT_PARAMS = PARAMS_DIR / "sharegpt_lengths.json"
DEFAULT_MAX_TOTAL_TOKENS = 4096  # Llama-2 context
_GRID = 4096


def clip_total(
    prompt: np.ndarray, output: np.ndarray, max_total_tokens: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Clip pairs so each count is ≥ 1 and prompt + output ≤ max_total_tokens.

    The output is kept (up to max_total − 1) and the prompt is truncated to what remains, as a
    server truncates an over-long context; the generated length is what the user waits for.
    """
    p = np.maximum(np.asarray(prompt, dtype=np.int64), 1)
    o = np.maximum(np.asarray(output, dtype=np.int64), 1)
    if max_total_tokens is None:
        return p, o
    if int(max_total_tokens) < 2:
        raise OrreryInputError(f"max_total_tokens = {max_total_tokens!r}: expected an integer ≥ 2")
    m = int(max_total_tokens)
    o = np.minimum(o, m - 1)
    p = np.minimum(p, m - o)
    return p, o


@dataclass(frozen=True)
class LogNormalMixture:
    """A mixture of log-normals for a token count, truncated to [min_tokens, max_tokens].

    Counts are integers; the continuous model describes count + U(−½, ½) and samples are
    rounded, so small counts (1, 2, 3 tokens) get their proper mass.
    """

    weights: tuple[float, ...]
    mu: tuple[float, ...]
    sigma: tuple[float, ...]
    min_tokens: int
    max_tokens: int

    def __post_init__(self) -> None:
        k = len(self.weights)
        if k == 0 or len(self.mu) != k or len(self.sigma) != k:
            raise OrreryInputError(
                "log-normal mixture needs equal, non-empty weights/mu/sigma lists"
            )
        if (
            min(self.sigma) <= 0
            or min(self.weights) < 0
            or not np.isclose(sum(self.weights), 1.0, atol=1e-6)
        ):
            raise OrreryInputError(
                "log-normal mixture needs sigma > 0 and weights ≥ 0 summing to 1"
            )
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise OrreryInputError(
                f"token range [{self.min_tokens}, {self.max_tokens}] is empty or below 1"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogNormalMixture:
        return cls(
            weights=tuple(float(x) for x in d["weights"]),
            mu=tuple(float(x) for x in d["mu"]),
            sigma=tuple(float(x) for x in d["sigma"]),
            min_tokens=int(d["min_tokens"]),
            max_tokens=int(d["max_tokens"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "mu": list(self.mu),
            "sigma": list(self.sigma),
            "min_tokens": self.min_tokens,
            "max_tokens": self.max_tokens,
        }

    def log_cdf_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(log-count grid, truncated CDF on it), for inversion by interpolation."""
        y = np.linspace(np.log(self.min_tokens - 0.5), np.log(self.max_tokens + 0.5), _GRID)
        from scipy.special import ndtr  # (imported on use: scipy costs ~0.2 s to import)

        w, mu, s = (np.asarray(v)[:, None] for v in (self.weights, self.mu, self.sigma))
        c = (w * ndtr((y[None, :] - mu) / s)).sum(axis=0)
        c = (c - c[0]) / max(c[-1] - c[0], 1e-300)
        return y, np.maximum.accumulate(c)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Integer counts at probabilities u (vectorised inverse CDF)."""
        y, c = _grid(self)
        x = np.rint(np.exp(np.interp(u, c, y)))
        return np.clip(x, self.min_tokens, self.max_tokens).astype(np.int64)


@lru_cache(maxsize=32)
def _grid(m: LogNormalMixture) -> tuple[np.ndarray, np.ndarray]:
    return m.log_cdf_grid()


@dataclass(frozen=True)
class LengthParams:
    """Parameters of `SyntheticLengths`: two marginals and the Gaussian-copula correlation."""

    prompt: LogNormalMixture
    output: LogNormalMixture
    copula_rho: float = 0.0

    def __post_init__(self) -> None:
        if not -1.0 < self.copula_rho < 1.0:
            raise OrreryInputError(f"copula_rho = {self.copula_rho!r}: expected a value in (-1, 1)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LengthParams:
        try:
            return cls(
                prompt=LogNormalMixture.from_dict(d["prompt"]),
                output=LogNormalMixture.from_dict(d["output"]),
                copula_rho=float(d.get("copula_rho", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, OrreryInputError):
                raise
            raise OrreryInputError(f"invalid length-model parameters: {err!r}") from None


class SyntheticLengths:
    """Parametric (prompt, output) lengths: log-normal-mixture marginals + Gaussian copula."""

    def __init__(self, params: LengthParams | dict[str, Any]):
        self.params = params if isinstance(params, LengthParams) else LengthParams.from_dict(params)

    def sample(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        max_total_tokens: int | None = DEFAULT_MAX_TOTAL_TOKENS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """n (prompt, output) int64 pairs; None for max_total_tokens disables the total clip."""
        from scipy.special import ndtr  # (imported on use: scipy costs ~0.2 s to import)

        n = _check_n(n)
        rho = self.params.copula_rho
        z = rng.standard_normal((n, 2))
        z2 = rho * z[:, 0] + np.sqrt(1.0 - rho * rho) * z[:, 1]
        prompt = self.params.prompt.ppf(ndtr(z[:, 0]))
        output = self.params.output.ppf(ndtr(z2))
        return clip_total(prompt, output, max_total_tokens)


class EmpiricalLengths:
    """Resample observed (prompt, output) rows jointly (keeps their dependence exactly)."""

    def __init__(self, samples: LengthSamples | tuple[np.ndarray, np.ndarray]):
        if isinstance(samples, LengthSamples):
            p, o = samples.prompt_tokens, samples.output_tokens
        else:
            p, o = samples
        self.prompt_tokens = np.asarray(p, dtype=np.int64)
        self.output_tokens = np.asarray(o, dtype=np.int64)
        if self.prompt_tokens.ndim != 1 or self.prompt_tokens.shape != self.output_tokens.shape:
            raise OrreryInputError("empirical lengths need two 1-D arrays of equal length")
        if len(self.prompt_tokens) == 0:
            raise OrreryInputError("empirical lengths need at least one (prompt, output) sample")

    def sample(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        max_total_tokens: int | None = DEFAULT_MAX_TOTAL_TOKENS,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = _check_n(n)
        idx = rng.integers(0, len(self.prompt_tokens), size=n)
        return clip_total(self.prompt_tokens[idx], self.output_tokens[idx], max_total_tokens)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise OrreryInputError(f"n = {n!r}: expected a non-negative integer number of samples")
    return int(n)


def load_length_params(path: str | Path = SHAREGPT_PARAMS) -> dict[str, Any]:
    """The committed JSON (parameters, data checksum, fit quality)."""
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"length-model parameter file not found: {p}")
    return json.loads(p.read_text())


@lru_cache(maxsize=1)
def fitted_sharegpt_lengths() -> SyntheticLengths:
    """The shipped ShareGPT (Llama-2 tokenizer) length model; needs no data files."""
    return SyntheticLengths(LengthParams.from_dict(load_length_params(SHAREGPT_PARAMS)))
