"""NVML monitor: discovery, energy windows (counter and sampled), agreement, clear errors."""

from __future__ import annotations

import time

import pytest

from orrery.core.errors import OrreryInputError
from orrery.realbackend.nvml import (
    GPUMonitor,
    GPUUnavailableError,
    check_energy_agreement,
    discover,
    load_nvml,
)


def test_discovery_reads_the_fake(fake_nvml):
    (g,) = discover(fake_nvml)
    assert g.name == "NVIDIA H100 80GB HBM3" and g.architecture == "hopper"
    assert (g.power_limit_min_w, g.power_limit_max_w, g.power_limit_w) == (200.0, 700.0, 700.0)
    assert g.sm_clock_min_mhz == 345 and g.sm_clock_max_mhz == 1980
    assert g.has_energy_counter and g.power_w == 250.0
    assert fake_nvml.writes() == []


def test_counter_window_on_volta_and_newer(fake_nvml):
    mon = GPUMonitor(0, nvml=fake_nvml)
    assert mon.mode == "counter" and "total-energy counter" in mon.source
    with mon.window() as w:
        time.sleep(0.1)
    assert w.time_s >= 0.1
    assert w.avg_power_w == pytest.approx(250.0, rel=0.1)


def test_sampling_before_volta(fake_nvml_cls):
    nv = fake_nvml_cls(arch=4)  # Pascal: no energy counter
    mon = GPUMonitor(0, nvml=nv, sample_interval_s=0.01)
    assert mon.mode == "sampling" and "sampled power" in mon.source
    with mon.window() as w:
        time.sleep(0.1)
    assert len(w.samples) >= 3
    assert w.avg_power_w == pytest.approx(250.0, rel=0.05)
    with pytest.raises(GPUUnavailableError, match="no total-energy counter"):
        GPUMonitor(0, nvml=nv, mode="counter")


def test_agreement_check(fake_nvml):
    mon = GPUMonitor(0, nvml=fake_nvml, sample_interval_s=0.01)
    res = check_energy_agreement(mon, seconds=0.2)
    assert res["rel_diff"] < 0.1 and res["n_samples"] >= 5


def test_no_driver_and_no_gpu_give_clear_errors(fake_nvml_cls):
    with pytest.raises(GPUUnavailableError, match="no NVIDIA driver or GPU"):
        load_nvml(fake_nvml_cls(init_error=True))
    with pytest.raises(GPUUnavailableError, match="found no NVIDIA GPU"):
        load_nvml(fake_nvml_cls(n_gpus=0))
    with pytest.raises(GPUUnavailableError, match="out of range"):
        GPUMonitor(3, nvml=fake_nvml_cls())
    assert issubclass(GPUUnavailableError, OrreryInputError)  # the CLI's exit status 2


def test_real_pynvml_here_is_clear_or_works():
    """On this machine: either a GPU is found or the message says plainly that there is none."""
    try:
        gpus = discover()
    except GPUUnavailableError as err:
        msg = str(err)
        assert "NVML" in msg and ("no NVIDIA" in msg or "not installed" in msg)
    else:
        assert gpus and all(g.name for g in gpus)
