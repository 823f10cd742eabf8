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
