"""Andes: QoE-aware scheduling for text streaming (Liu et al., 2024).

When the replica is under pressure (KV use >= `kv_trigger` or the decode step is slower than
the strictest expected token delivery speed), Andes picks the next running set by an exact-B
knapsack over the live requests: value_i = Q_serve,i(B) - Q_wait,i, the expected QoE if served
with a batch of B (token interval from the latency model) minus the QoE if it waits, both over
the next `horizon_s`; weight_i = KV blocks; capacity = the KV blocks of the replica. For each B
of a geometric grid in [1, max], take the requests greedily by value/weight and keep the best
B. Requests with tokens buffered at the client lose nothing by waiting, so the GPU goes where
it saves most QoE. A bonus for running requests and a cap on the average preemptions per
request (P) prevent thrashing. Otherwise (no pressure) it behaves like vLLM-FCFS.
"""

from __future__ import annotations

import numpy as np

from orrery.policies.registry import register
from orrery.policies.serving.base import (
    RUNNING,
    SWAPPED,
    WAITING,
    PreemptMode,
    ServingDecision,
    ServingPolicy,
    ServingView,
)
from orrery.policies.serving.common import (
    admit_in_order,
    all_running,
    context_list,
    shrink_to_fit,
    state_list,
    step_blocks,
    vllm_step,
    vllm_step_ids,
)
from orrery.policies.serving.qoe import expected_area, lost_area


@register("serving", "andes")
class Andes(ServingPolicy):
    def __init__(
        self,
        horizon_s: float = 5.0,
        kv_trigger: float = 0.9,
        preemption_cap: float = 1.0,
        running_bonus: float = 0.02,
        expected_output_tokens: float = 256.0,
        n_batch_sizes: int = 12,
        replan_interval_s: float = 0.5,
        preempt_mode: PreemptMode = "swap",
    ):
        if horizon_s <= 0 or replan_interval_s < 0 or not 0 < kv_trigger <= 1:
            raise ValueError("need horizon_s > 0, replan_interval_s >= 0 and 0 < kv_trigger <= 1")
        if preemption_cap < 0 or expected_output_tokens <= 0 or n_batch_sizes < 1:
            raise ValueError("need preemption_cap >= 0, expected_output_tokens > 0, n_batch_sizes >= 1")
        self.horizon_s = float(horizon_s)
        self.kv_trigger = float(kv_trigger)
        self.preemption_cap = float(preemption_cap)
        self.running_bonus = float(running_bonus)
        self.expected_output_tokens = float(expected_output_tokens)
        self.n_batch_sizes = int(n_batch_sizes)
        self.replan_interval_s = float(replan_interval_s)
        self.preempt_mode = preempt_mode
        self._plan_time = -np.inf
        self._plan: set[int] = set()

    # -- pressure test -------------------------------------------------------------------
    def _under_pressure(self, view: ServingView) -> bool:
        if all_running(view):
            return False  # nobody to trade places with
        used = view.kv_blocks_total - view.kv_blocks_free
        if used >= self.kv_trigger * view.kv_blocks_total:
            return True
        st = state_list(view)
        n_run = st.count(RUNNING)
        if n_run:
            ctx = context_list(view)
            ctx_run = sum([c for c, s in zip(ctx, st, strict=True) if s == RUNNING])
            step = float(view.latency.decode_time_s(n_run, ctx_run))
            return step > 1.0 / float(max(view.tds_exp_tok_s.tolist()))
        return False

    # -- the knapsack ---------------------------------------------------------------------
    def _values(self, view: ServingView, sizes: np.ndarray, stall_s: float | np.ndarray = 0.0):
        """value[b, i] = Q_serve,i(B=sizes[b]) - Q_wait,i (+ bonus when running).

        `stall_s` is time the next horizon loses to swaps and prefills: the served tokens
        arrive at the interval stretched by horizon / (horizon - stall).
        """
        running = view.state == RUNNING
        length = np.maximum(view.generated_tokens + 1.0, self.expected_output_tokens)
        area = expected_area(length, view.tds_exp_tok_s)
        deficit0 = view.qoe_deficit
        args = (view.arrival_s, view.ttft_exp_s, view.tds_exp_tok_s, view.generated_tokens, view.digest_last_s)
        lost_wait = lost_area(view.now_s, self.horizon_s, np.inf, *args)
        q_wait = area / (area + deficit0 + lost_wait)
        mean_ctx = float(view.context_tokens.mean()) if view.ids.size else 0.0
        step = np.asarray(view.latency.decode_time_s(sizes, sizes * mean_ctx), dtype=float)
        stretch = self.horizon_s / np.maximum(self.horizon_s - np.asarray(stall_s), 1e-3 * self.horizon_s)
        step = step * stretch
        lost_serve = lost_area(view.now_s, self.horizon_s, step.reshape(-1, 1), *args)  # (m, n)
        q_serve = area / (area + deficit0 + lost_serve)
        return q_serve - q_wait + self.running_bonus * running

    def _stall_s(self, view: ServingView, chosen: np.ndarray) -> float:
        """GPU time the switch from the current running set to `chosen` costs."""
        lat = view.latency
        running = view.state == RUNNING
        ctx = view.context_tokens
        out = ctx[running & ~chosen]
        swap_in = ctx[(view.state == SWAPPED) & chosen]
        admit = ctx[(view.state == WAITING) & chosen]
        stall = 0.0
        if out.size:
            if self.preempt_mode == "swap":
                stall += float(lat.swap_time_s(float(out.sum()) * lat.kv_bytes_per_token)) * 2.0
            else:  # recompute later
                stall += float(lat.prefill_time_s(int(out.sum()), int(out.size)))
        if swap_in.size:
            stall += float(lat.swap_time_s(float(swap_in.sum()) * lat.kv_bytes_per_token))
        if admit.size:
            stall += float(lat.prefill_time_s(int(admit.sum()), int(admit.size)))
        return stall

    def _knapsack(self, view: ServingView) -> np.ndarray:
        n = view.ids.size
        running = view.state == RUNNING
        weight = step_blocks(view).astype(float)
        b_max = min(view.max_num_seqs, n)
        sizes = np.unique(np.geomspace(1, b_max, self.n_batch_sizes).round().astype(int))
        value = self._values(view, sizes)

        capped = view.total_preemptions >= self.preemption_cap * max(1, view.total_admitted)
        candidates = []
        for row, b in enumerate(sizes):
            v = value[row]
            order = np.argsort(-(v / np.maximum(weight, 1.0)), kind="stable")
            if capped:  # no new preemptions: running requests stay in
                order = np.concatenate([order[running[order]], order[~running[order]]])
            chosen = np.zeros(n, dtype=bool)
            room = view.kv_blocks_total
            count = 0
            for j in order:
                if count == b:
                    break
                if weight[j] <= room:
                    chosen[j] = True
                    room -= weight[j]
                    count += 1
            if count == b:  # exact-B feasible
                candidates.append(chosen)
        # no preemption beyond what memory forces: keep the running set, admit by value
        keep = shrink_to_fit(view, running, np.flatnonzero(running)[::-1])
        mid = value[len(sizes) // 2]
        by_value = np.argsort(-(mid / np.maximum(weight, 1.0)), kind="stable")
        candidates.append(admit_in_order(view, keep, by_value, stop_at_first_misfit=False))
        best_value, best = -np.inf, candidates[-1]
        for chosen in candidates:
            b = np.array([max(int(chosen.sum()), 1)])
            v = self._values(view, b, self._stall_s(view, chosen))[0]
            total = float(v[chosen].sum())
            if total > best_value:
                best_value, best = total, chosen
        if capped:
            best = best | running
            if step_blocks(view)[best].sum() > view.kv_blocks_total:
                best = vllm_step(view)
        return best

    # all running means no pressure (`_under_pressure`); schedule then clears the plan and keeps
    # everyone when they fit
    keeps_all_that_fit = True

    def kept_all(self, now_s: float) -> None:
        self._plan.clear()

    def schedule(self, view: ServingView) -> ServingDecision:
        if not self._under_pressure(view):
            self._plan.clear()
            return ServingDecision(vllm_step_ids(view), self.preempt_mode)  # (view.ids when all keep)
        chosen = None
        if view.now_s - self._plan_time < self.replan_interval_s and self._plan:
            chosen = np.fromiter((i in self._plan for i in view.ids.tolist()), bool, view.ids.size)
            if not chosen.any():
                # every planned request has finished: a plan that runs nobody would leave the
                # GPU idle with live requests until the next arrival, so plan again now
                chosen = None
        if chosen is None:
            chosen = self._knapsack(view)
            self._plan = set(view.ids[chosen].tolist())
            self._plan_time = view.now_s
        # respect the token budget for prefills: admit planned waiting requests in value order
        running = view.state == RUNNING
        waiting_planned = chosen & (view.state == WAITING)
        if waiting_planned.any():
            base = chosen & ~waiting_planned
            order = np.flatnonzero(waiting_planned)
            chosen = admit_in_order(view, base, order, stop_at_first_misfit=False)
        # growth may not fit any more: drop the newest running requests first
        need = step_blocks(view)
        if need[chosen].sum() > view.kv_blocks_total:
            for j in np.flatnonzero(chosen & running)[::-1]:
                chosen[j] = False
                if need[chosen].sum() <= view.kv_blocks_total:
                    break
        return ServingDecision(view.ids[chosen], self.preempt_mode)
