"""LLM text-streaming serving simulator: replicas with a paged KV cache, continuous batching.

Each replica is one simpy process that loops over iterations: build a `ServingView`, ask the
serving policy for the running set, apply admissions (prefill), swap-ins and preemptions
(recompute or swap), advance the clock by the latency model's iteration time, deliver one
token to each request that ran, and account GPU energy. Per-request state lives in numpy
arrays indexed by request id; the per-iteration work is numpy over the batch.

Macro steps (`fast_forward`, on by default): when every live request is running and the
policy keeps them all (and its `fast_forward` contract allows it), the running set cannot
change before a request finishes, the KV cache fills or a request arrives. The replica then
computes those decode iterations at once (durations from the same latency model on arrays)
and waits for the last one's end or the next arrival; after an arrival only the iterations up
to the end of the one in flight happen, as per-iteration scheduling would see it. Results equal
the per-iteration path up to float round-off; rows of the `iterations`/`tokens` tables may
interleave differently across replicas (per replica they stay in time order).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError
from orrery.hwmodels.gpus import get_gpu
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import LLMPerfModel, SpecDecode
from orrery.policies.registry import make_policy
from orrery.policies.serving.base import (
    RUNNING,
    SWAPPED,
    WAITING,
    ServingPolicy,
    ServingView,
    validate_decision,
)
from orrery.policies.serving.qoe import (
    DEFAULT_TTFT_EXP_S,
    LISTENING_TDS_TOK_S,
    READING_TDS_TOK_S,
    QoETracker,
    qoe_from_deficit,
)
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation
from orrery.sim.scenario import Scenario
from orrery.workloads.serving import Requests, ServingWorkload

FINISHED = 3
GiB = 1024**3
MAX_MACRO_ITERATIONS = 2048  # decode iterations one macro step may cover


class SpecDecodeSpec(Strict):
    """Speculative decoding: acceptance rate, draft length and draft cost (vs. one target pass)."""

    acceptance: float = Field(..., ge=0, lt=1)
    draft_len: int = Field(..., ge=1)
    draft_cost: float = Field(..., ge=0)


class ServingHardware(Strict):
    gpu: str = "a100"
    model: str = "llama-2-13b"
    tp: int = Field(1, ge=1, description="tensor-parallel GPUs per replica")
    weight_bits: Literal[4, 8, 16] = 16
    kv_bits: Literal[4, 8, 16] = 16
    spec_decode: SpecDecodeSpec | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    swap_space_gib: float = Field(16.0, ge=0, description="host memory per replica for swapped KV (GiB)")
    block_size: int = Field(16, ge=1, description="tokens per KV block")
    max_num_seqs: int = Field(256, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1, description="default max(max_model_len, 2048)")


class QoESpec(Strict):
    ttft_exp_s: float = Field(DEFAULT_TTFT_EXP_S, gt=0, description="expected time to first token (s)")
    tds_exp_tok_s: float = Field(READING_TDS_TOK_S, gt=0, description="expected token delivery speed")
    listening_fraction: float = Field(
        0.0, ge=0, le=1, description=f"share of requests expecting {LISTENING_TDS_TOK_S} tok/s (voice)"
    )


class ServingScenario(Scenario):
    domain: ClassVar[str] = "serving"

    replicas: int = Field(1, ge=1)
    dispatcher: Literal["round_robin", "least_loaded"] = "round_robin"
    hardware: ServingHardware = ServingHardware()
    workload: ServingWorkload = ServingWorkload(rate_rps=1.0, n_requests=100)
    qoe: QoESpec = QoESpec()
    record_tokens: bool = Field(False, description="keep every token's delivery time (tests, small runs)")
    check_decisions: bool = Field(True, description="validate every policy decision")
    fast_forward: bool = Field(
        True, description="run uninterrupted decode stretches as one vectorised macro step when "
        "the policy allows it (same results up to float round-off; False: one event per iteration)")


def build_perf_model(hw: ServingHardware) -> LLMPerfModel:
    spec = None
    if hw.spec_decode is not None:
        spec = SpecDecode(hw.spec_decode.acceptance, hw.spec_decode.draft_len, hw.spec_decode.draft_cost)
    return LLMPerfModel(get_model(hw.model), get_gpu(hw.gpu), tp=hw.tp, weight_bits=hw.weight_bits,
                        kv_bits=hw.kv_bits, spec_decode=spec)


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


class RequestState:
    """Mutable per-request state, all numpy arrays indexed by request id (shared with the real
    backend, which tracks its requests the same way)."""

    def __init__(self, reqs: Requests, qoe: QoESpec, rng: np.random.Generator):
        n = len(reqs)
        self.n = n
        self.arrival_s = np.asarray(reqs.arrival_s, dtype=float)
        self.prompt = np.asarray(reqs.prompt_tokens, dtype=np.int64)
        self.output = np.asarray(reqs.output_tokens, dtype=np.int64)
        self.generated = np.zeros(n, dtype=np.int64)
        self.state = np.full(n, WAITING, dtype=np.int8)
        self.held = np.zeros(n, dtype=np.int64)
        self.n_preempt = np.zeros(n, dtype=np.int64)
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.replica = np.full(n, -1, dtype=np.int64)
        listening = rng.random(n) < qoe.listening_fraction
        self.tds = np.where(listening, LISTENING_TDS_TOK_S, qoe.tds_exp_tok_s)
        self.ttft = np.full(n, qoe.ttft_exp_s)
        self.qoe = QoETracker(self.arrival_s, self.ttft, self.tds)


class _Replica:
    def __init__(self, index: int, sim: Simulation, scn: ServingScenario, perf: LLMPerfModel,
                 policy: ServingPolicy, reqs: RequestState, max_model_len: int):
        hw = scn.hardware
        self.i, self.sim, self.perf, self.policy, self.r = index, sim, perf, policy, reqs
        self.latency = TokenLatency(perf)
        self.check = scn.check_decisions
        self.block = hw.block_size
        cap_tokens = perf.kv_capacity_tokens(hw.gpu_memory_utilization)
        self.total_blocks = int(cap_tokens // hw.block_size)
        if self.total_blocks < -(-max_model_len // hw.block_size):
            raise OrreryInputError(
                f"{hw.model} on {hw.gpu} (tp={hw.tp}) has KV room for {cap_tokens} tokens, less than "
                f"one request of {max_model_len} tokens; use more GPUs (tp) or a bigger GPU")
        self.used_blocks = 0
        self.swap_cap_bytes = hw.swap_space_gib * GiB
        self.swap_used_bytes = 0.0
        self.max_num_seqs = hw.max_num_seqs
        self.max_batched = hw.max_num_batched_tokens or max(max_model_len, 2048)
        self.live: list[int] = []
        self._ids_cache: np.ndarray | None = None
        self.wake = sim.env.event()
        self.busy_s = 0.0
        self.energy_j = 0.0
        self.iterations = 0
        self.preemptions = 0
        self.admitted = 0
        self.swap_bytes = 0.0
        self.record_tokens = scn.record_tokens
        self.fast = scn.fast_forward and bool(getattr(policy, "fast_forward", True))
        self.horizon_s = scn.horizon_s

    # --- bookkeeping -------------------------------------------------------------------
    def add(self, rid: int) -> None:
        self.live.append(rid)
        self._ids_cache = None
        if not self.wake.triggered:
            self.wake.succeed()

    def ids(self) -> np.ndarray:
        if self._ids_cache is None:
            self._ids_cache = np.array(self.live, dtype=np.int64)
        return self._ids_cache

    def view(self, ids: np.ndarray) -> ServingView:
        r = self.r
        return ServingView(
            now_s=self.sim.now, ids=ids, state=r.state[ids], arrival_s=r.arrival_s[ids],
            prompt_tokens=r.prompt[ids], generated_tokens=r.generated[ids],
            n_preemptions=r.n_preempt[ids], ttft_exp_s=r.ttft[ids], tds_exp_tok_s=r.tds[ids],
            qoe_deficit=r.qoe.deficit[ids], digest_last_s=r.qoe.digest_last_s[ids],
            kv_blocks_held=r.held[ids], block_size=self.block, kv_blocks_total=self.total_blocks,
            kv_blocks_free=self.total_blocks - self.used_blocks, max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_batched, latency=self.latency,
            total_preemptions=self.preemptions, total_admitted=self.admitted,
        )

    # --- the iteration loop ------------------------------------------------------------------
    def loop(self, arrivals_done):
        sim, r, perf = self.sim, self.r, self.perf
        it_tab = sim.rec.table("iterations", ["replica", "start_s", "duration_s", "kind", "batch",
                                              "context_tokens", "kv_blocks_used", "power_w"])
        tok_tab = sim.rec.table("tokens", ["request", "t_s"]) if self.record_tokens else None
        while True:
            if not self.live:
                if arrivals_done.triggered:
                    return
                self.wake = sim.env.event()
                yield self.wake | arrivals_done
                continue
            ids = self.ids()
            view = self.view(ids)
            dec = self.policy.schedule(view)
            if self.check:
                problems = validate_decision(view, dec)
                if problems:
                    raise RuntimeError(f"policy {self.policy.policy_name!r} made an invalid decision "
                                       f"at t={sim.now:.3f}s on replica {self.i}: {'; '.join(problems)}")
            running = np.asarray(dec.running)
            if running.size == ids.size and np.array_equal(running, ids):
                chosen = np.ones(ids.size, dtype=bool)  # keeps every live request (no set lookup)
            else:
                chosen = np.isin(ids, running)
            st = view.state
            if self.fast and chosen.all() and (st == RUNNING).all():
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
            swap_s = 0.0
            # preemptions
            pre = ids[(st == RUNNING) & ~chosen]
            if pre.size:
                ctx = r.prompt[pre] + r.generated[pre]
                nbytes = ctx * perf.kv_bytes_per_token
                to_swap = np.zeros(pre.size, bool)
                if dec.preempt_mode == "swap":
                    room = self.swap_cap_bytes - self.swap_used_bytes
                    to_swap = np.cumsum(nbytes) <= room
                self.used_blocks -= int(r.held[pre].sum())
                r.held[pre] = 0
                r.state[pre] = np.where(to_swap, SWAPPED, WAITING)
                r.n_preempt[pre] += 1
                self.preemptions += pre.size
                moved = float(nbytes[to_swap].sum())
                self.swap_used_bytes += moved
                self.swap_bytes += moved
                swap_s += float(perf.swap_time_s(moved)) if moved else 0.0
            # swap-ins
            sin = ids[(st == SWAPPED) & chosen]
            if sin.size:
                moved = float(((r.prompt[sin] + r.generated[sin]) * perf.kv_bytes_per_token).sum())
                self.swap_used_bytes = max(0.0, self.swap_used_bytes - moved)
                self.swap_bytes += moved
                swap_s += float(perf.swap_time_s(moved))
                r.state[sin] = RUNNING
            admit = ids[(st == WAITING) & chosen]
            if admit.size:
                kind = "prefill"
                run = admit
                ctx_tokens = int((r.prompt[admit] + r.generated[admit]).sum())
                compute_s = perf.prefill_time_s(ctx_tokens, int(admit.size))
                self.admitted += int((r.generated[admit] == 0).sum())
                power = perf.prefill_power_w(ctx_tokens, int(admit.size))
            else:
                kind = "decode"
                run = ids[chosen]
                ctx_tokens = int((r.prompt[run] + r.generated[run]).sum())
                compute_s = float(self.latency.decode_time_s(run.size, ctx_tokens))
                power = float(perf.power_w(run.size))
            r.state[run] = RUNNING
            # blocks after this iteration (context + the token it produces)
            new_held = -(-(r.prompt[run] + r.generated[run] + 1) // self.block)
            self.used_blocks += int((new_held - r.held[run]).sum())
            r.held[run] = new_held
            if self.used_blocks > self.total_blocks:
                raise RuntimeError(f"KV blocks in use {self.used_blocks} exceed capacity {self.total_blocks}")
            duration = compute_s + swap_s
            start = sim.now
            yield sim.timeout(duration)
            now = sim.now
            self.iterations += 1
            self.busy_s += duration
            self.energy_j += power * duration * perf.tp
            it_tab.append(self.i, start, duration, kind, int(run.size), ctx_tokens, self.used_blocks, power)
            # deliver one token to each request that ran
            r.qoe.deliver(run, now)
            if tok_tab is not None:
                tok_tab.extend(request=run, t_s=np.full(run.size, now))
            r.generated[run] += 1
            fresh = run[np.isnan(r.first_token_s[run])]
            r.first_token_s[fresh] = now
            done = run[r.generated[run] >= r.output[run]]
            if done.size:
                self._finish(done, now)

    def _finish(self, done: np.ndarray, now: float) -> None:
        r = self.r
        r.state[done] = FINISHED
        r.finish_s[done] = now
        self.used_blocks -= int(r.held[done].sum())
        r.held[done] = 0
        finished = set(done.tolist())
        self.live = [i for i in self.live if i not in finished]
        self._ids_cache = None
        for rid in done.tolist():
            self.policy.on_finish(rid, now)

    # --- the macro-step fast path ----------------------------------------------------------
    def _plan_macro(self, run: np.ndarray):
        """Up to k decode iterations of `run` that need no new decision: k is bounded by the
        first finish, the KV capacity and the horizon. None when not even one fits (the slow
        path then reports the overflow)."""
        r = self.r
        B = run.size
        gen = r.generated[run]
        ctx0 = r.prompt[run] + gen
        k = int((r.output[run] - gen).min())
        k = max(1, min(k, MAX_MACRO_ITERATIONS))
        steps = np.arange(1, k + 1)
        held_after = -(-(ctx0[:, None] + steps) // self.block)  # (B, k): blocks after iteration i
        used = (self.used_blocks - int(r.held[run].sum())) + held_after.sum(axis=0)
        fit = int(np.searchsorted(used, self.total_blocks, side="right"))  # used is nondecreasing
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
        return k, t0, durs[:k], ends[:k], ctx_sum[:k], used[:k], held_after[:, :k]

    def _macro(self, run, plan, it_tab, tok_tab):
        sim, r, perf = self.sim, self.r, self.perf
        k, t0, durs, ends, ctx_sum, used, held_after = plan
        self.wake = sim.env.event()
        to = sim.timeout(float(ends[-1]) - t0)
        yield to | self.wake
        if to.processed:
            m = k
        else:  # an arrival: finish the iteration in flight, then decide again
            j = min(int(np.searchsorted(ends, sim.now, side="left")), k - 1)
            if ends[j] > sim.now:
                yield sim.timeout(float(ends[j]) - sim.now)
            m = j + 1
        B = run.size
        d, e = durs[:m], ends[:m]
        power = float(perf.power_w(B))
        self.iterations += m
        self.busy_s = float(np.cumsum(np.concatenate(([self.busy_s], d)))[-1])
        self.energy_j = float(np.cumsum(np.concatenate(([self.energy_j], power * d * perf.tp)))[-1])
        starts = np.empty(m)
        starts[0] = t0
        starts[1:] = e[:-1]
        it_tab.extend(replica=np.full(m, self.i), start_s=starts, duration_s=d,
                      kind=np.full(m, "decode"), batch=np.full(m, B), context_tokens=ctx_sum[:m],
                      kv_blocks_used=used[:m], power_w=np.full(m, power))
        r.qoe.deliver_many(run, e)
        if tok_tab is not None:
            tok_tab.extend(request=np.tile(run, m), t_s=np.repeat(e, B))
        r.generated[run] += m
        fresh = run[np.isnan(r.first_token_s[run])]
        r.first_token_s[fresh] = e[0]
        r.held[run] = held_after[:, m - 1]
        self.used_blocks = int(used[m - 1])
        now = float(e[-1])
        done = run[r.generated[run] >= r.output[run]]
        if done.size:
            self._finish(done, now)


def run_serving(scn: ServingScenario, perf_model: LLMPerfModel | None = None) -> RunResult:
    """Simulate `scn`. `perf_model` replaces the catalog's latency/power model (e.g. one
    calibrated on real hardware by `orrery calibrate`); it must offer LLMPerfModel's interface."""
    sim = Simulation(scn.seed)
    perf = perf_model if perf_model is not None else build_perf_model(scn.hardware)
    max_model_len = min(get_model(scn.hardware.model).max_context_tokens, scn.workload.max_total_tokens)
    reqs = scn.workload.generate(sim.rng["arrivals"], sim.rng["lengths"])
    if len(reqs) == 0:
        raise OrreryInputError("the workload generated no requests; raise n_requests or duration_s")
    state = RequestState(reqs, scn.qoe, sim.rng["qoe"])
    replicas = [
        _Replica(i, sim, scn, perf, make_policy("serving", scn.policy, scn.policy_params), state, max_model_len)
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
                k = min(range(len(replicas)), key=lambda j: (len(replicas[j].live), j))
            state.replica[rid] = k
            replicas[k].add(rid)
        arrivals_done.succeed()

    sim.process(arrivals())
    for rep in replicas:
        sim.process(rep.loop(arrivals_done))
    sim.run(until=scn.horizon_s)
    return _collect(scn, sim, state, replicas, perf)


def summarize_requests(r: RequestState, end_fallback_s: float) -> tuple[pd.DataFrame, dict[str, float], float]:
    """Per-request table, request-level metrics and the served span (s) of a finished run.

    Shared by the simulator and the real backend so both report exactly the same metrics.
    Unfinished requests (horizon reached) get their QoE so far against their full expected curve.
    """
    finished = r.state == FINISHED
    qoe = np.where(finished, r.qoe.qoe(), np.nan)
    if (~finished).any():
        lost = np.where(finished, 0.0, r.qoe.deficit)
        qoe = np.where(finished, qoe, qoe_from_deficit(lost, np.maximum(r.output, 1), r.tds))
    ttft = r.first_token_s - r.arrival_s
    n_after_first = np.maximum(r.generated - 1, 1)
    tpot = np.where(r.generated > 1, (r.finish_s - r.first_token_s) / n_after_first, np.nan)
    table = pd.DataFrame({
        "request": np.arange(r.n), "replica": r.replica, "arrival_s": r.arrival_s,
        "prompt_tokens": r.prompt, "output_tokens": r.output, "generated_tokens": r.generated,
        "ttft_s": ttft, "finish_s": r.finish_s, "tpot_s": tpot, "qoe": qoe,
        "tds_exp_tok_s": r.tds, "n_preemptions": r.n_preempt, "finished": finished,
    })
    end_s = float(np.nanmax(r.finish_s)) if finished.any() else end_fallback_s
    span_s = max(end_s - float(r.arrival_s.min()), 1e-9)
    tokens = int(r.generated.sum())
    metrics = {
        "qoe_mean": float(np.nanmean(qoe)),
        "qoe_p10": float(np.nanpercentile(qoe, 10)),
        "qoe_ge_0_9_frac": float(np.mean(qoe >= 0.9)),
        "ttft_mean_s": float(np.nanmean(ttft)) if finished.any() else float("nan"),
        "ttft_p90_s": float(np.nanpercentile(ttft, 90)) if finished.any() else float("nan"),
        "tpot_mean_s": float(np.nanmean(tpot)) if np.isfinite(tpot).any() else float("nan"),
        "throughput_tok_s": tokens / span_s,
        "throughput_rps": float(finished.sum()) / span_s,
        "preemptions_per_request": float(r.n_preempt.mean()),
        "n_requests": float(r.n),
        "n_finished": float(finished.sum()),
    }
    return table, metrics, span_s


def _collect(scn, sim, r: RequestState, replicas, perf) -> RunResult:
    table, metrics, span_s = summarize_requests(r, sim.now)
    tokens = int(r.generated.sum())
    idle_w = perf.power_w(0, busy=False)
    busy_e = sum(rep.energy_j for rep in replicas)
    idle_e = sum(max(0.0, span_s - rep.busy_s) * idle_w * perf.tp for rep in replicas)
    energy = busy_e + idle_e
    metrics.update({
        "energy_j": energy,
        "energy_per_token_j": energy / max(tokens, 1),
        "iterations": float(sum(rep.iterations for rep in replicas)),
        "swap_bytes": float(sum(rep.swap_bytes for rep in replicas)),
        "sim_time_s": float(sim.now),
    })
    series = sim.rec.frames()
    return RunResult(metrics=metrics, table=table, series=series)


register_domain(Domain(
    name="serving",
    scenario_type=ServingScenario,
    run=run_serving,
    metrics={
        "qoe_mean": "higher", "qoe_p10": "higher", "qoe_ge_0_9_frac": "higher",
        "ttft_mean_s": "lower", "ttft_p90_s": "lower", "tpot_mean_s": "lower",
        "throughput_tok_s": "higher", "throughput_rps": "higher", "energy_j": "lower",
        "energy_per_token_j": "lower", "preemptions_per_request": "lower",
        "n_requests": "higher", "n_finished": "higher", "iterations": "lower",
        "swap_bytes": "lower", "sim_time_s": "lower",
    },
    plots="orrery.experiments.plotting:serving_plots",
    description="LLM text-streaming serving: QoE, TTFT, token delivery, throughput, GPU energy",
))
