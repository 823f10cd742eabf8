"""The typed seams of experiments/: the study description, run tasks and outcomes, run records."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pyarrow.parquet as pq

from orrery.experiments import store as store_mod
from orrery.experiments.description import GroupDescription, StudyDescription
from orrery.experiments.runner import execute
from orrery.experiments.study import STUDIES_DIR, load_study
from orrery.experiments.tasks import RunOutcome, RunTask


def test_the_description_round_trips_through_the_manifest_json():
    desc = load_study(STUDIES_DIR / "serving_quick.toml", seeds=2).describe()
    assert isinstance(desc, StudyDescription) and all(isinstance(g, GroupDescription) for g in desc.groups)
    back = StudyDescription.from_dict(json.loads(json.dumps(desc.to_dict())))
    assert back == desc
    assert {g.role for g in desc.groups} == {"control", "treatment"}
    treat = next(g for g in desc.groups if g.role == "treatment")
    assert desc.group(treat.control).role == "control"
    moved = desc.with_stats(alpha=0.1, correction="holm")
    assert (moved.alpha, moved.correction, desc.alpha) == (0.1, "holm", 0.05)


def test_an_older_manifest_without_the_statistics_keys_gets_the_defaults():
    old = {"name": "s", "domain": "serving", "metrics": {"m": "higher"}, "variables": ["policy"],
           "groups": [{"label": "policy=a", "values": {"policy": "a"}, "role": "control", "control": None}],
           "alpha": None, "unknown_key": 1}  # fmt: skip
    d = StudyDescription.from_dict(old)
    assert (d.alpha, d.correction, d.test, d.cases) == (0.05, "bh", "welch", [])


def _task(mode="store", updates=None, **kw):
    study = load_study(STUDIES_DIR / "serving_quick.toml", seeds=1)
    r = study.groups[0].runs[0]
    sc = r.scenario.with_updates({"workload.duration_s": 2.0, **(updates or {})})
    base = dict(run_id=r.run_id, group=r.group, values=r.values, seed=r.seed, scenario=sc.model_dump(mode="json"),
                scenario_hash=sc.stable_hash(), inputs_hash="x", domain="serving",
                metrics=("qoe_mean",), mode=mode)  # fmt: skip
    return RunTask(**{**base, **kw})


def test_a_task_and_its_outcome_pickle_and_the_outcome_is_typed(tmp_path):
    task = _task()
    assert pickle.loads(pickle.dumps(task)) == task
    out = execute(task)
    assert isinstance(out, RunOutcome) and out.ok and out.stored and out.payload and out.digest
    path = tmp_path / "r.parquet"
    path.write_bytes(out.payload)
    rec = store_mod.read_run(path)
    assert (rec.group, rec.values, rec.digest) == (task.group, task.values, out.digest)
    again = execute(_task(mode="digest"))
    assert again.ok and not again.stored and again.payload is None and again.digest == out.digest


def test_a_bad_scenario_comes_back_as_an_input_error_outcome():
    bad = _task(updates={"policy": "no_such_policy"})
    out = execute(bad)
    assert not out.ok and out.input_error and "no_such_policy" in (out.error or "")
    missing = execute(_task(metrics=("no_such_metric",)))
    assert not missing.ok and not missing.input_error and "no_such_metric" in (missing.error or "")


def test_a_format_2_run_file_reads_back_with_one_meaning_of_group(tmp_path):
    """Format 2 stored the values under "group" and the label under "group_label"."""
    payload = store_mod.encode_run(run_id="r1", group="policy=a", values={"policy": "a"}, seed=0, scenario={},
                                   scenario_hash="h", domain="toy", metrics={"m": 1.0},
                                   table=pd.DataFrame({"x": [1.0]}), series={}, digest="d")  # fmt: skip
    path = tmp_path / "new.parquet"
    path.write_bytes(payload)
    t = pq.read_table(path)
    md = dict(t.schema.metadata)
    meta = json.loads(md[store_mod.META_KEY])
    meta.update(format=2, group={"policy": "a"}, group_label="policy=a")
    del meta["values"]
    md[store_mod.META_KEY] = json.dumps(meta).encode()
    md[store_mod.CHECKSUM_KEY] = store_mod._meta_checksum(md, t.column_names, t.num_rows).encode()
    old = tmp_path / "old.parquet"
    pq.write_table(t.replace_schema_metadata(md), old)
    for p in (path, old):
        rec = store_mod.read_run(p)
        assert (rec.group, rec.values) == ("policy=a", {"policy": "a"})
