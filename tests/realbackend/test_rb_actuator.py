"""Guarded actuator: dry run records and applies nothing; with the opt-in it restores the
original settings on exit, on exceptions and on SIGINT/SIGTERM. Only a fake NVML is written."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

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


# ----------------------------------------------------------------------------- issue 13, item 8


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_every_signal_restores_power_and_clocks_then_hands_on(fake_nvml, signame):
    sig = getattr(signal, signame)

    def prev(signum, frame):
        raise _Term(signum)

    old = signal.signal(sig, prev)
    try:
        act = GPUActuator(allow_writes=True, nvml=fake_nvml)
        act.set_power_limit(250)
        act.lock_sm_clocks(1005)
        assert fake_nvml.limit_mw == 250_000 and fake_nvml.locked == (1005, 1005)
        with pytest.raises(_Term):
            os.kill(os.getpid(), sig)
        assert fake_nvml.limit_mw == 700_000 and fake_nvml.locked is None
        assert signal.getsignal(sig) is prev
    finally:
        signal.signal(sig, old)


def test_sighup_with_the_default_action_restores_before_the_process_dies(tmp_path):
    """A real SIGHUP to a process whose SIGHUP action is the default (it dies of it)."""
    import subprocess
    import textwrap

    state = tmp_path / "state.json"
    script = textwrap.dedent(f"""
        import json, signal, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import FakeNVML
        from orrery.realbackend.nvml import GPUActuator

        class Recording(FakeNVML):
            def _dump(self):
                open({str(state)!r}, "w").write(json.dumps([self.limit_mw, self.locked]))

            def nvmlDeviceSetPowerManagementLimit(self, h, mw):
                super().nvmlDeviceSetPowerManagementLimit(h, mw)
                self._dump()

            def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
                super().nvmlDeviceSetGpuLockedClocks(h, lo, hi)
                self._dump()

            def nvmlDeviceResetGpuLockedClocks(self, h):
                super().nvmlDeviceResetGpuLockedClocks(h)
                self._dump()

        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        act = GPUActuator(allow_writes=True, nvml=Recording())
        act.set_power_limit(300)
        act.lock_sm_clocks(1500)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert json.loads(state.read_text()) == [300_000, [1500, 1500]]
    proc.send_signal(signal.SIGHUP)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGHUP
    assert json.loads(state.read_text()) == [700_000, None]


def test_failed_power_limit_restore_does_not_skip_the_clock_reset(fake_nvml_cls):
    error = fake_nvml_cls.Error

    class FailingPowerRestore(fake_nvml_cls):
        fail = True

        def nvmlDeviceSetPowerManagementLimit(self, h, mw):
            if mw == 700_000 and self.fail:
                self.calls.append(("set_power_limit_failed", mw))
                raise error("Insufficient Permissions")
            super().nvmlDeviceSetPowerManagementLimit(h, mw)

    nv = FailingPowerRestore()
    act = GPUActuator(allow_writes=True, nvml=nv, install_signal_handlers=False)
    act.set_power_limit(300)
    act.lock_sm_clocks(900)
    with pytest.raises(error):
        act.restore()
    assert nv.locked is None and ("reset_clocks",) in nv.calls
    assert act.pending_restore  # the power limit is still owed, and a later restore retries it
    nv.fail = False
    act.close()
    assert nv.limit_mw == 700_000 and not act.pending_restore


def test_clocks_locked_before_are_saved_and_restored(fake_nvml_cls):
    class PreLocked(fake_nvml_cls):
        def __init__(self):
            super().__init__()
            self.locked = (1200, 1200)  # an administrator locked the clocks before orrery ran

        def nvmlDeviceGetGpuLockedClocks(self, h):
            return self.locked

    nv = PreLocked()
    with GPUActuator(allow_writes=True, nvml=nv, install_signal_handlers=False) as act:
        act.lock_sm_clocks(900)
        act.lock_sm_clocks(1005)
        assert nv.locked == (1005, 1005)
    assert nv.locked == (1200, 1200)
    assert ("reset_clocks",) not in nv.calls
    # a binding that cannot read them: the caller says what they were
    nv2 = fake_nvml_cls()
    nv2.locked = (1100, 1300)
    with GPUActuator(allow_writes=True, nvml=nv2, install_signal_handlers=False,
                     locked_clocks_mhz=(1100, 1300)) as act:
        act.lock_sm_clocks(345)
    assert nv2.locked == (1100, 1300)


def test_readme_promises_no_gpu_write_flag_that_no_command_accepts():
    from orrery.experiments.cli import build_parser

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    parser = build_parser()
    flags = {opt for action in parser._subparsers._group_actions for sub in action.choices.values()
             for a in sub._actions for opt in a.option_strings}
    if "--allow-gpu-writes" not in flags:  # the README must not advertise a flag nothing accepts
        assert "--allow-gpu-writes" not in readme
