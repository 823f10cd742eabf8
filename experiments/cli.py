"""The `orrery` command.

Subcommands are a small table: adding one is one function decorated with `@command(...)`
(its name, help and arguments). Exit status: 0 success, 2 bad input (one-paragraph message,
no traceback unless `--debug`), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


def arg(*names: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argparse argument, as `command(...)` takes it."""
    return names, kwargs


COMMANDS: dict[str, tuple[str, list, Callable[[argparse.Namespace], int | None]]] = {}


def command(name: str, help: str, *args: tuple) -> Callable:  # noqa: A002
    """Register a subcommand: `@command("validate", "check a study", arg("study"))`."""

    def deco(fn: Callable[[argparse.Namespace], int | None]) -> Callable:
        COMMANDS[name] = (help, list(args), fn)
        return fn

    return deco


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)


# ----------------------------------------------------------------------------- run / validate

DEFAULT_MAX_RUNS = 100_000


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (`--jobs 0` is an error, not 'all cores')."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


MAX_RUNS_ARG = arg("--max-runs", type=positive_int, metavar="N", default=DEFAULT_MAX_RUNS,
                   help=f"refuse a study that expands to more runs than N (default {DEFAULT_MAX_RUNS:,})")


STATS_ARGS = (
    arg("--alpha", type=float, metavar="A", help="significance level after correction (default: the study's, 0.05)"),
    arg("--correction", choices=["none", "bh", "holm"],
        help="multiple-comparison correction over treatments x metrics (default: the study's, bh)"),
)  # fmt: skip

RUN_ARGS = (
    arg("--out", metavar="DIR", help="results folder (default: results/<study name>/, "
        "results/<study name>-<scale>/ with --scale)"),
    arg("--scale", metavar="NAME", help="apply the study's [scales.NAME] overrides"),
    arg("--jobs", type=positive_int, metavar="N", help="parallel runs (default: number of cores; 1: in-process)"),
    arg("--dask", metavar="ADDR", help="run on Dask: a scheduler address tcp://host:port, or 'local'"),
    arg("--seeds", type=positive_int, metavar="N", help="override the study's seeds with 0..N-1"),
    arg("--fetch", action="store_true",
        help="download the registered data files the study needs first (same as ORRERY_AUTO_FETCH=1)"),
    arg("--wait", action="store_true", help="if another run writes to the results folder, wait for it"),
    arg("--force", action="store_true",
        help="the results folder holds another study (or scale): delete its results and start over"),
    MAX_RUNS_ARG,
    *STATS_ARGS,
    arg("--quiet", "-q", action="store_true", help="no progress display"),
)


class RichProgress:
    """A rich progress bar with ETA (on stderr): runs, and the reproducibility re-runs apart;
    the last finished group is shown whole (its case name included); and one live line per
    worker: its run, simulated time / horizon and events per second (from the simulators'
    progress callback)."""

    def __init__(self, study_name: str, console: Any = None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.name = study_name
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=console or _console(stderr=True),
            transient=False,
        )
        self.task = self.repro_task = None
        self.last = ""
        self.workers: dict[Any, Any] = {}  # worker id -> rich task
        self._rate: dict[Any, tuple[str, int, float]] = {}  # worker -> (run, events, wall time)

    def start(self, total: int, resumed: int, repro_total: int = 0) -> None:
        if resumed:
            self.bar.console.print(f"resuming: {resumed} finished run(s) kept")
        self.bar.start()
        self.task = self.bar.add_task(f"{self.name} runs", total=total, last="")
        if repro_total:
            self.repro_task = self.bar.add_task("reproducibility re-runs", total=repro_total, last="")

    def advance(self, label: str, repro: bool = False) -> None:
        task = self.repro_task if repro and self.repro_task is not None else self.task
        self.last = label
        self.bar.update(task, advance=1, last=label)  # whole: the case name is at its end

    def live(self, worker: Any, run_id: str, sim_s: float, horizon_s: float, events: int) -> None:
        """One worker's running simulation: simulated time / horizon and events per second."""
        import time

        now = time.perf_counter()
        prev = self._rate.get(worker)
        eps = None
        if prev is not None and prev[0] == run_id and now > prev[2]:
            eps = (events - prev[1]) / (now - prev[2])
        if prev is None or prev[0] != run_id or now - prev[2] >= 1.0:
            self._rate[worker] = (run_id, events, now)
        known = horizon_s == horizon_s and horizon_s > 0
        text = f"{run_id[:48]}  t={sim_s:,.0f}" + (f"/{horizon_s:,.0f}" if known else "") + " s sim"
        if eps is not None:
            text += f", {eps:,.0f} events/s"
        if worker not in self.workers:
            self.workers[worker] = self.bar.add_task(f"  worker {len(self.workers) + 1}", total=None, last="")
        self.bar.update(self.workers[worker], total=horizon_s if known else None,
                        completed=min(sim_s, horizon_s) if known else 0, last=text)  # fmt: skip

    def stop(self) -> None:
        for task in self.workers.values():
            self.bar.remove_task(task)
        self.workers.clear()
        self.bar.stop()


def make_progress(study_name: str, quiet: bool = False) -> RichProgress | None:
    """The progress display, or None when stderr is not a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return None
    return RichProgress(study_name)


def print_summary(result: Any) -> None:
    """The short verdict table (one line per claim) and where the full tables are."""
    from rich.table import Table

    con = _console()
    study = result.study
    comp = result.comparisons
    desc = study.describe()
    if comp is not None and len(comp):
        n = int(comp["p_adjusted"].notna().sum())
        table = Table(
            title=f"{study.name}: claims, treatment vs control (alpha {desc.alpha:g}, "
            f"{_correction_words(desc.correction)} over {n} comparisons)"
        )
        for col, just in (("metric", "left"), ("claim", "left"), ("supported", "right"),
                          ("inconclusive", "right"), ("not supported", "right"),
                          ("treatment/control", "right")):  # fmt: skip
            table.add_column(col, justify=just)
        for metric, sub in comp.groupby("metric", sort=False):
            counts = sub["verdict"].value_counts()
            ratios = sub["ratio"].dropna()
            spread = f"x{ratios.min():.3g}..x{ratios.max():.3g}" if len(ratios) else ""
            if len(ratios) == 1:
                spread = f"x{ratios.iloc[0]:.3g}"
            table.add_row(
                metric,
                str(sub["claim"].iloc[0]),
                f"[green]{counts.get('supported', 0)}[/]",
                str(counts.get("inconclusive", 0)),
                f"[red]{counts.get('not supported', 0)}[/]",
                spread,
            )
        con.print(table)
    m = result.manifest
    repro = m["reproducibility"]
    con.print(
        f"runs: {m['counts']['total']} ({result.executed} executed, {result.resumed} resumed); "
        f"reproducibility: {'OK' if repro['ok'] else 'FAILED'}; results in {result.out} "
        "(per-group table: summary.csv, report.md; per-seed: metrics.csv)"
    )


def _correction_words(correction: str) -> str:
    return {"bh": "Benjamini-Hochberg", "holm": "Holm", "none": "no correction"}.get(correction, correction)


def _run(args: argparse.Namespace, study_ref: str) -> int:
    from orrery.experiments.plugins import load_plugins, plugin_modules
    from orrery.experiments.report import write_result
    from orrery.experiments.runner import run_study
    from orrery.experiments.study import load_study

    load_plugins(plugin_modules(args.plugin or []))
    study = load_study(study_ref, scale=args.scale, seeds=args.seeds, max_runs=args.max_runs)
    study.alpha, study.correction = _stats_options(args)
    progress = make_progress(study.name, getattr(args, "quiet", False))
    result = run_study(
        study, args.out, jobs=args.jobs, dask=args.dask, plugins=args.plugin or [], progress=progress,
        wait=args.wait, force=args.force,
        writer=write_result,
    )
    print_summary(result)
    _note_skipped(_console(), study)
    return EXIT_OK


@command("run", "run a study (path or shipped study name)", arg("study"), *RUN_ARGS)
def cmd_run(args: argparse.Namespace) -> int:
    return _run(args, args.study)


@command("validate", "check a study's spec and setup without running it", arg("study"),
         arg("--scale", metavar="NAME"), arg("--seeds", type=positive_int, metavar="N"),
         arg("--fetch", action="store_true", help="download the registered data files it needs first"),
         MAX_RUNS_ARG)  # fmt: skip
def cmd_validate(args: argparse.Namespace) -> int:
    from orrery.experiments.plugins import load_plugins, plugin_modules
    from orrery.experiments.study import load_study, validate_setup

    load_plugins(plugin_modules(args.plugin or []))
    study = load_study(args.study, scale=args.scale, seeds=args.seeds, max_runs=args.max_runs)
    report = validate_setup(study)
    con = _console()
    n_groups = len(study.groups)
    con.print(
        f"study {study.name} ({study.source}): {n_groups} groups "
        f"({sum(g.role == 'control' for g in study.groups)} control), {len(study.seeds)} seeds, "
        f"{len(study.runs())} runs"
    )
    for line in report.lines():
        con.print(line)
    _note_skipped(con, study)
    return EXIT_OK


def _stats_options(args: argparse.Namespace) -> tuple[float | None, str | None]:
    alpha = getattr(args, "alpha", None)
    if alpha is not None and not 0 < alpha < 1:
        from orrery.core.errors import OrreryInputError

        raise OrreryInputError(f"--alpha must be between 0 and 1 (exclusive), got {alpha}")
    return alpha, getattr(args, "correction", None)


def _note_skipped(con, study) -> None:
    for case, missing in study.skipped_cases.items():
        con.print(f"note: optional case {case!r} skipped: data file {missing!r} not found"
                  + (" (`orrery data fetch NAME` or --fetch downloads registered files)"
                     if str(missing).startswith("shared:") else ""))
    if study.unrun_groups:
        shown = ", ".join(study.unrun_groups[:3]) + (", ..." if len(study.unrun_groups) > 3 else "")
        con.print(f"note: {len(study.unrun_groups)} grid point(s) are neither the control nor a named "
                  f"treatment and are not run: {shown}")


@command("report", "write DIR/report.md, report.html (and summary, tables, plots) from a results folder",
         arg("dir"), *STATS_ARGS)  # fmt: skip
def cmd_report(args: argparse.Namespace) -> int:
    from orrery.experiments.report import report_dir

    skipped: list[str] = []
    alpha, correction = _stats_options(args)
    path = report_dir(args.dir, plugins=args.plugin or [], skipped=skipped, alpha=alpha, correction=correction)
    for why in skipped:
        print(f"skipped corrupt run file: {why} (re-run the study to redo it)", file=sys.stderr)
    print(path)
    return EXIT_OK


@command("demo", "run the shipped quick serving study and print its summary",
         arg("--out", metavar="DIR"), arg("--jobs", type=positive_int, metavar="N"),
         arg("--wait", action="store_true"), arg("--force", action="store_true"),
         arg("--quiet", "-q", action="store_true", help="no progress display"))  # fmt: skip
def cmd_demo(args: argparse.Namespace) -> int:
    args.scale = args.dask = args.seeds = args.alpha = args.correction = None
    args.max_runs = DEFAULT_MAX_RUNS
    return _run(args, "serving_quick")


# ----------------------------------------------------------------------------- list / fit


def shipped_studies() -> dict[str, dict[str, str]]:
    """The studies shipped with orrery (`orrery run NAME`): name -> domain, hypothesis."""
    import tomllib

    from orrery.experiments.study import STUDIES_DIR

    out: dict[str, dict[str, str]] = {}
    for p in sorted(STUDIES_DIR.glob("*.toml")):
        try:
            s = tomllib.loads(p.read_text()).get("study", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue
        out[p.stem] = {"domain": str(s.get("domain", "")), "hypothesis": str(s.get("hypothesis", ""))}
    return out


def catalog() -> dict[str, Any]:
    """Registered policies by domain, simulator domains, GPUs, LLM models and shipped studies."""
    from orrery.policies import registry

    out: dict[str, Any] = {"policies": {}, "domains": {}, "gpus": {}, "models": {}, "studies": {},
                           "unavailable": {}}
    out["studies"] = shipped_studies()
    try:
        out["policies"] = registry.list_policies()
    except Exception:  # noqa: BLE001 - a domain under construction must not break `list`
        for d in registry.DOMAIN_PACKAGES:
            try:
                registry.load_domain(d)
            except Exception as err:  # noqa: BLE001
                out["unavailable"][f"orrery.policies.{d}"] = str(err)
        out["policies"] = {d: sorted(n) for d, n in sorted(registry._POLICIES.items())}
    from orrery.experiments.plugins import failed_plugins, origin_of

    out["policy_origins"] = {
        d: {n: origin_of(registry._POLICIES.get(d, {}).get(n)) for n in names} for d, names in out["policies"].items()
    }
    for name, err in failed_plugins().items():
        out["unavailable"][f"plugin {name}"] = err
    from orrery.sim import domains as sd

    for name, module in sd.DOMAIN_MODULES.items():
        try:
            sd.get_domain(name)
        except Exception as err:  # noqa: BLE001
            out["unavailable"][module] = str(err)
    for name, d in sorted(sd.registered_domains().items()):  # incl. plugin domains
        out["domains"][name] = {"description": d.description, "metrics": dict(d.metrics),
                                "origin": origin_of(d.run)}  # fmt: skip
    try:
        from orrery.hwmodels.gpus import GPUS

        out["gpus"] = {
            k: {"arch": g.arch, "mem_bytes": g.mem_bytes, "tdp_w": g.tdp_w} for k, g in GPUS.items()
        }
    except ImportError as err:
        out["unavailable"]["orrery.hwmodels.gpus"] = str(err)
    try:
        from orrery.hwmodels.llm import MODELS  # being written by the serving engineer

        out["models"] = {k: _model_info(m) for k, m in MODELS.items()}
    except ImportError as err:
        out["unavailable"]["orrery.hwmodels.llm"] = str(err)
    return out


def _model_info(m: Any) -> dict[str, Any]:
    fields = ("n_layers", "hidden_size", "n_heads", "n_kv_heads", "n_params", "params")
    return {f: getattr(m, f) for f in fields if hasattr(m, f)}


@command("list", "registered policies by domain, GPUs, LLM models and shipped studies",
         arg("--json", action="store_true", help="machine-readable output"),
         arg("--models", action="store_true", help="the LLM catalog: architecture facts and their sources"),
         arg("--gpus", action="store_true", help="the GPU catalog: datasheet numbers and their sources"))  # fmt: skip
def cmd_list(args: argparse.Namespace) -> int:
    if args.models or args.gpus:
        return _list_catalog(args)
    from orrery.experiments.plugins import load_plugins, plugin_modules

    load_plugins(plugin_modules(args.plugin or []))
    cat = catalog()
    if args.json:
        print(json.dumps(cat, indent=2, default=str))
        return EXIT_OK
    con = _console()
    con.print("[bold]policies[/] (origin in brackets unless built in)")
    for d, names in cat["policies"].items():
        origins = cat["policy_origins"].get(d, {})
        shown = [n + (f" [dim]\\[{origins[n]}][/]" if origins.get(n, "built-in") != "built-in" else "") for n in names]
        con.print(f"  {d}: {', '.join(shown) or '(none)'}")
    con.print("[bold]domains[/]")
    for d, info in cat["domains"].items():
        where = f" [dim]\\[{info['origin']}][/]" if info.get("origin", "built-in") != "built-in" else ""
        con.print(f"  {d}{where}: metrics {', '.join(f'{m} ({v})' for m, v in info['metrics'].items())}")
    con.print(f"[bold]gpus[/]: {', '.join(cat['gpus'])}")
    con.print(f"[bold]models[/]: {', '.join(cat['models']) or '(none)'}")
    con.print("[bold]shipped studies[/] (orrery run NAME)")
    for name, info in cat["studies"].items():
        con.print(f"  {name} ({info['domain']}): {info['hypothesis']}")
    for what, why in cat["unavailable"].items():
        con.print(f"[dim]not available: {what}: {why}[/]")
    return EXIT_OK


def _list_catalog(args: argparse.Namespace) -> int:
    """`orrery list --models` / `--gpus`: one row per catalog entry."""
    from orrery.hwmodels.gpus import gpu_table
    from orrery.hwmodels.llm import model_table

    out: dict[str, list[dict]] = {}
    if args.models:
        out["models"] = model_table()
    if args.gpus:
        out["gpus"] = gpu_table()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    from rich.table import Table

    con = _console()
    if args.models:
        t = Table(title="LLM catalog (public config.json; params derived from the architecture)")
        cols = ["name", "type", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "experts",
                "experts_per_token", "expert_ffn", "shared_experts", "vocab", "params_b", "active_params_b", "weights"]
        for c in cols:
            t.add_column(c)
        for r in out["models"]:
            t.add_row(*(str(r[c]) for c in cols))
        con.print(t)
        con.print("[dim]sources: " + "; ".join(f"{r['name']}: {r['source']}" for r in out["models"]) + "[/]")
    if args.gpus:
        t = Table(title="GPU catalog (dense tensor FLOP/s; `--json` gives the source of every number)")
        for c in ("name", "family", "mem_GB", "bw_TB/s", "fp16_TF", "fp8_TF", "fp4_TF", "link_GB/s", "TDP_W",
                  "limit_W", "idle_W"):
            t.add_column(c)
        for g in out["gpus"]:
            t.add_row(g["name"], g["family"] or g["arch"], f"{g['mem_bytes'] / 1e9:.0f}",
                      f"{g['mem_bw_bytes_per_s'] / 1e12:.2f}", f"{g['flops_fp16'] / 1e12:.0f}",
                      f"{g['flops_fp8'] / 1e12:.0f}", f"{g['flops_fp4'] / 1e12:.0f}",
                      f"{g['interconnect_bw_bytes_per_s'] / 1e9:.0f}", f"{g['tdp_w']:.0f}",
                      f"{g['power_limit_min_w']:.0f}-{g['power_limit_max_w']:.0f}", f"{g['idle_w']:.0f}")
        con.print(t)
    return EXIT_OK


@command("fit", "refit a hardware model from its data (e.g. `orrery fit llm --out my_fit.json`; "
         "never writes into the package)",
         arg("target", choices=["llm", "gpu-energy"]), arg("rest", nargs=argparse.REMAINDER))  # fmt: skip
def cmd_fit(args: argparse.Namespace) -> int:
    if args.target == "gpu-energy":
        from orrery.hwmodels import gpu_energy_transfer

        return int(gpu_energy_transfer.main(list(args.rest)) or 0)
    try:
        from orrery.hwmodels import fit_llm
    except ImportError as err:
        raise RuntimeError(f"orrery.hwmodels.fit_llm is not available: {err}") from err
    rc = fit_llm.main(list(args.rest))
    return int(rc or 0)


# ----------------------------------------------------------------------------- data


@command("data", "the real data files: list, fetch (checksummed, into the user cache), verify, path",
         arg("action", choices=["list", "fetch", "verify", "path"]),
         arg("names", nargs="*", metavar="NAME", help="data file names, folders (fl) or globs (llm/*)"),
         arg("--all", action="store_true", help="fetch: every registered file"),
         arg("--force", action="store_true", help="fetch: download again even if present"),
         arg("--json", action="store_true", help="list: machine-readable output"))  # fmt: skip
def cmd_data(args: argparse.Namespace) -> int:
    from orrery.experiments.datacmd import data_command

    return data_command(args, _console())


@command("trace", "check your own trace file against the documented format (docs/traces/)",
         arg("action", choices=["check"]), arg("file"),
         arg("--kind", required=True, choices=["llm", "carbon", "availability", "failures"]),
         arg("--max-errors", type=int, default=20, metavar="N", help="bad rows to report (default 20)"),
         arg("--json", action="store_true", help="print the findings as JSON"))  # fmt: skip
def cmd_trace(args: argparse.Namespace) -> int:
    from orrery.experiments.datacmd import trace_command

    return trace_command(args, _console())


# ----------------------------------------------------------------------------- real backend

REAL_ENGINE_ARGS = (
    arg("--device", default="auto", help="auto (CUDA if torch sees a GPU), cpu or cuda[:N]"),
    arg("--kv-tokens", type=int, metavar="N", help="KV-cache capacity of the real engine in tokens"),
    arg("--threads", type=int, metavar="N", help="CPU intra-op threads (default 1)"),
)


@command("calibrate", "profile the real engine and fit its latency (and power) model",
         arg("--backend", choices=["real"], default="real", help="what to calibrate (the real torch engine)"),
         arg("--out", metavar="FILE", help="parameter JSON (default results/calibration/real-<device>.json)"),
         arg("--quick", action="store_true", help="a smaller profiling grid (seconds)"),
         *REAL_ENGINE_ARGS)  # fmt: skip
def cmd_calibrate(args: argparse.Namespace) -> int:
    from orrery.realbackend.cli import calibrate_command

    return calibrate_command(args)


@command("validate-real", "run a serving study on the real engine and in the simulator; print the errors",
         arg("study", nargs="?", help="serving study or scenario TOML (default: the shipped CPU validation)"),
         arg("--params", metavar="FILE", help="calibration JSON (default: calibrate now, on this machine)"),
         arg("--time-scale", type=float, metavar="X", help="real seconds per workload second (default: auto)"),
         arg("--n-requests", type=int, metavar="N", help="override workload.n_requests"),
         arg("--policies", metavar="A,B", help="only these policies"),
         arg("--out", metavar="FILE", help="also write the error table as CSV"),
         arg("--no-drift-probe", action="store_true",
             help="simulate with the calibration as is (default: rescale it by a speed probe run "
                  "before and after each real case)"),
         *REAL_ENGINE_ARGS)  # fmt: skip
def cmd_validate_real(args: argparse.Namespace) -> int:
    import tomllib

    from orrery.experiments.study import load_study
    from orrery.realbackend.cli import scenario_from_toml, validate_real_command
    from orrery.realbackend.validate import SHIPPED_STUDY, scenarios_from_study

    path = args.study or str(SHIPPED_STUDY)
    try:
        is_study = os.path.isfile(path) and "study" in tomllib.loads(open(path, encoding="utf-8").read())
    except tomllib.TOMLDecodeError:
        is_study = False
    if is_study or not os.path.isfile(path):  # a study file or a shipped study's name
        scenarios = scenarios_from_study(load_study(path))
    else:
        scenarios = [(os.path.basename(path), scenario_from_toml(path))]
    return validate_real_command(args, scenarios)


# ----------------------------------------------------------------------------- main


# ----------------------------------------------------------------------------- plan


@command("plan", "deployment search: cheapest, greenest serving deployment meeting a QoE target",
         arg("plan", help="a plan TOML (or a shipped plan's name, e.g. azure_conv)"),
         arg("--out", metavar="DIR", help="results folder (default: results/plans/<plan name>/)"),
         arg("--jobs", type=int, metavar="N", help="parallel simulations (default: number of cores)"),
         arg("--dask", metavar="ADDR", help="simulate on Dask: tcp://host:port or 'local'"),
         arg("--exhaustive", action="store_true", help="simulate every point that fits (no pruning)"),
         arg("--budget-s", type=float, metavar="S",
             help="start no simulation after S wall seconds; points not reached are reported, a re-run goes on"))
def cmd_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orrery.experiments.plan import load_plan, search

    if args.budget_s is not None and not args.budget_s > 0:
        from orrery.core.errors import OrreryInputError

        raise OrreryInputError(f"--budget-s must be > 0 seconds, got {args.budget_s:g}")
    plan = load_plan(args.plan)
    out = Path(args.out) if args.out else Path("results") / "plans" / plan.name
    con = _console(stderr=True)
    con.print(f"plan {plan.name}: {len(plan.points)} configurations -> {out}")

    def progress(rec, row):
        con.print(f"  {row['key']}: {row['status']} {row.get('reason', '')[:90]} ({rec['wall_s']:.1f} s)")

    res = search(plan, out, jobs=args.jobs, dask=args.dask, prune=not args.exhaustive, progress=progress,
                 budget_s=args.budget_s)
    c = res.counts
    print(f"{c['configurations']} configurations: {c['simulated']} simulated, {c.get('twinned', 0)} settled by "
          f"a twin's run ({c['stopped_early']} stopped early), {c['resumed']} resumed, {c['pruned']} pruned without simulating, {c.get('unvisited', 0)} not reached; "
          f"{c['feasible']} feasible, "
          f"{len(res.pareto)} on the Pareto front; {res.wall_s:.1f} s")
    for o, r in res.best.items():
        print(f"best {o}: {r['key']}  cost {r['cost_usd_per_h']:.2f} $/h, energy {r['energy_j'] / 3.6e6:.2f} kWh, "
              f"carbon {r['carbon_g'] / 1e3:.2f} kg, QoE {r['qoe_mean']:.3f}")
    if not res.best:
        print("no configuration meets the constraints; see rejections.csv")
    print(f"wrote {out}/pareto.csv, pareto.png, points.csv, rejections.csv, summary.json")
    return EXIT_OK



def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks")  # fmt: skip
    common.add_argument("--plugin", action="append", metavar="MODULE", default=argparse.SUPPRESS,
                        help="import MODULE first (registers extra domains or policies); repeatable")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="orrery", description="Discrete-event simulation of ML-systems resource management",
        parents=[common],
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        for names, kwargs in args:
            p.add_argument(*names, **kwargs)
        p.set_defaults(func=fn)
    return parser


DISTRIBUTION = "orrery-sim"


def version() -> str:
    """The installed distribution's version (importlib.metadata), or 'unknown' when not installed."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: shut down like Ctrl-C (workers stopped, finished runs kept)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> dict[int, Any]:
    """SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt) in the main thread, so every
    `finally` and context manager runs as on Ctrl-C; a second signal while shutting down
    interrupts again (by default, Python would die on SIGTERM without cleaning up)."""
    import threading

    prev: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return prev
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            prev[sig] = signal.signal(sig, _raise_terminated)
    return prev


def _input_error_types() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from orrery.core.errors import OrreryInputError

    return (OrreryInputError, ValidationError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = getattr(args, "debug", False) or bool(os.environ.get("ORRERY_DEBUG"))
    args.plugin = getattr(args, "plugin", None) or []
    prev_auto_fetch = os.environ.get("ORRERY_AUTO_FETCH")
    if getattr(args, "fetch", False):  # workers and nested loads see it too (restored on return)
        os.environ["ORRERY_AUTO_FETCH"] = "1"
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    prev_handlers = install_signal_handlers()
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Terminated) else signal.SIGINT
        name = signal.Signals(signum).name if signum != signal.SIGINT else "interrupted"
        print(f"{name}: stopped; finished runs are kept (re-run the same command to resume)", file=sys.stderr)
        return 128 + int(signum)
    except Exception as err:  # noqa: BLE001 - turned into an exit status
        if isinstance(err, _input_error_types()):
            if args.debug:
                traceback.print_exc()
            print(f"orrery: error: {_one_paragraph(err)}", file=sys.stderr)
            return EXIT_INPUT
        if args.debug:
            traceback.print_exc()
            detail = getattr(err, "detail", "")
            if detail:
                print(detail, file=sys.stderr)
        print(
            f"orrery: internal error: {type(err).__name__}: {err}"
            + ("" if args.debug else " (run with --debug for the traceback)"),
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        for sig, handler in prev_handlers.items():
            signal.signal(sig, handler)
        if prev_auto_fetch is None:
            os.environ.pop("ORRERY_AUTO_FETCH", None)
        else:
            os.environ["ORRERY_AUTO_FETCH"] = prev_auto_fetch


def _one_paragraph(err: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        from orrery.core.config import describe_validation_error

        return describe_validation_error(err, err.title)
    return " ".join(str(err).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
