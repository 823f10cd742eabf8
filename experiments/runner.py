"""Study runner: control first, then treatments, every group over its seeds, on any backend.

One code path for every backend: the runner submits `execute(task)` (a plain, picklable
function of a dict holding the scenario and the domain name) and gets back the run's Parquet
bytes and a result digest; only the driver writes files, so remote Dask workers need no shared
filesystem. Backends: in-process (`--jobs 1`), a local process pool (default) and Dask (a
scheduler address, or `local` for a `distributed.LocalCluster`).

Reproducibility: the first seed of every group runs a second time and its result digest must
equal the first run's; a mismatch is reported in the manifest and fails the study.

Nothing lost: the results folder is locked while the study runs (a second writer gets a clear
error, or waits), holds one study and scale, and a run's key is its scenario hash plus the hash
of every parameter and data file it reads (`inputs_hash`), so changed inputs re-run. Pool
workers die with the driver (parent-death signal plus a watchdog thread), and an interrupted
driver (Ctrl-C, SIGTERM, SIGHUP) terminates its workers before it exits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.util
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import as_completed as cf_as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from orrery.core.errors import OrreryInputError
from orrery.core.files import sha256_file
from orrery.experiments.plugins import load_plugins, plugin_modules
from orrery.experiments.store import (
    ResultsStore,
    RunRecord,
    code_version,
    encode_run,
    host_info,
    package_versions,
    read_run,
    result_digest,
)
from orrery.experiments.study import (
    Study,
    data_paths,
    resolve_data_path,
    validate_setup,
)
from orrery.experiments.tasks import Mode, RunOutcome, RunTask

MANIFEST_EVERY_S = 2.0

# where a run's live progress goes: a queue inherited by forked pool workers, or a direct sink
# in-process; None: no live progress (not a terminal, --quiet, Dask)
_LIVE: Any = None


class StudyFailed(RuntimeError):
    """Runs failed or did not reproduce (an internal error: exit status 1)."""


class RunInputError(OrreryInputError):
    """A run rejected its scenario as bad input."""


# ----------------------------------------------------------------------------- the worker side


def execute(task: RunTask) -> RunOutcome:
    """Run one scenario (in whatever process or worker this lands on) and encode its result."""
    t0 = time.perf_counter()
    try:
        load_plugins(task.plugins)
        from orrery.sim.domains import get_domain

        domain = get_domain(task.domain)
        sc = domain.scenario_type.from_dict(task.scenario, source=f"run {task.run_id}")
        if sc.stable_hash() != task.scenario_hash:
            raise RuntimeError(
                f"scenario of run {task.run_id} changed on its way to the worker "
                f"({task.scenario_hash} -> {sc.stable_hash()}): it does not round-trip through JSON"
            )
        from orrery.sim import progress as sim_progress

        with sim_progress.reporting(_live_reporter(task.run_id)):
            res = domain.run(sc)
        missing = [m for m in task.metrics if m not in res.metrics]
        if missing:
            raise RuntimeError(f"domain {task.domain!r} did not produce metrics {missing}")
        metrics = {k: float(v) for k, v in res.metrics.items()}
        digest = result_digest(metrics, res.table, res.series)
        payload = None
        if task.mode == "store":
            payload = encode_run(
                run_id=task.run_id,
                group=task.group,
                values=task.values,
                seed=task.seed,
                scenario=task.scenario,
                scenario_hash=task.scenario_hash,
                domain=task.domain,
                metrics=metrics,
                table=res.table,
                series=res.series,
                digest=digest,
                inputs_hash=task.inputs_hash,
            )
        return RunOutcome(task.run_id, task.mode, True, time.perf_counter() - t0, digest=digest, payload=payload)
    except Exception as err:  # noqa: BLE001 - shipped back to the driver as data
        return RunOutcome(
            task.run_id,
            task.mode,
            False,
            time.perf_counter() - t0,
            error=f"{type(err).__name__}: {err}",
            input_error=isinstance(err, OrreryInputError),
            traceback=traceback.format_exc(),
        )


def _live_reporter(run_id: str):
    """A progress callback that forwards (worker, run, sim time, horizon, events) to the driver."""
    sink = _LIVE
    if sink is None:
        return None
    worker = os.getpid()

    def report(sim_s: float, horizon_s: float, events: int) -> None:
        try:
            sink.put_nowait((worker, run_id, sim_s, horizon_s, events))
        except (queue.Full, OSError, ValueError):
            pass  # progress is best effort: never slow down or fail a run for it

    return report


class _DirectSink:
    """In-process runs: hand progress straight to the display."""

    def __init__(self, fn: Callable[..., None]):
        self.fn = fn

    def put_nowait(self, item: tuple) -> None:
        self.fn(*item)


class _LiveChannel:
    """Carries live progress from local pool workers (a fork-inherited queue) to `fn`."""

    def __init__(self, fn: Callable[..., None], jobs: int):
        global _LIVE
        self.fn, self.thread, self.q = fn, None, None
        self._stop = threading.Event()
        if jobs <= 1:
            _LIVE = _DirectSink(fn)
        elif "fork" in multiprocessing.get_all_start_methods():
            self.q = multiprocessing.get_context("fork").Queue(maxsize=10_000)
            _LIVE = self.q  # set before the pool forks its workers: they inherit it

    def start(self) -> None:
        if self.q is not None:
            self.thread = threading.Thread(target=self._pump, name="orrery-live-progress", daemon=True)
            self.thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            except (OSError, ValueError, EOFError):
                return
            try:
                self.fn(*item)
            except Exception:  # noqa: BLE001 - a display problem must not stop the study
                pass

    def stop(self) -> None:
        global _LIVE
        _LIVE = None
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        if self.q is not None:
            self.q.close()
            self.q.cancel_join_thread()


# ----------------------------------------------------------------------------- backends


class Backend(Protocol):
    name: str

    def map_unordered(self, fn: Callable, items: list) -> Iterator[Any]: ...

    def close(self, abort: bool = False) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class InProcessBackend:
    """`--jobs 1`: run everything here, in order (easiest to debug)."""

    name = "inprocess"

    def map_unordered(self, fn: Callable, items: list) -> Iterator[Any]:
        for it in items:
            yield fn(it)

    def close(self, abort: bool = False) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": self.name, "jobs": 1}


PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_EVERY_S = 0.5


def _worker_init(driver_pid: int) -> None:
    """In each pool worker: die with the driver. Linux delivers SIGKILL when the driver exits
    (prctl PR_SET_PDEATHSIG); elsewhere, and as a backstop, a daemon thread exits the worker
    once its parent changes. SIGINT and SIGHUP are the driver's to handle: it terminates the
    workers itself (a terminal's Ctrl-C reaches the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the driver's handler: terminate() kills
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != driver_pid:  # the driver died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == driver_pid:
            time.sleep(WATCHDOG_EVERY_S)
        os._exit(1)

    threading.Thread(target=watch, name="orrery-parent-watchdog", daemon=True).start()


class LocalPoolBackend:
    """A local process pool (fork where available: workers inherit registered plugins)."""

    name = "local"

    def __init__(self, jobs: int):
        self.jobs = jobs
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        self.pool = ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )
        # start the workers now, before any progress-bar thread exists (fork + threads)
        self.pool.submit(int, 0).result()

    def map_unordered(self, fn: Callable, items: list) -> Iterator[Any]:
        futures: list[Future] = [self.pool.submit(fn, it) for it in items]
        try:
            for f in cf_as_completed(futures):
                yield f.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self, abort: bool = False) -> None:
        """Shut the pool down; `abort` (an interrupted study) terminates running workers
        instead of waiting for their runs to finish."""
        if abort:
            procs = list((getattr(self.pool, "_processes", None) or {}).values())
            for p in procs:
                with contextlib.suppress(Exception):
                    p.terminate()
            for p in procs:
                with contextlib.suppress(Exception):
                    p.join(timeout=5)
                    if p.is_alive():
                        p.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.name, "jobs": self.jobs}


class DaskBackend:
    """A Dask cluster: `tcp://host:port`, or `local` for a `LocalCluster` started here."""

    name = "dask"

    def __init__(self, address: str, jobs: int | None = None, **local_kwargs: Any):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise OrreryInputError(
                "--dask needs dask.distributed: pip install 'orrery[dask]'"
            ) from None
        self.address = address
        self.cluster = None
        if address == "local":
            kw = {
                "n_workers": jobs or os.cpu_count() or 1,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
            kw.update(local_kwargs)
            self.cluster = LocalCluster(**kw)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(address, timeout="10s")
            except (OSError, TimeoutError) as err:
                raise OrreryInputError(f"cannot reach the Dask scheduler at {address}: {err}") from None

    def map_unordered(self, fn: Callable, items: list) -> Iterator[Any]:
        from distributed import as_completed

        futures = [self.client.submit(fn, it, pure=False) for it in items]
        try:
            for _, result in as_completed(futures, with_results=True):
                yield result
        finally:
            for f in futures:
                f.release()

    def close(self, abort: bool = False) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def describe(self) -> dict[str, Any]:
        info = self.client.scheduler_info() if self.client else {}
        return {
            "kind": self.name,
            "address": self.address,
            "workers": len(info.get("workers", {})),
        }


def check_jobs(jobs: int | None) -> None:
    """`--jobs` is a count >= 1 or absent (one per core); 0 is an error, not 'all cores'."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise OrreryInputError(f"--jobs must be an integer >= 1 (or left out for one per core), got {jobs!r}")


def make_backend(jobs: int | None = None, dask: str | None = None, **dask_local_kwargs: Any) -> Backend:
    check_jobs(jobs)
    if dask:
        return DaskBackend(dask, jobs, **dask_local_kwargs)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        return InProcessBackend()
    return LocalPoolBackend(jobs)


# ----------------------------------------------------------------------------- the driver


class Progress(Protocol):
    """`start(runs to do, runs resumed, reproducibility re-runs to do)`; `advance(label, repro)`
    after each finished run (`repro`: it was a reproducibility re-run, counted apart). It may
    also have `live(worker, run_id, sim_s, horizon_s, events)`: then simulators' live progress
    reaches it (local and in-process backends)."""

    def start(self, total: int, resumed: int, repro_total: int = 0) -> None: ...

    def advance(self, label: str, repro: bool = False) -> None: ...

    def stop(self) -> None: ...


class _NoProgress:
    def start(self, total: int, resumed: int, repro_total: int = 0) -> None:
        pass

    def advance(self, label: str, repro: bool = False) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class StudyResult:
    study: Study
    out: Path
    records: list[RunRecord]
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    manifest: dict[str, Any]
    executed: int = 0
    resumed: int = 0
    failures: list[RunOutcome] = field(default_factory=list)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_out(study: Study) -> Path:
    """`results/<study>/`, or `results/<study>-<scale>/` for a scale variant (never mixed)."""
    return Path("results") / (study.name if not study.scale else f"{study.name}-{study.scale}")


PARAM_PACKAGES = ("orrery.hwmodels", "orrery.workloads", "orrery.traces", "orrery.sim")


def shipped_param_files() -> list[Path]:
    """Every fitted-parameter file the package ships (`<package>/params/*.json`): a run may read
    any of them, so each is part of every run's inputs hash."""
    out: list[Path] = []
    for name in PARAM_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            out += sorted((Path(loc) / "params").glob("*.json"))
    return out


class InputsHasher:
    """The hash of every parameter and data file a run reads: the shipped parameter files plus
    every file its scenario names (`*_path` keys and `shared:` values). Files are hashed once."""

    def __init__(self) -> None:
        self._sha: dict[Path, str] = {}
        self._base: list[tuple[str, str]] | None = None

    def _file(self, p: Path) -> str:
        if p not in self._sha:
            try:
                self._sha[p] = sha256_file(p) if p.is_file() else "missing"
            except OSError as err:
                raise OrreryInputError(f"cannot read input file {p}: {err.strerror or err}") from None
        return self._sha[p]

    def files(self, scenario: Any) -> dict[str, str]:
        """path -> sha256 of the files this scenario's run reads."""
        if self._base is None:
            self._base = [(str(p), self._file(p)) for p in shipped_param_files()]
        out = dict(self._base)
        for _key, value in sorted(data_paths(scenario).items()):
            p = resolve_data_path(value)
            out[str(p)] = self._file(p)
        return out

    def __call__(self, scenario: Any) -> str:
        payload = "\n".join(f"{sha}  {Path(p).name}" for p, sha in sorted(self.files(scenario).items()))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_study(
    study: Study,
    out: str | Path | None = None,
    *,
    jobs: int | None = None,
    dask: str | None = None,
    plugins: Iterable[str] = (),
    progress: Progress | None = None,
    dask_local_kwargs: dict[str, Any] | None = None,
    wait: bool = False,
    force: bool = False,
    writer: Callable[[StudyResult], object] | None = None,
) -> StudyResult:
    """Validate, run (resuming), check reproducibility, write the runs and the manifest.

    The results folder is locked for the whole call (`wait`: wait for another writer instead of
    failing) and must hold this study at this scale, or nothing (`force`: delete what it holds).
    `writer(result)` (the CLI passes `report.write_result`: summary, plots, report.md) is
    called once the runs are collected, also when some failed, before the failure is raised.
    """
    check_jobs(jobs)
    setup = validate_setup(study)
    out_dir = Path(out) if out is not None else default_out(study)
    store = ResultsStore(out_dir)
    with store.lock(wait=wait):
        store.check_owner({"name": study.name, "scale": study.scale}, force=force)
        store.prepare()
        return _run_locked(study, store, setup, jobs=jobs, dask=dask, plugins=plugins, progress=progress,
                           dask_local_kwargs=dask_local_kwargs, writer=writer)


def _run_locked(
    study: Study,
    store: ResultsStore,
    setup: Any,
    *,
    jobs: int | None,
    dask: str | None,
    plugins: Iterable[str],
    progress: Progress | None,
    dask_local_kwargs: dict[str, Any] | None,
    writer: Callable[[StudyResult], object] | None,
) -> StudyResult:
    out_dir = store.root
    progress = progress or _NoProgress()
    plugins = plugin_modules(plugins)
    # workers that did not inherit this process (spawn, Dask) import the domain's module too
    home = getattr(study.domain.run, "__module__", None)
    if home and home != "__main__" and home not in plugins:
        plugins.append(home)

    old = store.load_manifest()
    old_runs = old.get("runs", {}) if old.get("study", {}).get("name") == study.name else {}

    started = _now()
    manifest: dict[str, Any] = {
        "study": study.describe().to_dict(),
        "name": study.name,
        "hypothesis": study.spec.study.hypothesis,
        "status": "running",
        "command": sys.argv,
        "started_at": started,
        "finished_at": None,
        "host": host_info(),
        "code": code_version(),
        "packages": package_versions(),
        "data_files": setup.data_files,
        "setup_checks": setup.checks,
        "backend": None,
        "runs": {},
        "counts": {},
        "reproducibility": {"ok": None, "checks": []},
        "attempts": old.get("attempts", []) if old_runs else [],
    }

    # what is already done (resume): same scenario and same parameter/data files
    hasher = InputsHasher()
    inputs = {r.run_id: hasher(r.scenario) for r in study.runs()}
    records: dict[str, RunRecord] = {}
    for r in study.runs():
        rec = store.finished(r.run_id, r.scenario_hash, inputs[r.run_id])
        if rec is not None:
            records[r.run_id] = rec
    resumed = len(records)
    manifest["param_files"] = dict(hasher._base or [])
    # a reproducibility check done earlier counts only for a run that is kept as it was
    old_repro = {
        c["run_id"]: c for c in old.get("reproducibility", {}).get("checks", [])
        if c.get("identical") and old_runs and c.get("run_id") in records
    }
    for r in study.runs():
        prev = old_runs.get(r.run_id, {})
        manifest["runs"][r.run_id] = {
            "group": r.group,
            "seed": r.seed,
            "scenario_hash": r.scenario_hash,
            "inputs_hash": inputs[r.run_id],
            "status": "resumed" if r.run_id in records else "pending",
            "wall_s": prev.get("wall_s") if r.run_id in records else None,
            "digest": records[r.run_id].digest if r.run_id in records else None,
        }
    store.save_manifest(manifest)

    def task(r, mode: Mode) -> RunTask:
        return RunTask(
            run_id=r.run_id,
            group=r.group,
            values=r.values,
            seed=r.seed,
            scenario=r.scenario_dict,
            scenario_hash=r.scenario_hash,
            inputs_hash=inputs[r.run_id],
            domain=study.domain.name,
            metrics=tuple(study.spec.study.metrics),
            plugins=tuple(plugins),
            mode=mode,
        )

    repro_run = {g.label: g.runs[0] for g in study.groups}
    phases = [
        [g for g in study.groups if g.role == "control"],
        [g for g in study.groups if g.role != "control"],
    ]
    todo_runs = sum(1 for r in study.runs() if r.run_id not in records)
    todo_repro = sum(1 for r in repro_run.values() if r.run_id not in old_repro)
    failures: list[RunOutcome] = []
    repro_second: dict[str, RunOutcome] = {}
    executed = 0
    live_fn = getattr(progress, "live", None)
    channel = _LiveChannel(live_fn, jobs or os.cpu_count() or 1) if live_fn and not dask else None
    try:
        backend = make_backend(jobs, dask, **(dask_local_kwargs or {}))
    except BaseException:
        if channel is not None:
            channel.stop()
        raise
    manifest["backend"] = backend.describe()
    t_start = last_save = time.perf_counter()
    aborted = True
    try:
        if channel is not None:
            channel.start()
        progress.start(todo_runs, resumed, todo_repro)
        for phase in phases:
            tasks = []
            for g in phase:
                for r in g.runs:
                    if r.run_id not in records:
                        tasks.append(task(r, "store"))
                rr = repro_run[g.label]
                if rr.run_id not in old_repro:
                    tasks.append(task(rr, "digest"))
            for res in backend.map_unordered(execute, tasks):
                entry = manifest["runs"][res.run_id]
                if not res.ok:
                    failures.append(res)
                    if res.stored:
                        entry["status"] = "failed"
                        entry["error"] = res.error
                elif res.stored:
                    store.write(res.run_id, res.payload)
                    executed += 1
                    entry.update(status="done", wall_s=round(res.wall_s, 6), digest=res.digest)
                else:
                    repro_second[res.run_id] = res
                progress.advance(entry["group"], repro=not res.stored)
                if time.perf_counter() - last_save > MANIFEST_EVERY_S:
                    store.save_manifest(manifest)  # so a killed study keeps its wall times
                    last_save = time.perf_counter()
            if failures:
                break  # a failing control group stops the study before the treatments
        aborted = False
    finally:
        progress.stop()
        backend.close(abort=aborted)
        if aborted:  # interrupted (Ctrl-C, SIGTERM, SIGHUP) or crashed: keep what is known
            manifest["status"] = "interrupted"
            with contextlib.suppress(Exception):
                store.save_manifest(manifest)
        if channel is not None:
            channel.stop()

    # reproducibility
    checks = []
    for g in study.groups:
        rr = repro_run[g.label]
        first = manifest["runs"][rr.run_id].get("digest")
        if rr.run_id in old_repro and old_repro[rr.run_id].get("first") == first:
            checks.append({**old_repro[rr.run_id], "group": g.label})
            continue
        second = repro_second[rr.run_id].digest if rr.run_id in repro_second else None
        if first is None or second is None:
            continue
        checks.append(
            {"group": g.label, "run_id": rr.run_id, "first": first, "second": second, "identical": first == second}
        )
    repro_ok = bool(checks) and all(c["identical"] for c in checks) and len(checks) == len(study.groups)
    manifest["reproducibility"] = {"ok": repro_ok, "checks": checks}

    # collect what is stored (reading the files back: what the user will analyse)
    for r in study.runs():
        if r.run_id not in records and manifest["runs"][r.run_id]["status"] == "done":
            records[r.run_id] = read_run(store.run_path(r.run_id))
    finished = _now()
    manifest["finished_at"] = finished
    manifest["wall_s"] = round(time.perf_counter() - t_start, 3)
    manifest["counts"] = {
        "total": len(study.runs()),
        "executed": executed,
        "resumed": resumed,
        "failed": sum(1 for f in failures if f.stored),
        "repro_failed": sum(1 for f in failures if not f.stored),
    }
    manifest["attempts"] = [
        *manifest["attempts"],
        {"started_at": started, "finished_at": finished, "executed": executed, "resumed": resumed},
    ]
    mismatched = [c for c in checks if not c["identical"]]
    manifest["status"] = "complete" if not failures and not mismatched and repro_ok else "failed"
    store.save_manifest(manifest)

    ordered = [records[r.run_id] for r in study.runs() if r.run_id in records]
    from orrery.experiments import stats

    summary, comparisons = stats.summarize(study.describe(), ordered)
    result = StudyResult(study, out_dir, ordered, summary, comparisons, manifest, executed, resumed, failures)
    if writer is not None and ordered:
        writer(result)

    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more; see {store.manifest_path})" if len(failures) > 1 else ""
        msg = f"run {first.run_id} failed: {first.error}{more}"
        if all(f.input_error for f in failures):
            raise RunInputError(msg)
        err = StudyFailed(msg)
        err.detail = first.traceback  # type: ignore[attr-defined]
        raise err
    if mismatched:
        c = mismatched[0]
        raise StudyFailed(
            f"reproducibility check failed: run {c['run_id']} (group {c['group']}) gave different "
            f"results when run twice (digest {c['first'][:12]} vs {c['second'][:12]}); the domain's "
            "run is not a pure function of its scenario"
        )
    return result

