"""Node-availability traces: real formats, one schema, clear errors, seeded synthetic default."""

from __future__ import annotations

import pytest

from orrery.core.errors import TraceFormatError
from orrery.traces.nodes import load_count_file, load_event_csv, load_node_trace, synthetic_trace


def test_p3_trace_loads_to_schema(shared_data):
    tr = load_node_trace(shared_data / "failures" / "spot_p3-trace.csv")
    ev = tr.events
    assert list(ev.columns) == ["time_s", "kind", "node"]
    assert len(ev) == 344
    assert ev["time_s"].is_monotonic_increasing
    counts = tr.node_counts()["nodes"]
    assert counts.min() >= 0 and tr.max_nodes() == 32


def test_count_file_becomes_add_remove_events(shared_data):
    path = shared_data / "failures" / "gcp_a100_spot_count_2021-12.txt"
    tr = load_node_trace(path)
    assert set(tr.events["kind"]) <= {"add", "remove"}
    assert tr.node_counts()["nodes"].iloc[-1] == 64  # the file's last count
    assert tr.events["time_s"].iloc[0] == 0.0


def test_count_file_small(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("2021-12-11, 11:00:00, 3\n2021-12-11, 11:00:10, 1\n2021-12-11, 11:01:00, 2\n")
    tr = load_count_file(p)
    assert list(tr.events["kind"]) == ["add"] * 3 + ["remove"] * 2 + ["add"]
    assert list(tr.events["time_s"]) == [0, 0, 0, 10, 10, 60]
    assert list(tr.node_counts()["nodes"]) == [1, 2, 3, 2, 1, 2]


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("0,add,node1\n5,drop,node1\n", 2, "kind"),
        ("0,add,node1\nabc,remove,node1\n", 2, "ms"),
        ("0,add,node1\n5,remove,node2\n", 2, "node"),
        ("0,add,node1\n0,add,node1\n", 2, "node"),
        ("10,add,node1\n5,add,node2\n", 2, "time"),
        ("0,add\n", 1, None),
    ],
)
def test_malformed_event_csv(tmp_path, text, line, column):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TraceFormatError) as info:
        load_event_csv(p)
    err = info.value
    assert err.line == line and err.column == column
    assert str(p) in str(err) and "expected" in str(err)


def test_malformed_count_file(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("2021-12-11, 11:00:00, 3\n2021-12-11, 11:00:10, many\n")
    with pytest.raises(TraceFormatError, match="line 2") as info:
        load_count_file(p)
    assert info.value.column == "count"
    q = tmp_path / "empty.txt"
    q.write_text("\n")
    with pytest.raises(TraceFormatError):
        load_node_trace(q)


def test_synthetic_is_seeded_and_bounded():
    a = synthetic_trace(n_initial=10, interval_s=60, n_intervals=30, p_remove=0.7, p_add=0.5,
                        n_min=4, n_max=12, seed=3)
    b = synthetic_trace(n_initial=10, interval_s=60, n_intervals=30, p_remove=0.7, p_add=0.5,
                        n_min=4, n_max=12, seed=3)
    c = synthetic_trace(n_initial=10, interval_s=60, n_intervals=30, p_remove=0.7, p_add=0.5,
                        n_min=4, n_max=12, seed=4)
    assert a.events.equals(b.events)
    assert not a.events.equals(c.events)
    counts = a.node_counts()["nodes"].iloc[10:]  # after the 10 initial adds
    assert counts.min() >= 4 and counts.max() <= 12


def test_synthetic_oobleck_shape():
    tr = synthetic_trace(n_initial=30, interval_s=600, n_intervals=15, n_min=15, seed=0)
    removes = tr.events[tr.events["kind"] == "remove"]
    assert len(removes) == 15
    assert list(removes["time_s"]) == [600.0 * k for k in range(1, 16)]
