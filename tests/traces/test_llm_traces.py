"""Loaders for the Azure LLM trace and ShareGPT stats: real files and every malformed case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orrery.core.errors import OrreryInputError, TraceFormatError
from orrery.traces.llm import load_azure_llm, load_sharegpt_stats
from orrery.traces.paths import resolve_data_path

AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
SG_HEADER = "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n"


@pytest.mark.parametrize(
    ("name", "rows"), [("azure_llm_2023_conv.csv", 19366), ("azure_llm_2023_code.csv", 8819)]
)
def test_azure_real_files(shared_data: Path, name: str, rows: int) -> None:
    tr = load_azure_llm(shared_data / "llm" / name)
    assert len(tr) == rows
    assert tr.arrival_s.dtype == np.float64 and tr.prompt_tokens.dtype == np.int64
    assert tr.output_tokens.dtype == np.int64
    assert tr.arrival_s[0] == 0.0 and np.all(np.diff(tr.arrival_s) >= 0)
    assert 3000 < tr.arrival_s[-1] < 3700  # about one hour
    assert tr.prompt_tokens.min() >= 0 and tr.output_tokens.min() >= 0
    assert not tr.arrival_s.flags.writeable


def test_azure_conv_values(shared_data: Path) -> None:
    tr = load_azure_llm(shared_data / "llm" / "azure_llm_2023_conv.csv")
    # first rows: 18:15:46.6805900 (374, 44), then 18:15:50.9951690 (396, 109)
    assert tr.arrival_s[1] == pytest.approx(4.314579, abs=1e-7)
    assert tr.prompt_tokens[:2].tolist() == [374, 396]
    assert tr.output_tokens[:2].tolist() == [44, 109]


def test_sharegpt_real_file(shared_data: Path) -> None:
    s = load_sharegpt_stats(shared_data / "llm" / "sharegpt_8k_stats_llama2.csv")
    assert len(s) == 30731
    assert s.prompt_tokens[:2].tolist() == [74, 290] and s.output_tokens[:2].tolist() == [918, 905]


def test_shared_prefix_resolves(shared_data: Path) -> None:
    p = resolve_data_path("shared:llm/azure_llm_2023_code.csv")
    assert p == (shared_data / "llm" / "azure_llm_2023_code.csv").resolve()


def test_resolve_missing_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OrreryInputError, match="not found.*nope.csv"):
        resolve_data_path("shared:llm/nope.csv")
    (tmp_path / "t.csv").write_text(AZ_HEADER)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_path("t.csv") == (tmp_path / "t.csv").resolve()
    with pytest.raises(OrreryInputError, match="empty"):
        resolve_data_path("")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(text)
    return p


GOOD = [
    "2023-11-16 18:15:46.6805900,374,44\n",
    "2023-11-16 18:15:50.9951690,396,109\n",
    "2023-11-16 18:15:51.0000000,10,5\n",
]


def test_azure_small_good_file_with_blank_line(tmp_path: Path) -> None:
    p = _write(tmp_path, AZ_HEADER + GOOD[0] + "\n" + GOOD[1] + GOOD[2])
    tr = load_azure_llm(p)
    assert len(tr) == 3 and tr.arrival_s[2] == pytest.approx(4.31941, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "line", "column", "pattern"),
    [
        ("", 1, None, "file is empty"),
        (AZ_HEADER, 2, None, "no data rows"),
        (
            "TIMESTAMP,Context,GeneratedTokens\n" + GOOD[0],
            1,
            "ContextTokens",
            "missing column 'ContextTokens'",
        ),
        (
            AZ_HEADER + GOOD[0] + "2023-11-16 18:15:47.0,abc,4\n",
            3,
            "ContextTokens",
            "'abc' is not a number",
        ),
        (
            AZ_HEADER + GOOD[0] + "2023-11-16 18:15:47.0,12,-4\n",
            3,
            "GeneratedTokens",
            "'-4' is negative",
        ),
        (
            AZ_HEADER + GOOD[0] + "2023-11-16 18:15:47.0,12.5,4\n",
            3,
            "ContextTokens",
            "not a whole number",
        ),
        (AZ_HEADER + GOOD[0] + "2023-11-16 18:15:47.0,,4\n", 3, "ContextTokens", "is not a number"),
        (
            AZ_HEADER + GOOD[0] + "yesterday noon,12,4\n",
            3,
            "TIMESTAMP",
            "unparsable timestamp 'yesterday noon'",
        ),
        (AZ_HEADER + GOOD[1] + GOOD[2] + GOOD[0], 4, "TIMESTAMP", "earlier than the previous one"),
    ],
)
def test_azure_malformed(
    tmp_path: Path, text: str, line: int, column: str | None, pattern: str
) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(TraceFormatError, match=pattern) as ei:
        load_azure_llm(p)
    err = ei.value
    assert err.path == str(p) and err.line == line and err.column == column
    assert str(p) in str(err) and f"line {line}" in str(err)


def test_azure_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="file not found") as ei:
        load_azure_llm(tmp_path / "absent.csv")
    assert isinstance(ei.value, OrreryInputError)


def test_azure_too_many_fields(tmp_path: Path) -> None:
    p = _write(tmp_path, AZ_HEADER + GOOD[0] + "2023-11-16 18:15:47.0,1,2,3\n")
    with pytest.raises(TraceFormatError, match="cannot parse CSV") as ei:
        load_azure_llm(p)
    assert ei.value.line == 3


def test_sharegpt_malformed(tmp_path: Path) -> None:
    p = _write(tmp_path, "prefill,decode\n1,2\n")
    with pytest.raises(TraceFormatError, match="missing column 'num_prefill_tokens'") as ei:
        load_sharegpt_stats(p)
    assert ei.value.line == 1 and "expected header with columns" in str(ei.value)
    p = _write(tmp_path, SG_HEADER + "74,918,992,0.08\n290,x,1195,0.32\n")
    with pytest.raises(TraceFormatError, match="'x' is not a number") as ei:
        load_sharegpt_stats(p)
    assert (ei.value.line, ei.value.column) == (3, "num_decode_tokens")
    p = _write(tmp_path, SG_HEADER + "74,918,992,0.08\n-1,3,2,0.3\n")
    with pytest.raises(TraceFormatError, match="negative") as ei:
        load_sharegpt_stats(p)
    assert (ei.value.line, ei.value.column) == (3, "num_prefill_tokens")
    p = _write(tmp_path, "num_decode_tokens,num_prefill_tokens\n5,7\n")  # column order is free
    s = load_sharegpt_stats(p)
    assert s.prompt_tokens.tolist() == [7] and s.output_tokens.tolist() == [5]


def test_numeric_timestamps_are_seconds_and_negative_ones_are_rejected_with_the_line(tmp_path):
    """Issue 13: '-5' was read as the year -5 (a 63,158,400 s gap)."""
    p = tmp_path / "t.csv"
    p.write_text(AZ_HEADER + "0,10,5\n2.5,10,5\n-5,10,5\n")
    with pytest.raises(TraceFormatError) as exc:
        load_azure_llm(p)
    assert exc.value.line == 4 and exc.value.column == "TIMESTAMP" and "negative" in str(exc.value)
    p.write_text(AZ_HEADER + "10,10,5\n12.5,10,5\n13,1,1\n")
    assert list(load_azure_llm(p).arrival_s) == [0.0, 2.5, 3.0]
    p.write_text(AZ_HEADER + "10,10,5\n2023-11-16 18:15:46,10,5\n")
    with pytest.raises(TraceFormatError, match="not a number") as exc:
        load_azure_llm(p)
    assert exc.value.line == 3
