"""Guarded actuator: dry run records and applies nothing; with the opt-in it restores the
original settings on exit, on exceptions and on SIGINT/SIGTERM. Only a fake NVML is written."""

from __future__ import annotations

import os
import signal

import pytest

from orrery.policies.energy.base import EnergyDecision
from orrery.realbackend.nvml import GPUActuator


def test_dry_run_records_and_applies_nothing(fake_nvml_cls):
    nv = fake_nvml_cls(allow_setters=False)  # any write raises
    act = GPUActuator(allow_writes=False, nvml=nv)
    act.set_power_limit(300)
    act.lock_sm_clocks(1005)
    act.apply(EnergyDecision(power_limit_w=250.0))
    act.close()
    assert act.dry_run
    assert [(a.what, a.value, a.applied) for a in act.log] == [
        ("power_limit_w", 300.0, False), ("sm_clocks_mhz", (1005.0, 1005.0), False), ("power_limit_w", 250.0, False)]
    assert nv.calls == []  # not even initialised: dry run needs no NVML


def test_dry_run_installs_no_signal_handlers():
    before = signal.getsignal(signal.SIGTERM)
    act = GPUActuator()
    assert signal.getsignal(signal.SIGTERM) is before
    act.close()


def test_restore_on_normal_exit(fake_nvml):
    with GPUActuator(allow_writes=True, nvml=fake_nvml) as act:
        act.set_power_limit(300)
        act.set_power_limit(250)
        act.lock_sm_clocks(1005, 1500)
        assert fake_nvml.limit_mw == 250_000 and fake_nvml.locked == (1005, 1500)
    assert fake_nvml.limit_mw == 700_000 and fake_nvml.locked is None
    assert fake_nvml.writes()[-2:] == [("set_power_limit", 700_000), ("reset_clocks",)]
    assert not act.pending_restore


def test_restore_on_exception(fake_nvml):
    with pytest.raises(RuntimeError, match="boom"):
        with GPUActuator(allow_writes=True, nvml=fake_nvml) as act:
            act.set_power_limit(200)
            raise RuntimeError("boom")
    assert fake_nvml.limit_mw == 700_000


class _Term(Exception):
    pass


def test_restore_on_sigterm_then_previous_handler_runs(fake_nvml):
    def prev(signum, frame):
        raise _Term(signum)

    old = signal.signal(signal.SIGTERM, prev)
    try:
        act = GPUActuator(allow_writes=True, nvml=fake_nvml)
        act.set_power_limit(220)
        act.lock_sm_clocks(900)
        with pytest.raises(_Term):
            os.kill(os.getpid(), signal.SIGTERM)
        assert fake_nvml.limit_mw == 700_000 and fake_nvml.locked is None
        assert signal.getsignal(signal.SIGTERM) is prev  # handler given back
    finally:
        signal.signal(signal.SIGTERM, old)


def test_restore_on_sigint_raises_keyboardinterrupt(fake_nvml):
    act = GPUActuator(allow_writes=True, nvml=fake_nvml)
    act.set_power_limit(400)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert fake_nvml.limit_mw == 700_000
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_restore_is_idempotent(fake_nvml):
    act = GPUActuator(allow_writes=True, nvml=fake_nvml)
    act.set_power_limit(300)
    act.restore()
    n = len(fake_nvml.writes())
    act.restore()
    act.close()
    assert len(fake_nvml.writes()) == n
