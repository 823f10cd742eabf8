"""Fixtures for the experiments tests: the toy domain and small study files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import orrery_toy_domain  # noqa: E402,F401 - registers domain "toy"

BASE_STUDY = """
[study]
name = "toy_study"
domain = "toy"
hypothesis = "the fast policy lowers latency"
seeds = 3
metrics = ["latency_s", "throughput_rps"]
control = { policy = "base" }

[scenario]
policy = "base"
workload = { n_requests = 20 }

[variables]
policy = ["base", "fast"]
"""


@pytest.fixture
def write_study(tmp_path):
    """write_study(text=BASE_STUDY, name="study.toml") -> Path."""

    def write(text: str = BASE_STUDY, name: str = "study.toml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


@pytest.fixture
def toy_env():
    """Environment for subprocesses that must load the toy domain."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["ORRERY_PLUGINS"] = "orrery_toy_domain"
    return env


@pytest.fixture(scope="session")
def tiny_result(tmp_path_factory):
    """tiny_result(name) -> (results folder, StudyResult) of a shipped study in CI size, run once
    per session (see tiny_studies.py)."""
    import warnings

    from tiny_studies import run_tiny

    root = tmp_path_factory.mktemp("tiny_studies")
    cache: dict[str, tuple[Path, object]] = {}

    def get(name: str):
        if name not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # scipy on identical samples
                cache[name] = (root / name, run_tiny(name, root / name))
        return cache[name]

    return get
