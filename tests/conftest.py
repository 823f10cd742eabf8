"""Shared fixtures: where the real data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# $ORRERY_DATA (a folder laid out like ../shared/data) first, as `shared:` names resolve.
SHARED_DATA = Path(
    os.environ.get("ORRERY_DATA") or os.environ.get("ORRERY_SHARED_DATA") or REPO / ".." / "shared" / "data"
).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to $ORRERY_DATA or ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_automatic_downloads(monkeypatch):
    """No test downloads data on its own: `shared:` names never trigger a fetch unless a test
    sets ORRERY_AUTO_FETCH itself (against a loopback server)."""
    monkeypatch.delenv("ORRERY_AUTO_FETCH", raising=False)
