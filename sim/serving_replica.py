"""One serving replica's bookkeeping, shared by the simulator and the real engine (numpy only).

`RequestState` holds every request's state in arrays indexed by request id. A `ReplicaState`
is one replica's view of them: its live requests, the paged KV accounting (blocks in use,
host swap space; the blocks a request holds follow from its context and state,
`RequestState.held`, so nothing writes them) and its counters. Per iteration a backend asks it for
the `ServingView`, passes the policy's decision to `apply` (preemptions, swap-ins, admission,
KV growth; it returns what to execute), executes that (simulated time in `sim/serving.py`,
torch and the wall clock in `realbackend/serving.py`), then calls `deliver` and `finish`.
`summarize_requests` turns the final state into the per-request table and metrics both report.
Neither backend's own machinery (simpy processes, macro steps; torch, cache slots) lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from orrery.policies.serving.base import RUNNING, SWAPPED, WAITING, ServingDecision, ServingView
from orrery.policies.serving.common import state_list
from orrery.policies.serving.qoe import LISTENING_TDS_TOK_S, QOE_METRICS, QoETracker
from orrery.workloads.serving import Requests

FINISHED = 3
GiB = 1024**3
_NO_IDS = np.zeros(0, dtype=np.int64)  # (shared empty results of `apply` and `deliver`: read-only)
_NO_IDS.flags.writeable = False
_NO_MASK = np.zeros(0, dtype=bool)
_NO_MASK.flags.writeable = False


def held_blocks(state, context, block: int):
    """GPU KV blocks of requests in `state` with `context` tokens, blocks of `block` tokens:
    ceil(context / block) when running, else 0 (arrays; a running request's blocks as a plain
    int). Between iterations that is exact: a step that makes a token allocates its block at
    `apply` and the token lands at `deliver`; a swap-in gets its blocks back at once. No array
    keeps it, so a macro step's commit writes none."""
    if isinstance(state, int):
        return -(-context // block) if state == RUNNING else 0
    return np.where(state == RUNNING, -(-context // block), 0)


class RequestState:
    """Mutable per-request state, all numpy arrays indexed by request id."""

    def __init__(self, reqs: Requests, qoe: Any, rng: np.random.Generator):
        """`qoe`: the scenario's QoE spec (`ttft_exp_s`, `tds_exp_tok_s`, `listening_fraction`)."""
        n = len(reqs)
        self.n = n
        self.arrival_s = np.asarray(reqs.arrival_s, dtype=float)
        self.prompt = np.asarray(reqs.prompt_tokens, dtype=np.int64)
        self.output = np.asarray(reqs.output_tokens, dtype=np.int64)
        self.generated = np.zeros(n, dtype=np.int64)
        self.state = np.full(n, WAITING, dtype=np.int8)
        self.n_preempt = np.zeros(n, dtype=np.int64)
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.replica = np.full(n, -1, dtype=np.int64)
        listening = rng.random(n) < qoe.listening_fraction
        self.tds = np.where(listening, LISTENING_TDS_TOK_S, qoe.tds_exp_tok_s)
        self.ttft = np.full(n, qoe.ttft_exp_s)
        self.qoe = QoETracker(self.arrival_s, self.ttft, self.tds)
        self.qoe_metric = getattr(qoe, "qoe_metric", "andes")

    def context(self, ids: np.ndarray) -> np.ndarray:
        """Tokens of context (prompt + generated) of each request in `ids`."""
        return self.prompt[ids] + self.generated[ids]

    def held(self, ids: np.ndarray, block: int) -> np.ndarray:
        """GPU KV blocks each request of `ids` holds (`held_blocks`)."""
        return held_blocks(self.state[ids], self.context(ids), block)


@dataclass
class Step:
    """What `ReplicaState.apply` decided to execute in one iteration.

    kind: "prefill" (admitted requests, `run` = the admitted) or "decode" (`run` = the chosen
    running set); ctx_tokens: context tokens of `run` before the step; preempted: requests
    preempted, `swapped_out` the mask of those whose KV goes to host memory (the rest are
    recomputed later); swapped_in: requests whose KV comes back; *_bytes: KV bytes moved.
    """

    kind: str
    run: np.ndarray
    ctx_tokens: int
    preempted: np.ndarray
    swapped_out: np.ndarray
    swapped_in: np.ndarray
    swap_out_bytes: float
    swap_in_bytes: float


class ReplicaState:
    """One replica's live set, KV blocks, swap space and counters over a shared `RequestState`."""

    def __init__(self, reqs: RequestState, *, block_size: int, total_blocks: int, max_num_seqs: int,
                 max_num_batched_tokens: int, swap_cap_bytes: float, kv_bytes_per_token: float,
                 latency: Any, index: int = 0, live_counts: list[int] | None = None):
        """`live_counts`: a list the replicas of one run share, `live_counts[index]` kept equal to
        this replica's number of live requests (a dispatcher reads them all at once)."""
        self.r = reqs
        self.i = index
        self.block = block_size
        self.total_blocks = total_blocks
        self.max_num_seqs = max_num_seqs
        self.max_batched = max_num_batched_tokens
        self.swap_cap_bytes = swap_cap_bytes
        self.kv_bytes_per_token = kv_bytes_per_token
        self.latency = latency
        self.used_blocks = 0
        self.swap_used_bytes = 0.0
        self.swap_bytes = 0.0  # KV bytes moved both ways
        self.preemptions = 0
        self.admitted = 0
        self.live: list[int] = []
        self._counts = live_counts if live_counts is not None else [0] * (index + 1)
        self.n_running = 0  # live requests in state RUNNING
        self._ids_cache: np.ndarray | None = None

    # --- the live set --------------------------------------------------------------------
    def add(self, rid: int) -> None:
        self.live.append(rid)
        self._counts[self.i] += 1
        self._ids_cache = None

    def ids(self) -> np.ndarray:
        if self._ids_cache is None:
            self._ids_cache = np.array(self.live, dtype=np.int64)
        return self._ids_cache

    # --- one iteration ------------------------------------------------------------------------
    def view(self, now_s: float, ids: np.ndarray | None = None) -> ServingView:
        """The policy's view of this replica; per-request arrays a policy does not read are
        gathered on first access (`_LazyView`), so a pure-decode decision costs a few arrays."""
        ids = self.ids() if ids is None else ids
        v = object.__new__(_LazyView)
        d = v.__dict__
        d["_src"] = self.r
        d["now_s"] = now_s
        d["ids"] = ids
        d["state"] = self.r.state[ids]
        d["prompt_tokens"] = self.r.prompt[ids]
        d["generated_tokens"] = self.r.generated[ids]
        d["block_size"] = self.block
        d["kv_blocks_total"] = self.total_blocks
        d["kv_blocks_free"] = self.total_blocks - self.used_blocks
        d["max_num_seqs"] = self.max_num_seqs
        d["max_num_batched_tokens"] = self.max_batched
        d["latency"] = self.latency
        d["total_preemptions"] = self.preemptions
        d["total_admitted"] = self.admitted
        return v

    @staticmethod
    def chosen(view: ServingView, dec: ServingDecision) -> np.ndarray:
        """Mask over `view.ids` of the requests the decision keeps or starts."""
        ids = view.ids
        running = np.asarray(dec.running)
        if running.size == ids.size and np.array_equal(running, ids):
            return np.ones(ids.size, dtype=bool)  # keeps every live request (no set lookup)
        if running.size == 0 or ids.size == 0:
            return np.zeros(ids.size, dtype=bool)
        if ids.size <= 64:  # a set of Python ints beats the mark array on small sets
            keep = set(running.tolist())
            return np.array([i in keep for i in ids.tolist()], dtype=bool)
        # membership through a mark array over the ids' range (np.isin sorts: slow on small sets)
        lo = int(ids.min())
        mark = np.zeros(int(ids.max()) - lo + 1, dtype=bool)
        r = running[(running >= lo) & (running < lo + mark.size)]
        mark[r - lo] = True
        return mark[ids - lo]

    def apply(self, view: ServingView, dec: ServingDecision, chosen: np.ndarray | None) -> Step:
        """Preempt, swap in and admit per the decision; grow the KV of what runs by one token.
        `chosen`: the mask of `ReplicaState.chosen`, or None when the decision keeps every live
        request.

        Swap preemptions go to host memory in order while the swap space holds them (the rest
        are recomputed). Raises if the KV blocks in use would exceed the capacity."""
        r, ids, st = self.r, view.ids, view.state
        kvb = self.kv_bytes_per_token
        if ids.size <= 64:  # split on Python lists (cheaper than masks on small arrays)
            parts: tuple[list, list, list] = ([], [], [])  # preempted, swapped in, admitted
            ch_l = None if chosen is None else chosen.tolist()
            if ch_l is None or False not in ch_l:  # everyone runs (an admission next to a running batch)
                for i, s in zip(ids.tolist(), state_list(view), strict=True):
                    if s != RUNNING:
                        parts[1 if s == SWAPPED else 2].append(i)
            else:
                for i, s, c in zip(ids.tolist(), state_list(view), ch_l, strict=True):
                    if s == RUNNING:
                        if not c:
                            parts[0].append(i)
                    elif c:
                        parts[1 if s == SWAPPED else 2].append(i)
            pre, sin, admit = (np.array(x, dtype=np.int64) if x else _NO_IDS for x in parts)
        else:
            if chosen is None:
                chosen = np.ones(ids.size, dtype=bool)
            pre = ids[(st == RUNNING) & ~chosen]
            sin = ids[(st == SWAPPED) & chosen]
            admit = ids[(st == WAITING) & chosen]
        to_swap = _NO_MASK
        out_bytes = 0.0
        if pre.size:
            to_swap = np.zeros(pre.size, bool)
            ctx_pre = r.context(pre)
            nbytes = ctx_pre * kvb
            if dec.preempt_mode == "swap":
                room = self.swap_cap_bytes - self.swap_used_bytes
                to_swap = np.cumsum(nbytes) <= room
            self.used_blocks -= int(held_blocks(r.state[pre], ctx_pre, self.block).sum())
            r.state[pre] = np.where(to_swap, SWAPPED, WAITING)
            r.n_preempt[pre] += 1
            self.preemptions += pre.size
            out_bytes = float(nbytes[to_swap].sum())
            self.swap_used_bytes += out_bytes
            self.swap_bytes += out_bytes
        in_bytes = 0.0
        if sin.size:
            ctx_in = r.context(sin)
            in_bytes = float((ctx_in * kvb).sum())
            self.swap_used_bytes = max(0.0, self.swap_used_bytes - in_bytes)
            self.swap_bytes += in_bytes
            r.state[sin] = RUNNING
            # a swap-in copies the request's KV back into GPU blocks at once (also next to a
            # prefill, which runs only the admitted): ceil(context / block) of them
            self.used_blocks += int(held_blocks(r.state[sin], ctx_in, self.block).sum())
        if admit.size:
            kind, run = "prefill", admit
            if admit.size <= 2:
                self.admitted += sum([1 for i in admit.tolist() if r.generated[i] == 0])
            else:
                self.admitted += int((r.generated[admit] == 0).sum())
        else:
            kind, run = "decode", ids if chosen is None else ids[chosen]
        # the blocks of the token this step makes: ceil((context + 1) / block) minus what the
        # request holds, nothing when admitted (waiting), ceil(context / block) when running (or
        # just swapped in): one block exactly where the context fills its last block
        block = self.block
        prefill = kind == "prefill"
        if run.size <= 2:  # (a prefill of one or two) plain Python, the same integers
            ctx_tokens = delta = 0
            for i in run.tolist():
                c = int(r.prompt[i]) + int(r.generated[i])
                ctx_tokens += c
                r.state[i] = RUNNING
                delta += (c + block) // block if prefill else c % block == 0
            self.used_blocks += delta
        else:
            ctx = r.context(run)
            ctx_tokens = int(ctx.sum())
            r.state[run] = RUNNING
            self.used_blocks += int(((ctx + block) // block).sum()) if prefill else int((ctx % block == 0).sum())
        if self.used_blocks > self.total_blocks:
            raise RuntimeError(f"KV blocks in use {self.used_blocks} exceed capacity {self.total_blocks}")
        self.n_running += sin.size + admit.size - pre.size
        return Step(kind, run, ctx_tokens, pre, to_swap, sin, out_bytes, in_bytes)

    def deliver(self, run: np.ndarray, now_s: float) -> np.ndarray:
        """One token to each request of `run` at `now_s`; returns those now complete."""
        r = self.r
        r.qoe.deliver(run, now_s)
        if run.size <= 2:  # a prefill of one or two: plain Python
            done = []
            for i in run.tolist():
                g = int(r.generated[i]) + 1
                r.generated[i] = g
                f = float(r.first_token_s[i])
                if f != f:  # (NaN: no token yet)
                    r.first_token_s[i] = now_s
                if g >= r.output[i]:
                    done.append(i)
            return np.array(done, dtype=np.int64) if done else _NO_IDS
        r.generated[run] += 1
        fresh = run[np.isnan(r.first_token_s[run])]
        r.first_token_s[fresh] = now_s
        return run[r.generated[run] >= r.output[run]]

    def finish(self, done: np.ndarray, now_s: float, policy: Any) -> None:
        """Release the KV of finished requests, drop them from the live set, tell the policy."""
        r = self.r
        done_l = done.tolist()
        if len(done_l) <= 2:  # one or two (the usual finish): plain Python, the same integers
            for i in done_l:
                st = int(r.state[i])
                self.used_blocks -= held_blocks(st, int(r.prompt[i]) + int(r.generated[i]), self.block)
                if st == RUNNING:
                    self.n_running -= 1
                r.state[i] = FINISHED
                r.finish_s[i] = now_s
                self.live.remove(i)
        else:
            self.used_blocks -= int(r.held(done, self.block).sum())
            self.n_running -= int((r.state[done] == RUNNING).sum())
            r.state[done] = FINISHED
            r.finish_s[done] = now_s
            finished = set(done_l)
            self.live = [i for i in self.live if i not in finished]
        self._counts[self.i] -= len(done_l)
        self._ids_cache = None
        for rid in done_l:
            policy.on_finish(rid, now_s)


class _LazyView(ServingView):
    """A `ServingView` whose per-request arrays other than ids/state/prompt/generated are
    gathered from the `RequestState` when first read (then cached on the instance). A view is
    read during the decision, before `apply` changes the state; a policy must not keep one and
    read a field it had not read after the iteration ran."""

    _GATHER = {
        "arrival_s": lambda r, ids: r.arrival_s[ids],
        "n_preemptions": lambda r, ids: r.n_preempt[ids],
        "ttft_exp_s": lambda r, ids: r.ttft[ids],
        "tds_exp_tok_s": lambda r, ids: r.tds[ids],
        "qoe_deficit": lambda r, ids: r.qoe.deficit_of(ids),
        # absolute time, as ServingView documents (the tracker keeps it relative to arrival)
        "digest_last_s": lambda r, ids: r.arrival_s[ids] + r.qoe.digest_last_of(ids),
    }

    @property
    def context_tokens(self) -> np.ndarray:
        """prompt + generated, computed once per view (the policy and the backend both read it)."""
        d = self.__dict__
        c = d.get("_context_tokens")
        if c is None:
            c = d["_context_tokens"] = d["prompt_tokens"] + d["generated_tokens"]
        return c

    @property
    def kv_blocks_held(self) -> np.ndarray:
        """`held_blocks` of the view's requests, computed once per view."""
        d = self.__dict__
        h = d.get("_kv_blocks_held")
        if h is None:
            h = d["_kv_blocks_held"] = held_blocks(d["state"], self.context_tokens, d["block_size"])
        return h

    def __getattr__(self, name: str):
        gather = _LazyView._GATHER.get(name)
        if gather is None or "_src" not in self.__dict__:
            raise AttributeError(name)
        value = gather(self.__dict__["_src"], self.__dict__["ids"])
        self.__dict__[name] = value
        return value


def summarize_requests(r: RequestState, end_fallback_s: float) -> tuple[pd.DataFrame, dict[str, float], float]:
    """Per-request table, request-level metrics and the served span (s) of a finished run.

    Shared by the simulator and the real backend so both report exactly the same metrics.
    Unfinished requests (horizon reached) get their QoE so far against their full expected curve.
    """
    finished = r.state == FINISHED
    by_metric = {}
    for metric in QOE_METRICS:
        q = np.where(finished, r.qoe.qoe(metric=metric), np.nan)
        if (~finished).any():
            q = np.where(finished, q, r.qoe.qoe_unfinished(r.output, end_fallback_s, metric=metric))
        by_metric[metric] = q
    qoe = by_metric[r.qoe_metric]
    ttft = r.first_token_s - r.arrival_s
    n_after_first = np.maximum(r.generated - 1, 1)
    tpot = np.where(r.generated > 1, (r.finish_s - r.first_token_s) / n_after_first, np.nan)
    table = pd.DataFrame({
        "request": np.arange(r.n), "replica": r.replica, "arrival_s": r.arrival_s,
        "prompt_tokens": r.prompt, "output_tokens": r.output, "generated_tokens": r.generated,
        "ttft_s": ttft, "finish_s": r.finish_s, "tpot_s": tpot, "qoe": qoe,
        "qoe_andes": by_metric["andes"], "qoe_deficit": by_metric["deficit"],
        "tds_exp_tok_s": r.tds, "n_preemptions": r.n_preempt, "finished": finished,
    })
    end_s = float(np.nanmax(r.finish_s)) if finished.any() else end_fallback_s
    span_s = max(end_s - float(r.arrival_s.min()), 1e-9)
    tokens = int(r.generated.sum())
    metrics = {
        "qoe_mean": float(np.nanmean(qoe)),
        "qoe_p10": float(np.nanpercentile(qoe, 10)),
        "qoe_ge_0_9_frac": float(np.mean(qoe >= 0.9)),
        "qoe_andes_mean": float(np.nanmean(by_metric["andes"])),
        "qoe_deficit_mean": float(np.nanmean(by_metric["deficit"])),
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
