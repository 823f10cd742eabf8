"""NVML: GPU discovery, energy measurement and a guarded actuator for power limit and SM clocks.

Monitor. On Volta and newer GPUs NVML keeps a total-energy counter (mJ since the driver
loaded); a measurement window is the difference of two readings. Older GPUs only report
instantaneous power, so a background thread samples it and integrates (trapezoids).
`check_energy_agreement` runs both over the same window: the check that the counter and the
integrated power tell the same story.

Actuator. Changing GPU settings on shared hardware is never a default. `GPUActuator` records
every setting it is asked for; it applies them only when built with `allow_writes=True` (the
opt-in; no `orrery` command writes GPU settings today, so the opt-in is this Python argument),
and then restores the original power limit and clocks on normal exit, on exceptions (context
manager), at interpreter exit (atexit) and on SIGINT/SIGTERM/SIGHUP (signal handlers that
restore, then hand the signal to the previous handler). Restoring tries every knob even when
one fails (a failed power-limit restore does not skip the clock reset). Clocks that were
already locked before the first change are saved and locked again on restore, where the
NVML binding can read them (`nvmlDeviceGetGpuLockedClocks`) or the caller says what they
were (`locked_clocks_mhz=`); otherwise restore resets them to the driver default.

Every NVML call goes through one object (`nvml`, the `pynvml` module by default), so tests
inject a fake at this boundary; real writes are never exercised in tests.
"""

from __future__ import annotations

import atexit
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from orrery.core.errors import OrreryInputError

ARCHITECTURES = {0: "kepler", 1: "kepler", 2: "kepler", 3: "maxwell", 4: "pascal", 5: "volta", 6: "turing",
                 7: "ampere", 8: "ada", 9: "hopper", 10: "blackwell"}
VOLTA = 5
RESTORE_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class GPUUnavailableError(OrreryInputError):
    """No NVML library, no driver, or no NVIDIA GPU: the real backend cannot measure a GPU."""


def load_nvml(nvml: Any = None) -> Any:
    """The initialised NVML module (or the injected fake), or a clear GPUUnavailableError."""
    if nvml is None:
        try:
            import pynvml as nvml  # nvidia-ml-py
        except ImportError:
            raise GPUUnavailableError(
                "NVML is not available: the Python package nvidia-ml-py (`import pynvml`) is not "
                "installed; install the real-backend extra (pip install 'orrery[real]')") from None
    try:
        nvml.nvmlInit()
    except Exception as err:  # noqa: BLE001 - pynvml raises NVMLError subclasses per cause
        raise GPUUnavailableError(
            f"NVML could not initialise ({_nvml_msg(err)}): no NVIDIA driver or GPU on this machine. "
            "The real backend then runs on the CPU with no GPU energy source") from None
    try:
        n = int(nvml.nvmlDeviceGetCount())
    except Exception as err:  # noqa: BLE001
        raise GPUUnavailableError(f"NVML could not count GPUs ({_nvml_msg(err)})") from None
    if n == 0:
        raise GPUUnavailableError("NVML found no NVIDIA GPU on this machine")
    return nvml


def _nvml_msg(err: BaseException) -> str:
    s = str(err) or type(err).__name__
    return s.decode() if isinstance(s, bytes) else s


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _try(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a query this GPU does not support
        return default


@dataclass(frozen=True)
class GPUInfo:
    index: int
    name: str
    uuid: str
    architecture: str
    memory_bytes: int
    power_limit_min_w: float | None
    power_limit_max_w: float | None
    power_limit_default_w: float | None
    power_limit_w: float | None
    sm_clock_max_mhz: float | None
    sm_clocks_supported_mhz: tuple[float, ...] = ()
    has_energy_counter: bool = False
    power_w: float | None = None
    temperature_c: float | None = None

    @property
    def sm_clock_min_mhz(self) -> float | None:
        return min(self.sm_clocks_supported_mhz) if self.sm_clocks_supported_mhz else None


def gpu_info(nvml: Any, index: int) -> GPUInfo:
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    arch_id = _try(nvml.nvmlDeviceGetArchitecture, h)
    arch = ARCHITECTURES.get(arch_id, f"unknown({arch_id})") if arch_id is not None else "unknown"
    lims = _try(nvml.nvmlDeviceGetPowerManagementLimitConstraints, h)
    mem = _try(nvml.nvmlDeviceGetMemoryInfo, h)
    energy = _try(nvml.nvmlDeviceGetTotalEnergyConsumption, h)
    clocks: list[float] = []
    mem_clocks = _try(nvml.nvmlDeviceGetSupportedMemoryClocks, h, default=[]) or []
    if mem_clocks:
        clocks = [float(c) for c in (_try(nvml.nvmlDeviceGetSupportedGraphicsClocks, h, mem_clocks[0], default=[]) or [])]
    mw = lambda v: None if v is None else float(v) / 1000.0  # noqa: E731
    clock_max = _try(nvml.nvmlDeviceGetMaxClockInfo, h, getattr(nvml, "NVML_CLOCK_SM", 1))
    return GPUInfo(
        index=index, name=_s(_try(nvml.nvmlDeviceGetName, h, default="?")),
        uuid=_s(_try(nvml.nvmlDeviceGetUUID, h, default="?")), architecture=arch,
        memory_bytes=int(mem.total) if mem is not None else 0,
        power_limit_min_w=mw(lims[0]) if lims else None, power_limit_max_w=mw(lims[1]) if lims else None,
        power_limit_default_w=mw(_try(nvml.nvmlDeviceGetPowerManagementDefaultLimit, h)),
        power_limit_w=mw(_try(nvml.nvmlDeviceGetPowerManagementLimit, h)),
        sm_clock_max_mhz=None if clock_max is None else float(clock_max),
        sm_clocks_supported_mhz=tuple(sorted(set(clocks))),
        has_energy_counter=energy is not None and (arch_id is None or arch_id >= VOLTA),
        power_w=mw(_try(nvml.nvmlDeviceGetPowerUsage, h)),
        temperature_c=_try(nvml.nvmlDeviceGetTemperature, h, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
    )


def discover(nvml: Any = None) -> list[GPUInfo]:
    """Every NVIDIA GPU NVML sees (raises GPUUnavailableError when there is none)."""
    nvml = load_nvml(nvml)
    return [gpu_info(nvml, i) for i in range(int(nvml.nvmlDeviceGetCount()))]


# ----------------------------------------------------------------------------- monitor


@dataclass
class EnergyWindow:
    """One measurement window; filled in when the `with` block ends."""

    source: str
    t_start: float = 0.0
    time_s: float = 0.0
    energy_j: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, W) when sampled
    sampled_j: float = float("nan")  # counter windows with cross_check: integrated sampled power

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.time_s if self.time_s > 0 else float("nan")


class PowerSampler:
    """Background thread reading instantaneous power every `interval_s`; integrates it."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float = 0.02):
        self.nvml, self.handle, self.interval_s = nvml, handle, float(interval_s)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        self.samples.append((time.perf_counter(), float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def start(self) -> None:
        self.samples = []
        self._stop.clear()
        self._read()
        self._thread = threading.Thread(target=self._loop, name="orrery-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        """Stop and return the integrated energy (J) over the samples (trapezoids)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._read()
        e = 0.0
        for (t0, p0), (t1, p1) in zip(self.samples, self.samples[1:], strict=False):
            e += 0.5 * (p0 + p1) * (t1 - t0)
        return e


class GPUMonitor:
    """Energy windows on one GPU: the total-energy counter (Volta+) or sampled power."""

    def __init__(self, index: int = 0, nvml: Any = None, mode: str = "auto", sample_interval_s: float = 0.02):
        self.nvml = load_nvml(nvml)
        self.index = int(index)
        n = int(self.nvml.nvmlDeviceGetCount())
        if not 0 <= self.index < n:
            raise GPUUnavailableError(f"GPU index {index} out of range: NVML sees {n} GPU(s)")
        self.handle = self.nvml.nvmlDeviceGetHandleByIndex(self.index)
        self.info = gpu_info(self.nvml, self.index)
        if mode not in ("auto", "counter", "sampling"):
            raise OrreryInputError(f"monitor mode must be auto, counter or sampling; got {mode!r}")
        if mode == "counter" and not self.info.has_energy_counter:
            raise GPUUnavailableError(f"{self.info.name} ({self.info.architecture}) has no total-energy counter "
                                      "(Volta or newer needed); use power sampling")
        self.mode = "counter" if mode == "auto" and self.info.has_energy_counter else (
            "sampling" if mode == "auto" else mode)
        self.sample_interval_s = float(sample_interval_s)

    @property
    def source(self) -> str:
        what = "total-energy counter" if self.mode == "counter" else "sampled power"
        return f"NVML {what} of GPU {self.index} ({self.info.name})"

    def energy_counter_j(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1000.0

    def power_w(self) -> float:
        return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def window(self, cross_check: bool = False) -> _Window:
        """A measurement window. `cross_check`: on a counter window, also sample power over
        the same span (`EnergyWindow.sampled_j`), the check that both tell the same story."""
        return _Window(self, self.mode, cross_check)


class _Window:
    def __init__(self, mon: GPUMonitor, mode: str, cross_check: bool = False):
        self.mon, self.mode = mon, mode
        self.result = EnergyWindow(source=mon.source)
        self._sampler: PowerSampler | None = None
        self._sample = mode != "counter" or cross_check
        self._e0 = 0.0

    def __enter__(self) -> EnergyWindow:
        self.result.t_start = time.perf_counter()
        if self.mode == "counter":
            self._e0 = self.mon.energy_counter_j()
        if self._sample:
            self._sampler = PowerSampler(self.mon.nvml, self.mon.handle, self.mon.sample_interval_s)
            self._sampler.start()
        return self.result

    def __exit__(self, *exc) -> None:
        sampled = math.nan
        if self._sampler is not None:
            sampled = self._sampler.stop()
            self.result.samples = self._sampler.samples
        if self.mode == "counter":
            self.result.energy_j = self.mon.energy_counter_j() - self._e0
            self.result.sampled_j = sampled
        else:
            self.result.energy_j = sampled
            self.result.sampled_j = sampled
        self.result.time_s = time.perf_counter() - self.result.t_start


def check_energy_agreement(monitor: GPUMonitor, work=None, seconds: float = 3.0) -> dict:
    """Counter vs integrated sampled power over the same window (while `work()` runs, or
    sleeping): returns both energies and their relative difference."""
    if not monitor.info.has_energy_counter:
        raise GPUUnavailableError(f"{monitor.info.name} has no energy counter to check against")
    sampler = PowerSampler(monitor.nvml, monitor.handle, monitor.sample_interval_s)
    t0 = time.perf_counter()
    e0 = monitor.energy_counter_j()
    sampler.start()
    while time.perf_counter() - t0 < seconds:
        if work is not None:
            work()
        else:
            time.sleep(0.05)
    sampled = sampler.stop()
    counter = monitor.energy_counter_j() - e0
    dt = time.perf_counter() - t0
    rel = abs(counter - sampled) / counter if counter > 0 else float("nan")
    return {"seconds": dt, "counter_j": counter, "sampled_j": sampled, "rel_diff": rel,
            "counter_avg_w": counter / dt, "sampled_avg_w": sampled / dt, "n_samples": len(sampler.samples)}


# ----------------------------------------------------------------------------- actuator


@dataclass(frozen=True)
class Action:
    """One requested setting: what, the value, whether it was applied to the GPU."""

    t_s: float
    what: str  # "power_limit_w", "sm_clocks_mhz", "reset_sm_clocks"
    value: Any
    applied: bool


class GPUActuator:
    """Power limit and locked SM clocks, dry-run unless `allow_writes=True`.

    Dry run: every request is appended to `log` with applied=False and no NVML setter is
    called (no NVML is needed at all). With writes allowed, the first change of each knob
    saves the original; `restore()` puts every changed knob back and runs on exit, on
    exceptions, at interpreter exit and on SIGINT/SIGTERM.
    """

    def __init__(self, index: int = 0, allow_writes: bool = False, nvml: Any = None,
                 install_signal_handlers: bool = True,
                 locked_clocks_mhz: tuple[float, float] | None = None):
        self.allow_writes = bool(allow_writes)
        self.index = int(index)
        self.log: list[Action] = []
        self._orig_power_mw: int | None = None
        self._clocks_locked = False
        self._given_locked = locked_clocks_mhz  # the clocks locked before us, if the caller knows
        self._orig_locked: tuple[int, int] | None = None
        self._prev_handlers: dict[int, Any] = {}
        self._lock = threading.RLock()
        self.nvml = None
        self.handle = None
        if self.allow_writes:
            self.nvml = load_nvml(nvml)
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(self.index)
            atexit.register(self.restore)
            if install_signal_handlers and threading.current_thread() is threading.main_thread():
                for sig in RESTORE_SIGNALS:
                    self._prev_handlers[sig] = signal.signal(sig, self._on_signal)

    @property
    def dry_run(self) -> bool:
        return not self.allow_writes

    # --- requests --------------------------------------------------------------------------
    def set_power_limit(self, watts: float) -> None:
        with self._lock:
            applied = False
            if self.allow_writes:
                if self._orig_power_mw is None:
                    self._orig_power_mw = int(self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle))
                self.nvml.nvmlDeviceSetPowerManagementLimit(self.handle, int(round(watts * 1000)))
                applied = True
            self.log.append(Action(time.time(), "power_limit_w", float(watts), applied))

    def lock_sm_clocks(self, min_mhz: float, max_mhz: float | None = None) -> None:
        max_mhz = min_mhz if max_mhz is None else max_mhz
        with self._lock:
            applied = False
            if self.allow_writes:
                if not self._clocks_locked:
                    self._orig_locked = self._read_locked_clocks()
                self._clocks_locked = True  # before the call: a half-done lock is still undone
                self.nvml.nvmlDeviceSetGpuLockedClocks(self.handle, int(min_mhz), int(max_mhz))
                applied = True
            self.log.append(Action(time.time(), "sm_clocks_mhz", (float(min_mhz), float(max_mhz)), applied))

    def apply(self, decision) -> None:
        """Apply an `EnergyDecision`'s power limit (the knob the DNN-job policies set)."""
        if decision.power_limit_w is not None:
            self.set_power_limit(decision.power_limit_w)

    @property
    def pending_restore(self) -> bool:
        return self._orig_power_mw is not None or self._clocks_locked

    # --- restore ---------------------------------------------------------------------------
    def _read_locked_clocks(self) -> tuple[int, int] | None:
        """The SM clock range locked before our first change: from the binding when it can read
        it, else what the caller said; None means unlocked or unknown (restore resets)."""
        getter = getattr(self.nvml, "nvmlDeviceGetGpuLockedClocks", None)
        if getter is not None:
            try:
                got = getter(self.handle)
            except Exception:  # noqa: BLE001 - unsupported: fall back to what the caller said
                got = None
            else:
                return None if got is None else (int(got[0]), int(got[1]))
        if self._given_locked is not None:
            return int(self._given_locked[0]), int(self._given_locked[1])
        return None

    def restore(self) -> None:
        """Put every knob this actuator changed back to its original setting (idempotent).

        Every knob is tried even if another fails; the first failure is raised afterwards."""
        with self._lock:
            if not self.allow_writes:
                return
            errors: list[BaseException] = []
            if self._orig_power_mw is not None:
                try:
                    self.nvml.nvmlDeviceSetPowerManagementLimit(self.handle, self._orig_power_mw)
                    self.log.append(Action(time.time(), "power_limit_w", self._orig_power_mw / 1000.0, True))
                    self._orig_power_mw = None
                except Exception as err:  # noqa: BLE001 - the clocks are restored regardless
                    errors.append(err)
            if self._clocks_locked:
                try:
                    if self._orig_locked is not None:
                        lo, hi = self._orig_locked
                        self.nvml.nvmlDeviceSetGpuLockedClocks(self.handle, lo, hi)
                        self.log.append(Action(time.time(), "sm_clocks_mhz", (float(lo), float(hi)), True))
                    else:
                        self.nvml.nvmlDeviceResetGpuLockedClocks(self.handle)
                        self.log.append(Action(time.time(), "reset_sm_clocks", None, True))
                    self._clocks_locked = False
                    self._orig_locked = None
                except Exception as err:  # noqa: BLE001
                    errors.append(err)
            if errors:
                raise errors[0]

    def close(self) -> None:
        """Restore, then give the signal handlers back (also when restoring failed)."""
        try:
            self.restore()
        finally:
            for sig, prev in self._prev_handlers.items():
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, prev)
            self._prev_handlers.clear()
            if self.allow_writes:
                atexit.unregister(self.restore)

    def _on_signal(self, signum, frame) -> None:
        prev = self._prev_handlers.get(signum)
        try:
            self.close()  # restores, then gives the handlers back
        finally:
            self._forward(signum, frame, prev)

    @staticmethod
    def _forward(signum, frame, prev) -> None:
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_IGN:
            return
        else:  # default action: re-deliver with the default handler
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def __enter__(self) -> GPUActuator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
