"""Plug-ins: a tiny plug-in distribution installed into a temporary site dir registers a policy
through the `orrery.plugins` entry-point group; `orrery list` names its origin and a study runs
with it. `--plugin` modules are shown with theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "orrery-hello-plugin"
version = "0.1.0"

[project.entry-points."orrery.plugins"]
hello = "orrery_hello_plugin"

[tool.setuptools]
py-modules = ["orrery_hello_plugin"]
"""

PLUGIN_MODULE = '''
"""A plug-in serving policy: vLLM's FCFS under another name."""
from orrery.policies.registry import register
from orrery.policies.serving.vllm_fcfs import VLLMFCFS


@register("serving", "hello_fcfs")
class HelloFCFS(VLLMFCFS):
    pass
'''

STUDY = """
[study]
name = "hello_plugin"
domain = "serving"
hypothesis = "the plug-in policy runs like any other"
seeds = 2
metrics = ["qoe_mean", "throughput_tok_s"]
control = { policy = "vllm_fcfs" }

[scenario]
policy = "vllm_fcfs"
hardware = { gpu = "a100", model = "llama-2-13b" }
workload = { arrival = "poisson", rate_rps = 0.5, duration_s = 8.0 }

[variables]
policy = ["vllm_fcfs", "hello_fcfs"]
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plug-in, pip-installed (offline, no build isolation) into a temporary site dir."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (src / "orrery_hello_plugin.py").write_text(PLUGIN_MODULE)
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert list(site.glob("orrery_hello_plugin-0.1.0.dist-info/entry_points.txt"))
    return site


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("ORRERY_PLUGINS", None)
    env.pop("ORRERY_NO_ENTRY_POINTS", None)
    return env


def _orrery(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orrery.experiments.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow  # pip install + two orrery processes; CI runs it
def test_an_installed_entry_point_plugin_is_listed_with_its_origin_and_runs_a_study(plugin_site, tmp_path):
    env = _env(plugin_site)
    p = _orrery("list", "--json", env=env)
    assert p.returncode == 0, p.stderr
    cat = json.loads(p.stdout)
    assert "hello_fcfs" in cat["policies"]["serving"]
    origin = cat["policy_origins"]["serving"]["hello_fcfs"]
    assert "entry point 'hello'" in origin and "orrery-hello-plugin 0.1.0" in origin
    assert cat["policy_origins"]["serving"]["andes"] == "built-in"

    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    r = _orrery("run", str(study), "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet", env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "reproducibility: OK" in r.stdout
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "hello_fcfs" in summary


def test_plugin_module_origin_and_a_broken_entry_point_does_not_stop_orrery(monkeypatch):
    """In-process (cheap): a --plugin module's origin; a failing entry point is reported, skipped."""
    from importlib import metadata

    import orrery_toy_domain

    from orrery.experiments import plugins
    from orrery.experiments.cli import catalog

    broken = metadata.EntryPoint(name="broken", value="orrery_broken_missing_module", group=plugins.GROUP)
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [broken] if group == plugins.GROUP else [])
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(plugins, "_FAILED", {})
    monkeypatch.setattr(plugins, "_SOURCES", {})
    monkeypatch.delenv("ORRERY_PLUGINS", raising=False)
    with pytest.warns(UserWarning, match="failed to load"):
        plugins.load_plugins(["orrery_toy_domain"])
    assert plugins.origin_of(orrery_toy_domain.FastPolicy) == "--plugin orrery_toy_domain"
    from orrery.policies.serving.andes import Andes

    assert plugins.origin_of(Andes) == plugins.BUILTIN
    cat = catalog()
    assert cat["policy_origins"]["toy"]["fast"] == "--plugin orrery_toy_domain"
    assert cat["policy_origins"]["serving"]["andes"] == plugins.BUILTIN
    assert cat["domains"]["toy"]["origin"] == "--plugin orrery_toy_domain"
    assert "ModuleNotFoundError" in cat["unavailable"]["plugin broken"]
    plugins.load_entry_points()  # once per process: no second attempt, no second warning
