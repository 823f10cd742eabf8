"""`orrery trace check`: the documented examples pass; bad rows are listed with their lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orrery.experiments.cli import main
from orrery.traces.check import KINDS, check_trace

DOCS = Path(__file__).resolve().parents[2] / "docs" / "traces"


def _example(kind: str) -> str:
    text = (DOCS / f"{kind}.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```csv\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, f"docs/traces/{kind}.md should hold one csv example"
    return blocks[0]


@pytest.mark.parametrize("kind", KINDS)
def test_documented_example_passes(kind, tmp_path, capsys):
    f = tmp_path / f"example_{kind}.csv"
    f.write_text(_example(kind), encoding="utf-8")
    assert main(["trace", "check", str(f), "--kind", kind]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and ("rows: 3" in out or "rows: 4" in out)


@pytest.mark.parametrize(
    ("kind", "text", "bad"),
    [
        ("llm", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:01,1,1\n2024-05-10 00:00:00,1,1\n"
                "\nbad-time,1,1\n2024-05-10 00:00:05,-3,1.5\n", {3: "earlier", 5: "unparsable", 6: "negative"}),
        ("carbon", "location,timestamp,duration,value\nX,2022-10-20T00:00:00+00:00,30,600\n"
                   "X,2022-10-20T00:00:00+00:00,30,610\nX,2022-10-20T00:40:00+00:00,30,-1\n",
         {3: "duplicated", 4: "negative"}),
        ("availability", "ID,start,end\na,0,100\na,50,200\nb,10,5\nc,x,9\n",
         {3: "overlaps", 4: "end 5 <= start 10", 5: "not a number"}),
        ("failures", "0,add,node1\n10,remove,node2\n5,add,node3\n20,explode,node1\n",
         {2: "removed but not present", 3: "goes backwards", 4: "event kind"}),
    ],
)
def test_bad_rows_are_listed_with_their_lines(kind, text, bad, tmp_path, capsys):
    f = tmp_path / "mine.csv"
    f.write_text(text, encoding="utf-8")
    rep = check_trace(f, kind)
    found: dict[int, str] = {}
    for p in rep.problems:
        found[p.line] = found.get(p.line, "") + " | " + p.message
    for line, what in bad.items():
        assert line in found and what in found[line], (line, found)
    assert main(["trace", "check", str(f), "--kind", kind]) == 2
    cap = capsys.readouterr()
    assert f"line {min(bad)}" in cap.out and "Traceback" not in cap.err
    assert f"{f}, line {min(bad)}" in cap.err  # the one-paragraph error names file and line


def test_summary_figures_and_json(tmp_path, capsys):
    f = tmp_path / "t.csv"
    rows = "".join(f"2024-05-10 00:{m:02d}:00,{100 + m},{10}\n" for m in range(0, 60))
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    assert main(["trace", "check", str(f), "--kind", "llm", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["rows"] == 60
    assert rep["summary"]["span_s"] == 59 * 60
    assert rep["summary"]["mean_rate_rps"] == pytest.approx(1 / 60)
    assert rep["summary"]["prompt_tokens_mean"] == pytest.approx(129.5)


def test_error_cap_counts_the_rest(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("ID,start,end\n" + "a,5,1\n" * 50)
    rep = check_trace(f, "availability", max_errors=5)
    assert len(rep.problems) == 5 and rep.n_problems == 50


def test_real_shared_files_pass(shared_data):
    for kind, name in [("llm", "llm/azure_llm_2023_code.csv"), ("carbon", "carbon/chase_miso_2022-10.csv"),
                       ("failures", "failures/spot_g4dn-trace.csv"),
                       ("failures", "failures/gcp_a100_spot_count_2021-12.txt")]:
        assert check_trace(shared_data / name, kind).ok, name
