import json

import numpy as np
import pytest

from orrery.core.errors import TraceFormatError
from orrery.traces.availability import (
    CheckinStream,
    diurnal_availability,
    diurnal_profile,
    fedscale_to_intervals,
    from_arrays,
    load_fedscale,
    load_interval_csv,
    write_interval_csv,
)


def test_diurnal_shape_and_invariants():
    av = diurnal_availability(5000, 3 * 86400, np.random.default_rng(0))
    assert (av.end_s > av.start_s).all() and (np.diff(av.start_s) >= 0).all()
    assert av.start_s.min() >= 0 and av.end_s.max() <= 3 * 86400
    # intervals of a device never overlap
    o = np.lexsort((av.start_s, av.device))
    d, s, e = av.device[o], av.start_s[o], av.end_s[o]
    same = d[1:] == d[:-1]
    assert (s[1:][same] >= e[:-1][same]).all()
    hours, frac = diurnal_profile(av, 3 * 86400, 3600)
    night, afternoon = frac[(hours >= 1) & (hours <= 4)].mean(), frac[(hours >= 13) & (hours <= 17)].mean()
    assert night > 3 * afternoon  # strongly diurnal: peak at night while charging
    assert 0.2 < night < 0.7


def test_merge_overlapping():
    av = from_arrays([0, 0, 1], [0.0, 5.0, 1.0], [10.0, 20.0, 2.0])
    assert len(av) == 2
    assert av.is_available(np.array([0, 0, 1, 1]), np.array([15.0, 20.0, 1.5, 2.0])).tolist() == [True, False, True, False]


def test_checkins_every_period_while_available():
    av = from_arrays([0, 1], [10.0, 100.0], [1000.0, 150.0])
    cs = CheckinStream(av, recheckin_s=300.0, chunk_s=250.0)
    got = []
    for t in range(0, 1200, 70):
        d, tt, e = cs.take(t, t + 70)
        got += list(zip(d.tolist(), tt.tolist(), e.tolist(), strict=True))
    assert got == [(0, 10.0, 1000.0), (1, 100.0, 150.0), (0, 310.0, 1000.0), (0, 610.0, 1000.0), (0, 910.0, 1000.0)]


def test_interval_csv_roundtrip_and_replication(tmp_path):
    p = write_interval_csv([("a", 0.0, 10.0), ("b", 5.0, 7.0), ("a", 20.0, 30.0)], tmp_path / "av.csv")
    av = load_interval_csv(p)
    assert av.n_devices == 2 and len(av) == 3
    big = load_interval_csv(p, n_devices=5)
    assert big.n_devices == 5 and len(big) == 8  # devices 0,2,4 replay 'a'; 1,3 replay 'b'


@pytest.mark.parametrize("content,needle", [
    ("client,begin,finish\na,0,1\n", "header"),
    ("ID,start,end\na,0,x\n", "line 2, column 'end'"),
    ("ID,start,end\na,5,1\n", "end > start"),
    ("ID,start,end\na,-1,3\n", "line 2"),
    ("ID,start,end\na,1\n", "fields"),
    ("ID,start,end\n", "no intervals"),
])
def test_malformed_interval_csv(tmp_path, content, needle):
    p = tmp_path / "av.csv"
    p.write_text(content)
    with pytest.raises(TraceFormatError, match=needle):
        load_interval_csv(p)


def test_fedscale_conversion(tmp_path):
    trace = {1: {"active": [0, 100], "inactive": [50, 200]},
             2: {"active": [10, 300], "inactive": [20], "finish_time": 400}}
    iv = fedscale_to_intervals(trace)
    assert iv == [("1", 0.0, 50.0), ("1", 100.0, 200.0), ("2", 10.0, 20.0), ("2", 300.0, 400.0)]
    p = tmp_path / "t.json"
    p.write_text(json.dumps({str(k): v for k, v in trace.items()}))
    assert len(load_fedscale(p)) == 4


@pytest.mark.parametrize("trace,needle", [
    ([1, 2], "mapping"),
    ({1: {"active": [0]}}, "active/inactive"),
    ({1: {"active": [0], "inactive": [50, 60]}}, "active vs"),
    ({1: {"active": [10], "inactive": [5]}}, "not after"),
])
def test_fedscale_malformed(trace, needle):
    with pytest.raises(TraceFormatError, match=needle):
        fedscale_to_intervals(trace)
