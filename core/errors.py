"""Errors that carry a user-facing message.

`OrreryInputError` and its subclasses mean *bad input* (exit status 2 in the CLI): the message
names what was wrong and where, in one paragraph. Anything else is an internal error.
The family lives in `orrery.core` so that every layer (traces, workloads, hwmodels, policies,
sim, realbackend, experiments) raises the same one and the CLI catches one base class.
"""

from __future__ import annotations

from pathlib import Path


class OrreryInputError(ValueError):
    """Bad user input: a scenario, study, trace, policy name or parameter."""


class ScenarioError(OrreryInputError):
    """A scenario or study file failed validation."""


class PolicyInputError(OrreryInputError):
    """Bad policy name or parameters (raised by `orrery.policies.registry`)."""


class UnknownNameError(OrreryInputError, KeyError):
    """A name (policy, GPU, model, domain) that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class TraceFormatError(OrreryInputError):
    """A malformed trace or data file: names the file, line, column and what was expected."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
        expected: str | None = None,
    ):
        self.path, self.line, self.column, self.expected = str(path), line, column, expected
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        text = f"{where}: {message}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return `path` as a Path, or raise a clear error if it does not exist."""
    p = Path(path)
    if not p.is_file():
        raise OrreryInputError(f"{what} not found: {p}")
    return p
