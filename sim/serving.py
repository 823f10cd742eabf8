"""LLM text-streaming serving simulator: replicas with a paged KV cache, continuous batching.

Each replica is one simpy process that loops over iterations: build a `ServingView`, ask the
serving policy for the running set, apply admissions (prefill), swap-ins and preemptions
(recompute or swap), advance the clock by the latency model's iteration time, deliver one
token to each request that ran, and account GPU energy. The bookkeeping (request states, KV
blocks, swap space, delivery, finishing) is the replica state machine shared with the real
engine (`sim/serving_replica.py`); the scenario lives in `sim/serving_scenario.py`. This module
keeps the simpy processes, the dispatcher, the simulated latency/energy and the macro step.

Macro steps (`fast_forward`, on by default): when every live request is running and the
policy keeps them all (and its `fast_forward` contract allows it), the running set cannot
change before a request finishes, the KV cache fills or a request arrives. The replica then
computes those decode iterations at once (durations from the same latency model on arrays)
and waits for the last one's end or the next arrival; after an arrival only the iterations up
to the end of the one in flight happen, as per-iteration scheduling would see it. Results equal
the per-iteration path bit for bit (same clock values, durations, energy sums and QoE state;
the QoE tracker's segments make m fast tokens one addition); rows of the `iterations`/`tokens`
tables may
interleave differently across replicas (per replica they stay in time order).
"""

from __future__ import annotations

import numpy as np

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import LLMPerfModel
from orrery.policies.registry import make_policy
from orrery.policies.serving.base import RUNNING, ServingPolicy, validate_decision
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation
from orrery.sim.serving_replica import GiB, ReplicaState, RequestState, summarize_requests
from orrery.sim.serving_scenario import (
    QoESpec,
    ServingHardware,
    ServingScenario,
    SpecDecodeSpec,
    build_perf_model,
)

__all__ = ["QoESpec", "RequestState", "ServingHardware", "ServingScenario", "SpecDecodeSpec",
           "TokenLatency", "build_perf_model", "run_serving", "summarize_requests"]

MAX_MACRO_ITERATIONS = 2048  # decode iterations one macro step may cover


class TokenLatency:
    """The latency oracle policies see: time per generated token of a decode iteration.

    With speculative decoding a target pass yields `tokens_per_step` tokens on average; the
    simulator delivers one token per request per iteration, each iteration lasting the pass
    time divided by that expectation (the pass time already includes the draft model's cost).
    """

    def __init__(self, perf: LLMPerfModel):
        self.perf = perf
        self.kv_bytes_per_token = perf.kv_bytes_per_token
        self._per_step = float(perf.tokens_per_step)

    def decode_time_s(self, batch_size, context_tokens):
        return self.perf.decode_time_s(batch_size, context_tokens) / self._per_step

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        return self.perf.prefill_time_s(n_tokens, n_seqs, context_tokens)

    def swap_time_s(self, n_bytes):
        return self.perf.swap_time_s(n_bytes)


class SimReplica:
    """The simulator's side of one replica: a simpy process over a shared `ReplicaState` (single-replica
    serving runs one; cluster serving, `sim/cluster_serving.py`, runs one per replica behind a router)."""

    def __init__(self, index: int, sim: Simulation, scn: ServingScenario, perf: LLMPerfModel,
                 policy: ServingPolicy, reqs: RequestState, max_model_len: int):
        hw = scn.hardware
        self.i, self.sim, self.perf, self.policy, self.r = index, sim, perf, policy, reqs
        self.latency = TokenLatency(perf)
        self.n_gpus = getattr(perf, "n_gpus", perf.tp)  # GPUs per replica (a calibrated model may lack n_gpus)
        self.check = scn.check_decisions
        total_blocks = kv_blocks(hw, perf, max_model_len)
        self.state = ReplicaState(
            reqs, block_size=hw.block_size, total_blocks=total_blocks, max_num_seqs=hw.max_num_seqs,
            max_num_batched_tokens=hw.max_num_batched_tokens or max(max_model_len, 2048),
            swap_cap_bytes=hw.swap_space_gib * GiB, kv_bytes_per_token=perf.kv_bytes_per_token,
            latency=self.latency, index=index)
        self.wake = sim.env.event()
        self.busy_s = 0.0
        self.energy_j = 0.0
        self.iterations = 0
        self.record_tokens = scn.record_tokens
        self.fast = scn.fast_forward and bool(getattr(policy, "fast_forward", True))
        self.horizon_s = scn.horizon_s
        self._macro_ends: np.ndarray | None = None  # iteration ends of the macro step under way
        self._macro_m = 0  # iterations the macro step runs (fewer when an arrival cuts it)
        self._macro_cut = False

    def add(self, rid: int) -> None:
        self.state.add(rid)
        ends = self._macro_ends
        if ends is not None:  # in a macro step: wake up at the end of the iteration in flight
            if self._macro_cut:
                return  # an earlier arrival already cut it there
            self._macro_cut = True
            now = self.sim.now
            j = min(int(np.searchsorted(ends, now, side="left")), ends.size - 1)
            self._macro_m = j + 1
            if ends[j] > now:
                self._wake_at(float(ends[j]))
                return
        if not self.wake.triggered:
            self.wake.succeed()

    def _wake_at(self, t_s: float) -> None:
        """Trigger the current `wake` event at `t_s` unless something triggered it before."""
        wake = self.wake

        def fire(_ev) -> None:
            if not wake.triggered:
                wake.succeed()

        self.sim.at(t_s).callbacks.append(fire)

    # --- the iteration loop ------------------------------------------------------------------
    def loop(self, arrivals_done):
        sim, perf, rs = self.sim, self.perf, self.state
        it_tab = sim.rec.table("iterations", ["replica", "start_s", "duration_s", "kind", "batch",
                                              "context_tokens", "kv_blocks_used", "power_w"])
        tok_tab = sim.rec.table("tokens", ["request", "t_s"]) if self.record_tokens else None
        while True:
            if not rs.live:
                if arrivals_done.triggered:
                    return
                self.wake = sim.env.event()
                yield self.wake | arrivals_done
                continue
            ids = rs.ids()
            view = rs.view(sim.now, ids)
            dec = self.policy.schedule(view)
            if self.check:
                problems = validate_decision(view, dec)
                if problems:
                    raise RuntimeError(f"policy {self.policy.policy_name!r} made an invalid decision "
                                       f"at t={sim.now:.3f}s on replica {self.i}: {'; '.join(problems)}")
            chosen = rs.chosen(view, dec)
            if self.fast and chosen.all() and (view.state == RUNNING).all():
                # pure decode with nothing waiting: the running set stays until an arrival,
                # a finish or a full KV cache, so run those iterations as one macro step
                plan = self._plan_macro(ids)
                if plan is not None:
                    yield from self._macro(ids, plan, it_tab, tok_tab)
                    continue
            if not chosen.any():
                if arrivals_done.triggered:
                    raise RuntimeError(
                        f"policy {self.policy.policy_name!r} ran nothing with {ids.size} requests "
                        f"live on replica {self.i} and no arrivals left")
                self.wake = sim.env.event()
                yield self.wake
                continue
            step = rs.apply(view, dec, chosen)
            swap_s = 0.0
            if step.preempted.size:
                swap_s += float(perf.swap_time_s(step.swap_out_bytes)) if step.swap_out_bytes else 0.0
            if step.swapped_in.size:
                swap_s += float(perf.swap_time_s(step.swap_in_bytes))
            run, ctx_tokens = step.run, step.ctx_tokens
            if step.kind == "prefill":
                compute_s = perf.prefill_time_s(ctx_tokens, int(run.size))
                power = perf.prefill_power_w(ctx_tokens, int(run.size))
            else:
                compute_s = float(self.latency.decode_time_s(run.size, ctx_tokens))
                power = float(perf.power_w(run.size))
            duration = compute_s + swap_s
            start = sim.now
            yield sim.timeout(duration)
            now = sim.now
            self.iterations += 1
            self.busy_s += duration
            self.energy_j += power * duration * self.n_gpus
            it_tab.append(self.i, start, duration, step.kind, int(run.size), ctx_tokens, rs.used_blocks, power)
            if tok_tab is not None:
                tok_tab.extend(request=run, t_s=np.full(run.size, now))
            done = rs.deliver(run, now)
            if done.size:
                rs.finish(done, now, self.policy)

    # --- the macro-step fast path ----------------------------------------------------------
    def _plan_macro(self, run: np.ndarray):
        """Up to k decode iterations of `run` that need no new decision: k is bounded by the
        first finish, the KV capacity and the horizon. None when not even one fits (the slow
        path then reports the overflow). O(len(run) + k): no (requests x iterations) arrays."""
        r, rs = self.r, self.state
        B = run.size
        ctx0 = r.prompt[run] + r.generated[run]
        k = int((r.output[run] - r.generated[run]).min())
        k = max(1, min(k, MAX_MACRO_ITERATIONS))
        used = (rs.used_blocks - int(r.held[run].sum())) + _blocks_after(ctx0, rs.block, k)
        fit = int(np.searchsorted(used, rs.total_blocks, side="right"))  # used is nondecreasing
        if fit == 0:
            return None
        k = min(k, fit)
        ctx_sum = int(ctx0.sum()) + B * np.arange(k, dtype=np.int64)
        # the slow path's scalar call, on arrays: same operations, same per-iteration floats
        durs = self.latency.decode_time_s(np.full(k, float(B)), ctx_sum.astype(float))
        durs = np.asarray(durs, dtype=float)
        t0 = self.sim.now
        ends = np.cumsum(np.concatenate(([t0], durs)))[1:]  # sequential, as the clock advances
        if self.horizon_s is not None:
            k = max(1, min(k, int(np.searchsorted(ends, self.horizon_s, side="left"))))
        return k, t0, durs[:k], ends[:k], ctx_sum[:k], used[:k], ctx0

    def _macro(self, run, plan, it_tab, tok_tab):
        """Wait for the planned iterations' end or, when a request arrives (`add`), for the end
        of the iteration in flight, and commit the iterations that ran. Clock values are the per-iteration path's
        exactly (absolute-time events on the sequential sums of the durations)."""
        sim, r, perf, rs = self.sim, self.r, self.perf, self.state
        k, t0, durs, ends, ctx_sum, used, ctx0 = plan
        self.wake = sim.env.event()
        self._macro_ends, self._macro_m, self._macro_cut = ends, k, False
        self._wake_at(float(ends[-1]))
        yield self.wake  # at the last iteration's end, or the end of the one an arrival cut
        self._macro_ends = None
        m = self._macro_m
        B = run.size
        d, e = durs[:m], ends[:m]
        power = float(perf.power_w(B))
        self.iterations += m
        self.busy_s = _seq_sum(self.busy_s, d)
        self.energy_j = _seq_sum(self.energy_j, power * d * self.n_gpus)
        starts = np.empty(m)
        starts[0] = t0
        starts[1:] = e[:-1]
        it_tab.extend_columns(np.full(m, self.i), starts, d, np.full(m, "decode"), np.full(m, B),
                              ctx_sum[:m], used[:m], np.full(m, power))
        r.qoe.deliver_many(run, e)
        if tok_tab is not None:
            tok_tab.extend(request=np.tile(run, m), t_s=np.repeat(e, B))
        r.generated[run] += m
        fresh = run[np.isnan(r.first_token_s[run])]
        r.first_token_s[fresh] = e[0]
        r.held[run] = -(-(ctx0 + m) // rs.block)
        rs.used_blocks = int(used[m - 1])
        now = float(e[-1])
        done = run[r.generated[run] >= r.output[run]]
        if done.size:
            rs.finish(done, now, self.policy)


def _seq_sum(x0: float, xs: np.ndarray) -> float:
    """x0 + xs[0] + xs[1] + ... added in order (the per-iteration path's running sums)."""
    if xs.size <= 32:
        for x in xs.tolist():
            x0 += x
        return x0
    return float(np.cumsum(np.concatenate(([x0], xs)))[-1])


def _blocks_after(ctx0: np.ndarray, block: int, k: int) -> np.ndarray:
    """sum_r ceil((ctx0_r + i) / block) for i = 1..k, in O(len(ctx0) + k + block).

    With ctx0_r + block - 1 = block*a_r + b_r and i = block*u + v, each term is
    a_r + u + [b_r >= block - v]: the sum is sum(a) + B*u + #{r: b_r >= block - v}."""
    q = ctx0 + (block - 1)
    a, b = np.divmod(q, block)
    at_least = np.zeros(block + 1, dtype=np.int64)  # at_least[x] = #{r: b_r >= x}
    at_least[:block] = np.cumsum(np.bincount(b, minlength=block)[::-1])[::-1]
    u, v = np.divmod(np.arange(1, k + 1, dtype=np.int64), block)
    return int(a.sum()) + ctx0.size * u + at_least[block - v]


def kv_blocks(hw: ServingHardware, perf: LLMPerfModel, max_model_len: int) -> int:
    """KV-cache blocks of one replica; an input error when one longest request does not fit."""
    cap_tokens = perf.kv_capacity_tokens(hw.gpu_memory_utilization)
    blocks = int(cap_tokens // hw.block_size)
    if blocks < -(-max_model_len // hw.block_size):
        raise OrreryInputError(
            f"{hw.model} on {hw.gpu} (tp={hw.tp}, ep={hw.ep}) has KV room for {cap_tokens} tokens, less "
            f"than one request of {max_model_len} tokens; use more GPUs (tp/ep) or a bigger GPU")
    return blocks


def check_serving(scn: ServingScenario) -> None:
    """Everything `run_serving` would reject as input, without simulating: the GPU and model
    names, the hardware (the model and one longest request fit), the policy and its parameters,
    and the workload's data files (parsed whole: header, timestamps, token counts; cached)."""
    perf = build_perf_model(scn.hardware, scn.hw_params)
    kv_blocks(scn.hardware, perf, min(get_model(scn.hardware.model).max_context_tokens,
                                      scn.workload.max_total_tokens))
    make_policy("serving", scn.policy, scn.policy_params)
    scn.workload.check_inputs()


def run_serving(scn: ServingScenario, perf_model: LLMPerfModel | None = None) -> RunResult:
    """Simulate `scn`. `perf_model` replaces the catalog's latency/power model (e.g. one
    calibrated on real hardware by `orrery calibrate`); it must offer LLMPerfModel's interface."""
    sim = Simulation(scn.seed)
    perf = perf_model if perf_model is not None else build_perf_model(scn.hardware, scn.hw_params)
    max_model_len = min(get_model(scn.hardware.model).max_context_tokens, scn.workload.max_total_tokens)
    reqs = scn.workload.generate(sim.rng["arrivals"], sim.rng["lengths"])
    if len(reqs) == 0:
        raise OrreryInputError("the workload generated no requests; raise n_requests or duration_s")
    state = RequestState(reqs, scn.qoe, sim.rng["qoe"])
    replicas = [
        SimReplica(i, sim, scn, perf, make_policy("serving", scn.policy, scn.policy_params), state, max_model_len)
        for i in range(scn.replicas)
    ]
    arrivals_done = sim.env.event()

    def arrivals():
        rr = 0
        for rid, t in enumerate(state.arrival_s.tolist()):
            if t > sim.now:
                yield sim.timeout(t - sim.now)
            if scn.dispatcher == "round_robin":
                k = rr % len(replicas)
                rr += 1
            else:  # least_loaded: fewest live requests, then lowest index
                k = min(range(len(replicas)), key=lambda j: (len(replicas[j].state.live), j))
            state.replica[rid] = k
            replicas[k].add(rid)
        arrivals_done.succeed()

    sim.process(arrivals())
    for rep in replicas:
        sim.process(rep.loop(arrivals_done))
    sim.run(until=scn.horizon_s)
    return _collect(scn, sim, state, replicas, perf)


def _collect(scn, sim, r: RequestState, replicas, perf) -> RunResult:
    table, metrics, span_s = summarize_requests(r, sim.now)
    tokens = int(r.generated.sum())
    idle_w = perf.power_w(0, busy=False)
    busy_e = sum(rep.energy_j for rep in replicas)
    idle_e = sum(max(0.0, span_s - rep.busy_s) * idle_w * getattr(perf, 'n_gpus', perf.tp) for rep in replicas)
    energy = busy_e + idle_e
    metrics.update({
        "energy_j": energy,
        "energy_per_token_j": energy / max(tokens, 1),
        "iterations": float(sum(rep.iterations for rep in replicas)),
        "swap_bytes": float(sum(rep.state.swap_bytes for rep in replicas)),
        "sim_time_s": float(sim.now),
    })
    series = sim.rec.frames()
    return RunResult(metrics=metrics, table=table, series=series)


register_domain(Domain(
    name="serving",
    scenario_type=ServingScenario,
    run=run_serving,
    check=check_serving,
    metrics={
        "qoe_mean": "higher", "qoe_p10": "higher", "qoe_ge_0_9_frac": "higher",
        "qoe_andes_mean": "higher", "qoe_deficit_mean": "higher",
        "ttft_mean_s": "lower", "ttft_p90_s": "lower", "tpot_mean_s": "lower",
        "throughput_tok_s": "higher", "throughput_rps": "higher", "energy_j": "lower",
        "energy_per_token_j": "lower", "preemptions_per_request": "lower",
        "n_requests": "higher", "n_finished": "higher", "iterations": "lower",
        "swap_bytes": "lower", "sim_time_s": "lower",
    },
    plots="orrery.experiments.plotting:serving_plots",
    description="LLM text-streaming serving: QoE, TTFT, token delivery, throughput, GPU energy",
))
