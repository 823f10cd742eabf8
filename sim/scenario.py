"""The Scenario: one fully specified run, validated by pydantic and loaded from TOML.

Every domain subclasses `Scenario` and adds its own (nested, unit-suffixed) fields. Bad input
fails at load time with a `ScenarioError` that names the source, the field path, the bad value
and what was expected. `stable_hash()` identifies a scenario across processes and machines.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, ValidationError

from orrery.core.config import Strict, describe_validation_error
from orrery.core.errors import OrreryInputError, ScenarioError


class Scenario(Strict):
    """Fields shared by every domain's scenario."""

    domain: ClassVar[str] = ""

    name: str = Field("", description="free-form label")
    policy: str = Field(..., description="registered policy name in this domain")
    policy_params: dict[str, Any] = Field(default_factory=dict, description="policy constructor arguments")
    seed: int = Field(0, ge=0, description="root seed of every RNG stream")
    horizon_s: float | None = Field(None, gt=0, description="simulated time limit (s); None: run to completion")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Self:
        data = {k: v for k, v in data.items() if k != "domain"}
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ScenarioError(describe_validation_error(err, source)) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> Self:
        return cls.from_dict(read_toml(path), source=str(path))

    def canonical_json(self) -> str:
        payload = {"domain": self.domain, **self.model_dump(mode="json")}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    def stable_hash(self) -> str:
        """A 16-hex-digit hash of the canonical JSON (sorted keys, domain included)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def with_updates(self, updates: dict[str, Any], source: str = "<updates>") -> Self:
        """A new validated scenario with dotted-path updates applied (`workload.rate_rps`)."""
        data = self.model_dump(mode="python")
        for dotted, value in updates.items():
            set_dotted(data, dotted, value)
        return type(self).from_dict(data, source=source)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data[a][b][c] = value` for `dotted == "a.b.c"`, creating dicts as needed."""
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        elif not isinstance(nxt, dict):
            raise OrreryInputError(f"cannot set {dotted!r}: {k!r} is not a table")
        cur = nxt
    cur[keys[-1]] = value


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"file not found: {p}")
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{p}: not valid TOML: {err}") from None
