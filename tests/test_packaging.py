"""The wheel installs one top-level package, `orrery`, and every source folder is in it."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["core", "sim", "hwmodels", "workloads", "traces", "policies", "realbackend", "experiments"]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"orrery." + ".".join(p.parent.relative_to(ROOT).parts)
             for layer in LAYERS for p in (ROOT / layer).rglob("__init__.py")}
    assert found == listed, f"pyproject packages differ from the folders: {found ^ listed}"


def test_distribution_name_is_not_a_taken_top_level_name():
    assert _pyproject()["project"]["name"] == "orrery-sim"
    assert _pyproject()["project"]["scripts"]["orrery"].startswith("orrery.")


def test_installed_modules_live_under_orrery():
    import orrery.sim.engine as engine

    assert engine.__name__ == "orrery.sim.engine"
    for name in LAYERS:
        assert name not in sys.modules, f"a top-level `{name}` was imported"


@pytest.mark.slow
def test_wheel_holds_only_the_orrery_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"orrery"}
    assert "orrery/__init__.py" not in names  # a namespace: nothing shadows another `orrery`
    assert "orrery/hwmodels/params/llm_serving_mlenergy.json" in names
    assert any(n.startswith("orrery/experiments/studies/") and n.endswith(".toml") for n in names)
