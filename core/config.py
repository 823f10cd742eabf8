"""The strict pydantic base of every config model, and the one formatter of its errors.

Scenarios (`sim/scenario.py`), workload and trace options, and study files
(`experiments/schema.py`) all validate through pydantic; a failure becomes one paragraph that
names the source, each bad key, its value and what was expected.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def describe_validation_error(err: ValidationError, source: str, what: str = "scenario") -> str:
    """One paragraph naming each bad field, its value and what was expected.

    `what` names the kind of file ("scenario", "study") in the message.
    """
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif e["type"] == "missing":
            parts.append(f"missing required key {loc!r}")
        else:
            shown = repr(e.get("input"))
            if len(shown) > 80:
                shown = shown[:77] + "..."
            parts.append(f"{loc} = {shown}: {e['msg'].removeprefix('Value error, ')}")
    return f"{source}: invalid {what}: " + "; ".join(parts)
