"""LLM text-streaming serving simulator: replicas with a paged KV cache, continuous batching.

Each replica (`SimReplica`) runs iteration by iteration: build a `ServingView`, ask the serving
policy for the running set, apply admissions (prefill), swap-ins and preemptions (recompute or
swap), advance the clock by the latency model's iteration time, deliver one token to each
request that ran, and account GPU energy. The bookkeeping (request states, KV blocks, swap
space, delivery, finishing) is the replica state machine shared with the real engine
(`sim/serving_replica.py`); the scenario lives in `sim/serving_scenario.py`. This module keeps
the event loop, the dispatcher, the simulated latency/energy and the macro step.

Events: a replica is not a simpy process but a set of callbacks on absolute-time events of the
simulation's heap (the end of an iteration, of a planned chunk of a macro step, an arrival
while idle); a wake-up superseded by a later decision is dropped when it fires. Arrivals are one
callback chain with the clock values of a process looping over `timeout(t - now)`.

Macro steps (`fast_forward`, on by default): when every live request is running and the
policy keeps them all (and its `fast_forward` contract allows it), the running set cannot
change before a request finishes, the KV cache fills or a request arrives. The replica then
plans those decode iterations in chunks (32, then 48 from scalar latency calls, then the rest
from one array call; durations are the same floats either way) and waits for the chunk's
end or the next arrival; after an arrival only the iterations up to the end of the one in
flight happen, as per-iteration scheduling would see it. KV blocks follow from the contexts'
residues modulo the block size (`_blocks_walk`), so a macro step costs O(batch + iterations),
and what it commits (counters, energy, QoE, KV, the iteration log) is one pass per batch plus
one Python addition per iteration. Results equal the per-iteration path bit for bit (same clock
values, durations, energy sums, KV counts and QoE state; the QoE tracker's segments make m fast
tokens one addition, and a lower bound on the running requests' segment read-up-to times,
`SimReplica._seg_lb`, tells the commit when none can start a new segment); rows of the
`iterations`/`tokens` tables may interleave differently
across replicas (per replica they stay in time order). The `iterations` log keeps typed columns
(`IterationLog`, 57 bytes a row once flushed), so a million requests' ten million iterations fit in memory.

A policy that declares `keeps_all_that_fit` (Andes, vLLM-FCFS) is not asked when every live
request runs and their next step fits: that answer is "keep them all", so the replica calls its
`kept_all` hook and starts the macro step from a few gathers (the fit test is the blocks the
requests hold, `ReplicaState.used_blocks`, plus those whose context ends a block).
"""

from __future__ import annotations

from bisect import bisect_left
from functools import reduce
from itertools import accumulate, cycle, islice, repeat
from operator import add, mul

import numpy as np
import pandas as pd

from orrery.core.errors import OrreryInputError
from orrery.hwmodels.llm import get_model
from orrery.hwmodels.llm_perf import LLMPerfModel
from orrery.policies.registry import make_policy
from orrery.policies.serving.base import (
    ServingPolicy,
    keeps_all_without_asking,
    validate_decision,
)
from orrery.policies.serving.common import all_running
from orrery.policies.serving.qoe import SEGMENT_MARGIN_S
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation, Wake
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
# Chunks of a macro step: two from scalar latency calls (38% of the macro steps at 8 requests/s
# per replica end after one iteration, cut by an arrival; 94% within 16), then the rest from one
# array call. Chosen on the recorded (iterations run, iterations possible) of serving_scale runs
# through a cost model measured on this machine: ~1.9 us + ~0.4 us an iteration for a scalar
# chunk (`decode_series_s`), ~31 us an array call, ~6 us a wake-up. Session 5 chose 16/128 on
# 30k requests (11.8 us a macro step against 15.0 for 4/128); with the one-hour trace (4
# replicas, ~45 iterations a macro step) in the model too, 32/48 models 5.52 us against 5.72 at
# 20k requests on 32 replicas and 30.2 against 34.5 us on the hour trace.
MACRO_FIRST_CHUNK = 32
MACRO_SECOND_CHUNK = 48
PREFILL_CACHE = 1 << 16  # prefill (time, power) pairs a replica remembers
# `SimReplica._seg_lb` keeps this far below the segments' read-up-to times (s): far above the
# round-off of absolute times in any simulated span, far below a reading step (~0.2 s)
SEG_LB_MARGIN_S = 1e-6
MACRO_SCALAR_MAX = 48  # chunks up to this long take scalar latency calls (numpy costs more below it)


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
        # (the model's series of one: the same float as its scalar call, from the terms it keeps
        # per batch size; a calibrated model may lack it)
        self._series = getattr(perf, "decode_series_s", None)

    def decode_time_s(self, batch_size, context_tokens):
        if type(batch_size) is int and type(context_tokens) is int and batch_size > 0 and self._series is not None:
            return self._series(batch_size, context_tokens, 1)[0] / self._per_step
        return self.perf.decode_time_s(batch_size, context_tokens) / self._per_step

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        return self.perf.prefill_time_s(n_tokens, n_seqs, context_tokens)

    def swap_time_s(self, n_bytes):
        return self.perf.swap_time_s(n_bytes)


class IterationLog:
    """The `iterations` table of a serving run, kept as typed columns: a macro step of m decode
    iterations adds m start and duration floats and m KV counts to pending Python lists (a
    pointer copy each) and one run (replica, kind, batch, power, first context) for the columns
    that stay constant or grow by the batch within it. Every `FLUSH_RUNS` runs the pending rows
    become numpy chunks (8 bytes a value; the kind as a one-byte code; the contexts expanded as
    first context + batch x the row's place in its run). `to_frame` gives the recorder's frame
    (same columns, dtypes and values as rows appended one by one)."""

    columns = ("replica", "start_s", "duration_s", "kind", "batch", "context_tokens", "kv_blocks_used",
               "power_w")
    KINDS = ("decode", "prefill")
    FLUSH_RUNS = 1 << 13
    _DTYPES = {"replica": np.int64, "start_s": float, "duration_s": float, "kind": np.int8, "batch": np.int64,
               "context_tokens": np.int64, "kv_blocks_used": np.int64, "power_w": float}

    def __init__(self) -> None:
        self._chunks: dict[str, list[np.ndarray]] = {c: [] for c in self.columns}
        self._flushed = 0
        self._start: list[float] = []  # pending rows
        self._dur: list[float] = []
        self._kv: list[int] = []
        # the pending runs: replica, kind, batch, power, first context and rows of each
        self._rep: list[int] = []
        self._kind: list[int] = []
        self._batch: list[int] = []
        self._power: list[float] = []
        self._ctx0: list[int] = []
        self._m: list[int] = []

    @classmethod
    def of(cls, sim: Simulation) -> IterationLog:
        """The simulation's log (created on first use and shared by its replicas)."""
        log = sim.rec.tables.get("iterations")
        if log is None:
            log = sim.rec.tables["iterations"] = cls()
        return log

    def __len__(self) -> int:
        return self._flushed + len(self._start)  # (a run's rows all pend or are all flushed)

    def row(self, replica: int, start_s: float, duration_s: float, kind: int, batch: int, ctx: int,
            used: int, power_w: float) -> None:
        self._start.append(start_s)
        self._dur.append(duration_s)
        self._kv.append(used)
        self._run(replica, kind, batch, power_w, ctx, 1)

    def _run(self, replica: int, kind: int, batch: int, power_w: float, ctx0: int, m: int) -> None:
        self._rep.append(replica)
        self._kind.append(kind)
        self._batch.append(batch)
        self._power.append(power_w)
        self._ctx0.append(ctx0)
        self._m.append(m)
        if len(self._m) >= self.FLUSH_RUNS:
            self.flush()

    def decode_rows(self, replica: int, starts: list, durs: list, batch: int, ctx0: int, used: list,
                    power_w: float) -> None:
        """len(durs) decode iterations of `batch` requests from context `ctx0` (each adds batch)."""
        self._start.extend(starts)
        self._dur.extend(durs)
        self._kv.extend(used)
        self._run(replica, 0, batch, power_w, ctx0, len(durs))  # kind 0: decode

    def flush(self) -> None:
        """Move the pending rows into the columns' numpy chunks."""
        if not self._m:
            return
        m = np.array(self._m, dtype=np.int64)
        n = int(m.sum())
        place = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(m) - m, m)  # row within its run
        batch_rows = np.repeat(np.array(self._batch, dtype=np.int64), m)
        cols = {
            "replica": np.repeat(np.array(self._rep, dtype=np.int64), m),
            "start_s": np.array(self._start, dtype=float),
            "duration_s": np.array(self._dur, dtype=float),
            "kind": np.repeat(np.array(self._kind, dtype=np.int8), m),
            "batch": batch_rows,
            "context_tokens": np.repeat(np.array(self._ctx0, dtype=np.int64), m) + batch_rows * place,
            "kv_blocks_used": np.array(self._kv, dtype=np.int64),
            "power_w": np.repeat(np.array(self._power, dtype=float), m),
        }
        for c, v in cols.items():
            self._chunks[c].append(v)
        self._flushed += n
        self._start, self._dur, self._kv = [], [], []
        self._rep, self._kind, self._batch, self._power, self._ctx0, self._m = [], [], [], [], [], []

    def to_frame(self) -> pd.DataFrame:
        self.flush()
        # one copy of each column (copy=False: the frame keeps these arrays; a second, consolidating
        # copy would touch as much fresh memory again, ~0.2 s per 1.7M rows here in page faults);
        # the log keeps the joined column in place of its chunks (shared with the frame)
        data = {}
        for c, ch in self._chunks.items():
            col = np.concatenate(ch) if len(ch) > 1 else (ch[0] if ch else np.zeros(0, dtype=self._DTYPES[c]))
            self._chunks[c] = [col]
            data[c] = col
        data["kind"] = _decode_kinds(data["kind"], self.KINDS)
        return pd.DataFrame(copy=False, data=data)


def _decode_kinds(codes: np.ndarray, names: tuple[str, ...]):
    """`names[codes]` as the string column pandas would build from those strings; with
    arrow-backed strings (pandas >= 3) built by arrow from the codes (no Python object a row)."""
    objs = np.array(names, dtype=object)
    ref = pd.Series(objs).array  # (the dtype a frame infers from strings)
    if isinstance(ref, pd.arrays.ArrowStringArray):
        import pyarrow as pa

        arr = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(names)))
        return pd.array(arr.cast(pa.array(ref).type), dtype=ref.dtype)
    return objs[codes]


class SimReplica:
    """The simulator's side of one replica over a shared `ReplicaState` (single-replica serving
    runs one; cluster serving, `sim/cluster_serving.py`, runs one per replica behind a router).

    Event-driven without a simpy process of its own: every wake-up is an absolute-time event on
    the simulation's heap whose callback runs the replica until its next wake-up (the end of an
    iteration, of a macro step's chunk, or an arrival when idle). `loop(arrivals_done)` is the
    process that starts it."""

    def __init__(self, index: int, sim: Simulation, scn: ServingScenario, perf: LLMPerfModel,
                 policy: ServingPolicy, reqs: RequestState, max_model_len: int,
                 live_counts: list[int] | None = None):
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
            latency=self.latency, index=index, live_counts=live_counts)
        self.busy_s = 0.0
        self.energy_j = 0.0
        self.iterations = 0
        self.record_tokens = scn.record_tokens
        self.fast = scn.fast_forward and bool(getattr(policy, "fast_forward", True))
        # keep-all decisions of a fully running batch that fits taken without the policy's call
        # (such a decision is always valid, so check_decisions has nothing to check there)
        self._ask_less = self.fast and keeps_all_without_asking(policy)
        self.horizon_s = scn.horizon_s
        self._decode_s = self.latency.decode_time_s
        series = getattr(perf, "decode_series_s", None)  # (a calibrated model may lack it)
        self._decode_series = series if series is not None else (
            lambda b, c0, n: [perf.decode_time_s(b, c0 + b * i) for i in range(n)])
        self._per_step = self.latency._per_step
        self._power_of: dict[int, float] = {}  # decode power by batch size (a pure function of it)
        self._prefill_of: dict[tuple[int, int], tuple[float, float]] = {}  # see _prefill
        self._arrivals_done = None
        self._started = False
        self._idle = False  # waiting for an arrival (nothing live, or the policy ran nothing)
        self._log: IterationLog | None = None
        self._tok_tab = None
        self._iter = None  # the iteration in flight (per-iteration path)
        self._macro: _Macro | None = None  # the macro step under way
        self._wake_ev = None  # the one wake-up event that counts (earlier ones are dropped)
        self._wake_fn = None
        self._env = sim.env
        self._push_at = sim.push_at
        self._on_wake_cb = (self._on_wake,)
        # A lower bound on the (absolute) read-up-to time of the open QoE segment of every running
        # request: a token delivered before it joins that segment (see `_commit`). Each delivery at
        # t leaves a request's segment read up to at least t + its reading step, and a request that
        # starts running gets a token at the end of that iteration (`_end_iteration`), except one
        # swapped in next to a prefill: a swap-in drops the bound (the next commit recomputes it).
        self._seg_lb = np.inf
        self._min_step_s = float(reqs.qoe.min_step_s)

    # --- events ----------------------------------------------------------------------------
    def _wake_at(self, t_s: float, fn) -> None:
        """Call `fn()` at the absolute time `t_s`; supersedes the wake-up pending before (as
        `Simulation.at` with one callback, on a `Wake` that shares the replica's callback)."""
        w = Wake()
        w.callbacks = self._on_wake_cb
        self._wake_ev, self._wake_fn = w, fn
        self._push_at(t_s, w)

    def _on_wake(self, ev) -> None:
        if ev is self._wake_ev:
            self._wake_fn()

    def add(self, rid: int) -> None:
        self.state.add(rid)
        mac = self._macro
        if mac is not None:  # in a macro step: stop at the end of the iteration in flight
            if mac.cut:
                return  # an earlier arrival already cut it there
            mac.cut = True
            now = self._env._now
            ends = mac.ends
            j = min(bisect_left(ends, now), len(ends) - 1)
            mac.m = j + 1
            self._wake_at(ends[j], self._end_macro)  # at `now` when an iteration ends right now
            return
        if self._idle:
            self._idle = False
            self._wake_at(self.sim.now, self._decide)

    def loop(self, arrivals_done):
        """The process that starts the replica (it then runs on its own wake-up events)."""
        self._arrivals_done = arrivals_done
        self._log = IterationLog.of(self.sim)
        self._tok_tab = self.sim.rec.table("tokens", ["request", "t_s"]) if self.record_tokens else None
        self._decide()
        return
        yield  # a generator (simpy process) that returns at once

    # --- one decision ----------------------------------------------------------------------
    def _decide(self) -> None:
        perf, rs = self.perf, self.state
        if not rs.live:
            if not self._arrivals_done.triggered:
                self._idle = True
            return
        now = self._env._now
        ids = rs.ids()
        if self._ask_less and rs.n_running == ids.size and ids.size <= rs.max_num_seqs:
            # every live request runs: the policy keeps them all if their next step fits, which is
            # Σ ceil((context + 1) / block) = the blocks they hold (ceil(context / block) each)
            # + those whose context ends a block; then a macro step without the view and the call
            r = self.r
            gen = r.generated[ids]
            ctx0 = r.prompt[ids] + gen
            ctx_l = ctx0.tolist()
            hist = _residues(ctx_l, rs.block)
            if rs.used_blocks + hist[0] <= rs.total_blocks:
                self.policy.kept_all(now)
                if self._start_macro(ids, gen, ctx0, ctx_l, hist):
                    return
        view = rs.view(now, ids)
        dec = self.policy.schedule(view)
        if self.check:
            problems = validate_decision(view, dec)
            if problems:
                raise RuntimeError(f"policy {self.policy.policy_name!r} made an invalid decision "
                                   f"at t={now:.3f}s on replica {self.i}: {'; '.join(problems)}")
        running = dec.running
        keep_all = running is ids or (len(running) == ids.size and np.asarray(running).tolist() == ids.tolist())
        if keep_all and self.fast:
            if all_running(view):
                # pure decode with nothing waiting: the running set stays until an arrival,
                # a finish or a full KV cache, so run those iterations as one macro step
                ctx0 = view.context_tokens  # (prompt + generated)
                if self._start_macro(ids, view.generated_tokens, ctx0, ctx0.tolist()):
                    return
        chosen = None if keep_all else rs.chosen(view, dec)  # (None: every live request)
        if not keep_all and not chosen.any():
            if self._arrivals_done.triggered:
                raise RuntimeError(
                    f"policy {self.policy.policy_name!r} ran nothing with {ids.size} requests "
                    f"live on replica {self.i} and no arrivals left")
            self._idle = True
            return
        step = rs.apply(view, dec, chosen)
        swap_s = 0.0
        if step.preempted.size:
            swap_s += float(perf.swap_time_s(step.swap_out_bytes)) if step.swap_out_bytes else 0.0
        if step.swapped_in.size:
            swap_s += float(perf.swap_time_s(step.swap_in_bytes))
            # running again, maybe without a token this iteration (a prefill runs only the
            # admitted): its segment bound is unknown until the next commit computes it
            self._seg_lb = -np.inf
        run, ctx_tokens = step.run, step.ctx_tokens
        if step.kind == "prefill":
            compute_s, power = self._prefill(ctx_tokens, int(run.size))
        else:
            compute_s = float(self._decode_s(run.size, ctx_tokens))
            power = self._power(int(run.size))
        duration = compute_s + swap_s
        self._iter = (step, now, duration, power)
        self._wake_at(now + duration, self._end_iteration)  # as a timeout of `duration` lands

    def _prefill(self, tokens: int, seqs: int) -> tuple[float, float]:
        """(time, power) of a prefill iteration, remembered by (tokens, sequences): a pure
        function of them, and the same prompt lengths recur (at most PREFILL_CACHE entries)."""
        key = (tokens, seqs)
        tp = self._prefill_of.get(key)
        if tp is None:
            if len(self._prefill_of) >= PREFILL_CACHE:
                self._prefill_of.clear()
            perf = self.perf
            tp = self._prefill_of[key] = (perf.prefill_time_s(tokens, seqs), perf.prefill_power_w(tokens, seqs))
        return tp

    def _power(self, batch: int) -> float:
        p = self._power_of.get(batch)
        if p is None:
            p = self._power_of[batch] = float(self.perf.power_w(batch))
        return p

    def _end_iteration(self) -> None:
        step, start, duration, power = self._iter
        self._iter = None
        rs, now = self.state, self._env._now
        run = step.run
        self.iterations += 1
        self.busy_s += duration
        self.energy_j += power * duration * self.n_gpus
        self._log.row(self.i, start, duration, step.kind == "prefill", int(run.size), step.ctx_tokens,
                      rs.used_blocks, power)
        if self._tok_tab is not None:
            self._tok_tab.extend(request=run, t_s=np.full(run.size, now))
        done = rs.deliver(run, now)
        self._seg_lb = min(self._seg_lb, now + self._min_step_s - SEG_LB_MARGIN_S)
        if done.size:
            rs.finish(done, now, self.policy)
        self._decide()

    # --- the macro-step fast path ----------------------------------------------------------
    def _start_macro(self, run: np.ndarray, gen: np.ndarray, ctx0: np.ndarray, ctx_l: list[int],
                     hist: list[int] | None = None) -> bool:
        """Plan up to k decode iterations of `run` (tokens generated `gen`, contexts `ctx0`, as a
        list `ctx_l`, their residues `hist` if at hand) that need no new decision (k is bounded
        by the first finish, the KV capacity and the horizon) and wait for the first chunk's end.
        False when not even one fits (the per-iteration path then reports the overflow)."""
        r, rs = self.r, self.state
        B = run.size
        left = (r.output[run] - gen).tolist()  # (small batches: Python lists beat reductions)
        k_fin = min(left)
        k = max(1, min(k_fin, MAX_MACRO_ITERATIONS))
        block = rs.block
        free = rs.total_blocks - rs.used_blocks
        if free < B * -(-k // block):  # the KV cache may fill: walk the block boundaries
            if hist is None:
                hist = _residues(ctx_l, block)
            used, total, fit = rs.used_blocks, rs.total_blocks, 0
            while fit < k:
                used += hist[-fit % block]  # requests whose context crosses a block boundary
                if used > total:
                    break
                fit += 1
            if fit == 0:
                return False
            k = fit
        mac = _Macro(run, B, ctx0, left, k_fin, k, sum(ctx_l), self._env._now, hist)
        mac.gen = gen
        self._macro = mac
        self._extend(mac, MACRO_FIRST_CHUNK)
        return True

    def _extend(self, mac: _Macro, n: int) -> None:
        """Plan the macro step's next `n` iterations (at most up to k and the horizon) and wake
        at the last one's end. The durations are the per-iteration path's floats: scalar calls
        for a short chunk, one array call for a long one; ends are the clock's sequential sums."""
        i0 = len(mac.durs)
        n = min(n, mac.k - i0)
        B, c0 = mac.B, mac.ctx_sum + mac.B * i0
        if n <= MACRO_SCALAR_MAX:  # TokenLatency.decode_time_s's scalar path, B-only terms once
            per = self._per_step
            durs = self._decode_series(B, c0, n)
            if per != 1.0:  # (t / 1.0 is t exactly)
                durs = [t / per for t in durs]
        else:
            ctx = (c0 + B * np.arange(n, dtype=np.int64)).astype(float)
            durs = np.asarray(self.latency.decode_time_s(np.full(n, float(B)), ctx), dtype=float).tolist()
        ends = mac.ends
        new = list(accumulate(durs, initial=ends[-1] if ends else mac.t0))  # the clock's sums
        del new[0]
        h = self.horizon_s
        if h is not None and new and new[-1] >= h:  # iterations ending at or after the horizon
            j = bisect_left(new, h)  # never run (one does when it is the first: the
            del new[j + (i0 + j == 0):]  # per-iteration path starts it)
            ends.extend(new)
            mac.k = len(ends)
        else:
            ends.extend(new)
        mac.durs.extend(durs[:len(ends) - i0])
        mac.m = len(ends)
        self._wake_at(ends[-1], self._end_macro)

    def _end_macro(self) -> None:
        """The end of a planned chunk, or of the iteration an arrival cut: plan the next
        chunk, or commit the iterations that ran and decide again."""
        mac = self._macro
        if not mac.cut and mac.m < mac.k:  # 32 iterations, then 48 more, then the rest at once
            self._extend(mac, MACRO_SECOND_CHUNK if mac.m <= MACRO_FIRST_CHUNK else MAX_MACRO_ITERATIONS)
            return
        self._macro = None
        self._commit(mac, mac.m)
        self._decide()

    def _commit(self, mac: _Macro, m: int) -> None:
        """Commit the first m iterations of a macro step: counters, energy, the iteration log,
        QoE, tokens, KV blocks; finish the requests that completed. Clock values and sums are
        the per-iteration path's exactly (sequential float additions)."""
        r, rs = self.r, self.state
        run, B = mac.run, mac.B
        d, e = (mac.durs, mac.ends) if m == len(mac.durs) else (mac.durs[:m], mac.ends[:m])
        power = self._power(B)
        self.iterations += m
        # sequential sums as a loop of `busy += x; energy += power * x * n_gpus` makes them
        self.busy_s = reduce(add, d, self.busy_s)
        if self.n_gpus == 1:  # (power * x * 1 is power * x exactly)
            self.energy_j = reduce(add, map(mul, repeat(power), d), self.energy_j)
        else:
            self.energy_j = reduce(add, map(mul, map(mul, repeat(power), d), repeat(self.n_gpus)), self.energy_j)
        block = rs.block
        hist = mac.hist
        if hist is None:
            hist = _residues(mac.ctx0, block)
        used_i = _blocks_walk(rs.used_blocks, hist, block, m)
        used = used_i[-1]
        self._log.decode_rows(self.i, [mac.t0, *e[:-1]], d, B, mac.ctx_sum, used_i, power)
        qoe = r.qoe
        join_s = qoe.min_step_s - SEGMENT_MARGIN_S  # (deliver_many's test on the gaps between the ends)
        # a gap e[j+1] - e[j] (exact: adjacent floats) is d[j+1] plus the rounding of the clock's
        # sum, below 2^-52 e[j+1]: max(d) + 1e-15 e[-1] bounds them all, else the gaps themselves
        if e[0] + SEG_LB_MARGIN_S < self._seg_lb and (m == 1 or max(d) + 1e-15 * abs(e[-1]) <= join_s or max(
                [b - a for a, b in zip(e[:-1], e[1:], strict=True)]) <= join_s):
            # every token joins its request's open segment (the first arrives before the segment
            # is read, the rest closer together than a reading step): what deliver_many does then
            qoe.seg_n[run] += m
            self._seg_lb += m * self._min_step_s - 1e-9  # (each segment is read m steps further)
        else:
            qoe.deliver_many(run, e)
            self._seg_lb = float((qoe.arrival_s[run] + (qoe.seg_x0[run] + qoe.seg_n[run] * qoe.step_s[run])).min()) \
                - SEG_LB_MARGIN_S
        if self._tok_tab is not None:
            self._tok_tab.extend(request=np.tile(run, m), t_s=np.repeat(e, B))
        r.generated[run] = mac.gen + m  # (only this commit changes them while the macro step runs)
        # (a running request has had its first token: its prefill iteration delivered it; the
        # blocks it holds follow from its context, `RequestState.held`)
        rs.used_blocks = used
        if m == mac.k_fin:  # the requests with m tokens left finish (usually one: a slice of run)
            left = mac.left
            j = left.index(m)
            done = run[j:j + 1] if left.count(m) == 1 else run[[i for i, x in enumerate(left) if x == m]]
            rs.finish(done, e[-1], self.policy)


class _Macro:
    """A macro step under way: `k` planned decode iterations of `run` (B requests, contexts
    `ctx0`, tokens `left` to go, the first finish after `k_fin`) from `t0`; `durs`/`ends` the
    iterations planned so far; `m` those that run (fewer when an arrival cut it)."""

    __slots__ = ("run", "B", "ctx0", "left", "k_fin", "k", "ctx_sum", "t0", "hist", "durs", "ends", "m",
                 "cut", "gen")

    def __init__(self, run, B, ctx0, left, k_fin, k, ctx_sum, t0, hist):
        self.run, self.B, self.ctx0, self.left, self.k_fin, self.k = run, B, ctx0, left, k_fin, k
        self.ctx_sum, self.t0, self.hist = ctx_sum, t0, hist
        self.durs: list[float] = []
        self.ends: list[float] = []
        self.m = 0
        self.cut = False


def _residues(ctx: np.ndarray | list[int], block: int) -> list[int]:
    """hist[x] = #{r: ctx_r % block == x}: after iteration i (1-based) of a macro step the
    requests with ctx % block == (1 - i) % block hold one more KV block."""
    if len(ctx) > 64:
        return np.bincount(np.asarray(ctx) % block, minlength=block).tolist()
    hist = [0] * block
    for c in (ctx.tolist() if isinstance(ctx, np.ndarray) else ctx):
        hist[c % block] += 1
    return hist


def _blocks_walk(used0: int, hist: list[int], block: int, m: int) -> list[int]:
    """KV blocks in use after each of m decode iterations of a batch holding `used0` blocks
    whose contexts have the residues `hist` (`_residues`): the i-th iteration (1-based) adds a
    block to the requests with context % block == (1 - i) % block. O(m), not O(m * batch)."""
    pattern = hist[:1] + hist[:0:-1]  # hist[-i % block] for i < block (repeats every block)
    return list(islice(accumulate(cycle(pattern), initial=used0), 1, m + 1))


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
    loads = [0] * scn.replicas  # live requests per replica (the replicas keep it)
    replicas = [
        SimReplica(i, sim, scn, perf, make_policy("serving", scn.policy, scn.policy_params), state, max_model_len,
                   loads)
        for i in range(scn.replicas)
    ]
    arrivals_done = sim.env.event()

    times = state.arrival_s.tolist()
    n_rep, nxt, rr = len(replicas), 0, 0

    def arrive(_ev=None) -> None:
        """Dispatch the requests that arrived by now; wake at the next arrival (as a timeout
        of `t - now` lands: the clock values of one simpy process looping over arrivals)."""
        nonlocal nxt, rr
        now = sim.now
        woke = _ev is not None  # woken for request `nxt` (dispatched even if round-off left now < t)
        while nxt < len(times) and (woke or not times[nxt] > now):
            woke = False
            rid = nxt
            nxt += 1
            if scn.dispatcher == "round_robin":
                k = rr % n_rep
                rr += 1
            else:  # least_loaded: fewest live requests, then lowest index
                k = loads.index(min(loads))
            state.replica[rid] = k
            replicas[k].add(rid)
        if nxt < len(times):
            w = Wake()
            w.callbacks = arrive_cb
            sim.push_at(now + (times[nxt] - now), w)
        else:
            arrivals_done.succeed()

    arrive_cb = (arrive,)
    arrive()
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
