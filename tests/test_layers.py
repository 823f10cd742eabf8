"""Imports flow one way: the import-linter contracts in pyproject.toml hold (also run by .ci/run).

core -> traces/workloads/hwmodels -> sim -> realbackend -> experiments; policies import no
backend; the real backend drives no domain simulator; runner and report are independent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    pytest.importorskip("importlinter")
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "broken" in p.stdout and " 0 broken" in p.stdout


def test_the_core_imports_no_other_layer():
    code = (
        "import sys, orrery.core.errors, orrery.core.config, orrery.core.files; "
        "bad = sorted(m for m in sys.modules if m.startswith('orrery.') and not m.startswith('orrery.core'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
