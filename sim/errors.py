"""Deprecated alias of `orrery.core.errors` (the error family moved below every layer).

Kept only so that code written before the move still imports; write
`from orrery.core.errors import ...` (layers below `sim` must: lint-imports checks).
"""

from orrery.core.errors import (  # noqa: F401
    OrreryInputError,
    PolicyInputError,
    ScenarioError,
    TraceFormatError,
    UnknownNameError,
    require_file,
)
