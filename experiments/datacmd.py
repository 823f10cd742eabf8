"""`orrery data list|fetch|verify|path` and `orrery trace check`: the commands' bodies.

Kept apart from `cli.py` (which only declares the arguments) so the data commands stay one
small module. Output is plain text (rich tables on a terminal); `--json` prints machine-readable
records. Bad input and failed downloads raise `OrreryInputError` subclasses (exit status 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orrery.core.errors import OrreryInputError
from orrery.traces import datastore


def _human(n: int | None, approx: bool = False) -> str:
    if n is None:
        return "?"
    x = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if x < 1000 or unit == "GB":
            s = f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
            return ("~" if approx else "") + s
        x /= 1000
    return str(n)


def _names(args: Any) -> list[str]:
    if getattr(args, "all", False):
        return sorted(datastore.registry())
    if not args.names:
        raise OrreryInputError(f"`orrery data {args.action}` needs data file names (or --all); "
                               "`orrery data list` shows them")
    return datastore.select(args.names)


def data_list(args: Any, console: Any) -> int:
    reg = datastore.registry()
    names = datastore.select(args.names) if args.names else sorted(reg)
    rows = []
    for n in names:
        e = reg[n]
        hit = datastore.locate(n)
        rows.append({
            "name": n,
            "bytes": e.size_bytes,
            "size": _human(e.size_bytes, approx=e.bytes is None),
            "license": e.license,
            "citation": e.citation,
            "cached": hit is not None and hit[0] == "cache",
            "found_in": hit[0] if hit else None,
            "path": str(hit[1]) if hit else None,
            "sha256": e.sha256,
            "trust_on_first_use": e.trust_on_first_use,
            "url": e.url,
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from rich.table import Table

    table = Table(title=f"{len(rows)} registered data files (cache: {datastore.cache_dir()})")
    for col in ("name", "size", "licence", "where", "citation"):
        table.add_column(col, overflow="fold")
    for r in rows:
        where = r["found_in"] or "-"
        if r["trust_on_first_use"]:
            where += " (hash recorded at first fetch)"
        table.add_row(r["name"], r["size"], r["license"], where, r["citation"])
    console.print(table)
    console.print("where: the first folder holding the file ($ORRERY_DATA, shared = ../shared/data, "
                  "cache); '-' = not present, `orrery data fetch NAME` downloads it")
    return 0


def data_fetch(args: Any, console: Any) -> int:
    names = _names(args)
    for n in names:
        hit = datastore.locate(n)
        if hit and not args.force:
            v = datastore.verify(n)
            if v.status == "ok":
                console.print(f"present: {n} ({hit[0]}: {hit[1]})")
                continue
        path = datastore.fetch(n, progress=True, force=args.force)
        console.print(f"fetched: {n} -> {path}")
    return 0


def data_verify(args: Any, console: Any) -> int:
    names = datastore.select(args.names) if args.names else sorted(datastore.registry())
    bad, present = [], 0
    for n in names:
        v = datastore.verify(n)
        if v.status == "missing":
            if args.names:
                console.print(f"missing: {n}: {v.detail}")
            continue
        present += 1
        line = f"{v.status}: {n} ({v.where}: {v.path})" + (f": {v.detail}" if v.detail else "")
        console.print(line)
        if v.status == "mismatch":
            bad.append(n)
    console.print(f"{present} of {len(names)} file(s) present, {len(bad)} with a wrong checksum")
    if bad:
        raise datastore.DataIntegrityError(
            f"checksum mismatch: {', '.join(bad)}; delete the file(s) and run `orrery data fetch "
            f"{' '.join(bad)} --force`"
        )
    if args.names and present < len(names):
        raise OrreryInputError("some named data files are missing; `orrery data fetch NAME` downloads them")
    return 0


def data_path(args: Any, console: Any) -> int:  # noqa: ARG001 - same signature as the others
    if not args.names:
        raise OrreryInputError("`orrery data path` needs a data file name")
    for n in args.names:
        name = n.removeprefix("shared:").strip("/")
        found = datastore.find(name)
        if found is None:
            looked = ", ".join(f"{label} {folder}" for label, folder in datastore.search_dirs())
            raise OrreryInputError(f"data file {name!r} not found (looked in {looked}); "
                                   f"{datastore.fetch_hint(name)}")
        print(found)
    return 0


DATA_ACTIONS = {"list": data_list, "fetch": data_fetch, "verify": data_verify, "path": data_path}


def data_command(args: Any, console: Any) -> int:
    return DATA_ACTIONS[args.action](args, console)


def trace_command(args: Any, console: Any) -> int:
    from orrery.traces.check import check_trace

    report = check_trace(Path(args.file), args.kind, max_errors=args.max_errors)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        for line in report.lines():
            console.print(line, markup=False)
    if not report.ok:
        raise report.error()
    return 0


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
