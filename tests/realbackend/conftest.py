"""A fake NVML at the real backend's boundary: records every call, never touches hardware."""

from __future__ import annotations

import pytest


class FakeNVMLError(Exception):
    pass


class FakeMemory:
    total = 80 * 1024**3


class FakeNVML:
    """Enough of pynvml for discovery, monitoring and actuation. Power in mW, energy in mJ."""

    Error = FakeNVMLError  # (tests reach it through the class: every conftest is module "conftest")
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, n_gpus: int = 1, arch: int = 9, power_mw: int = 250_000, init_error: bool = False,
                 allow_setters: bool = True):
        self.n_gpus, self.arch, self.power_mw = n_gpus, arch, power_mw
        self.init_error, self.allow_setters = init_error, allow_setters
        self.calls: list[tuple] = []
        self.limit_mw = 700_000
        self.locked: tuple[int, int] | None = None
        self._energy_mj = 1_000_000.0
        import time

        self._time = time
        self._t_last = time.perf_counter()

    # --- init / discovery
    def nvmlInit(self):
        self.calls.append(("init",))
        if self.init_error:
            raise FakeNVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self):
        return self.n_gpus

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-fake"

    def nvmlDeviceGetArchitecture(self, h):
        return self.arch

    def nvmlDeviceGetMemoryInfo(self, h):
        return FakeMemory()

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        return (200_000, 700_000)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return 700_000

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return self.limit_mw

    def nvmlDeviceGetSupportedMemoryClocks(self, h):
        return [2619]

    def nvmlDeviceGetSupportedGraphicsClocks(self, h, mem):
        return [1980, 1500, 1005, 345]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, kind):
        return 41

    # --- measurement: constant power, energy counter integrates it in real time
    def nvmlDeviceGetPowerUsage(self, h):
        return self.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if self.arch < 5:
            raise FakeNVMLError("Not Supported")
        now = self._time.perf_counter()
        self._energy_mj += (now - self._t_last) * self.power_mw
        self._t_last = now
        return int(self._energy_mj)

    # --- setters
    def _set(self, *call):
        self.calls.append(call)
        if not self.allow_setters:
            raise AssertionError(f"a GPU setting was written: {call}")

    def nvmlDeviceSetPowerManagementLimit(self, h, mw):
        self._set("set_power_limit", mw)
        self.limit_mw = mw

    def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
        self._set("lock_clocks", lo, hi)
        self.locked = (lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, h):
        self._set("reset_clocks")
        self.locked = None

    def writes(self) -> list[tuple]:
        return [c for c in self.calls if c[0] in ("set_power_limit", "lock_clocks", "reset_clocks")]


@pytest.fixture
def fake_nvml() -> FakeNVML:
    return FakeNVML()


@pytest.fixture
def fake_nvml_cls() -> type[FakeNVML]:
    return FakeNVML
