"""`orrery validate` sees what runs see (issue 13, item 2): every input a serving run rejects
makes validate exit 2 naming the file and the field, before anything runs."""

from __future__ import annotations

import pytest

from orrery.experiments.cli import main

STUDY = """
[study]
name = "v"
domain = "serving"
hypothesis = "h"
seeds = 1
metrics = ["qoe_mean"]
control = {{ policy = "vllm_fcfs" }}

[scenario]
policy = "vllm_fcfs"
policy_params = {policy_params}

[scenario.hardware]
gpu = "{gpu}"
model = "{model}"

[scenario.workload]
{workload}

[variables]
policy = ["vllm_fcfs", "round_robin"]
"""
POISSON = 'arrival = "poisson"\nrate_rps = 1.0\nn_requests = 20'
TRACE = 'arrival = "trace"\nlengths = "trace"\ntrace_path = "t.csv"\nn_requests = 5'
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _write(tmp_path, *, gpu="a100", model="llama-2-13b", workload=POISSON, policy_params="{}", trace=None):
    if trace is not None:
        (tmp_path / "t.csv").write_text(trace)
    p = tmp_path / "s.toml"
    p.write_text(STUDY.format(gpu=gpu, model=model, workload=workload, policy_params=policy_params))
    return p


def test_a_good_serving_study_passes(tmp_path, capsys):
    ok = HEADER + "2023-11-16 18:15:46.1,100,20\n2023-11-16 18:15:47.2,50,10\n"
    assert main(["validate", str(_write(tmp_path, workload=TRACE, trace=ok))]) == 0
    assert "every group's scenario builds" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"gpu": "h900"}, ["hardware.gpu", "unknown GPU 'h900'"]),
        ({"model": "gpt-9"}, ["hardware.model", "unknown model 'gpt-9'"]),
        ({"workload": 'arrival = "poisson"\nrate_rps = inf\nn_requests = 20'}, ["workload.rate_rps", "finite"]),
        ({"workload": 'arrival = "poisson"\nrate_rps = 1e12\nn_requests = 20'}, ["workload.rate_rps", "less than"]),
        ({"workload": 'arrival = "poisson"\nrate_rps = 1e5\nduration_s = 1e6'}, ["workload", "requests, more than"]),
        ({"model": "llama-2-70b", "gpu": "l4"}, ["does not fit on L4", "group policy=vllm_fcfs"]),
        ({"policy_params": "{ no_such_knob = 1 }"}, ["no_such_knob"]),
        ({"workload": TRACE, "trace": "TIME,ContextTokens,GeneratedTokens\n1,2,3\n"},
         ["t.csv", "missing column 'TIMESTAMP'"]),
        ({"workload": TRACE, "trace": HEADER + "2023-11-16 18:15:47,1,2\n2023-11-16 18:15:46,1,2\n"},
         ["t.csv, line 3", "earlier than the previous one"]),
        ({"workload": TRACE, "trace": HEADER + "0,1,2\n-5,1,2\n"}, ["t.csv, line 3", "negative"]),
        ({"workload": TRACE, "trace": HEADER + "0,1,2\n1,-1,2\n"}, ["t.csv, line 3", "ContextTokens"]),
    ],
)
def test_validate_rejects_what_the_run_would(tmp_path, capsys, kwargs, expected):
    path = _write(tmp_path, **kwargs)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "s.toml" in err and "Traceback" not in err
    for text in expected:
        assert text in err, err


# ----------------------------------------------------------------------------- the other domains


def _domain_check(domain: str, policy: str, updates: dict):
    from orrery.sim.domains import get_domain

    dom = get_domain(domain)
    dom.check(dom.scenario_type.from_dict({"policy": policy, **updates}))


@pytest.mark.parametrize(
    ("domain", "policy", "name", "text", "updates", "expected"),
    [
        ("resilience", "oobleck", "nodes.csv", "0,add,node1\n10,explode,node2\n",
         lambda p: {"trace": {"kind": "file", "path": p, "format": "events"}}, ["nodes.csv"]),
        ("fl", "fifo", "avail.csv", "ID,begin\n1,2\n",
         lambda p: {"population": {"n_devices": 10, "availability": p}}, ["avail.csv", "line 1"]),
        ("fl_feasibility", "fifo", "avail.csv", "ID,start,end\n1,5\n",
         lambda p: {"population": {"n_devices": 10, "availability": p}}, ["avail.csv", "line 2"]),
        ("training", "chase", "carbon.csv", "when,what\n1,2\n",
         lambda p: {"carbon": {"trace": p}}, ["carbon.csv"]),
        ("cluster_serving", "least_outstanding_tokens", "t.csv", HEADER + "0,1,2\n-5,1,2\n",
         lambda p: {"workload": {"arrival": "trace", "lengths": "trace", "trace_path": p, "n_requests": 5}},
         ["t.csv, line 3", "negative"]),
    ],
)
def test_every_domain_parses_its_data_files_in_validate(tmp_path, domain, policy, name, text, updates, expected):
    """What a run of each domain would reject in a data file, the domain's check rejects first."""
    from orrery.core.errors import OrreryInputError

    bad = tmp_path / name
    bad.write_text(text)
    with pytest.raises(OrreryInputError) as err:
        _domain_check(domain, policy, updates(str(bad)))
    for t in expected:
        assert t in str(err.value), str(err.value)


@pytest.mark.parametrize("domain", ["resilience", "fl", "fl_feasibility", "training", "cluster_serving", "serving"])
def test_every_domain_but_fedtrans_has_a_check_hook(domain):
    from orrery.sim.domains import get_domain

    assert callable(get_domain(domain).check)
