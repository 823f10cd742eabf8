"""Packing helpers shared by the serving policies (admission and growth under KV capacity)."""

from __future__ import annotations

import numpy as np

from orrery.policies.serving.base import RUNNING, SWAPPED, WAITING, ServingView


def step_blocks(view: ServingView) -> np.ndarray:
    """KV blocks each live request needs to run its next iteration (context + one token)."""
    return view.blocks_for(view.context_tokens + 1)


def admit_in_order(
    view: ServingView,
    chosen: np.ndarray,
    order: np.ndarray,
    *,
    stop_at_first_misfit: bool = True,
    watermark_blocks: int = 0,
) -> np.ndarray:
    """Add requests (positions in `order`) to the boolean mask `chosen` while they fit.

    Constraints: max_num_seqs, KV blocks after the step, and the prefill token budget for
    requests coming from WAITING. Returns the updated mask (a copy).
    """
    chosen = chosen.copy()
    need = step_blocks(view)
    used = int(need[chosen].sum())
    n = int(chosen.sum())
    budget = view.max_num_batched_tokens
    prefill_tokens = int(view.context_tokens[chosen & (view.state == WAITING)].sum())
    cap = view.kv_blocks_total - watermark_blocks
    for j in order:
        if chosen[j]:
            continue
        tokens = int(view.context_tokens[j]) if view.state[j] == WAITING else 0
        fits = (
            n + 1 <= view.max_num_seqs
            and used + need[j] <= cap
            and (prefill_tokens + tokens <= budget or (tokens and prefill_tokens == 0))
        )
        if not fits:
            if stop_at_first_misfit:
                break
            continue
        chosen[j] = True
        used += int(need[j])
        n += 1
        prefill_tokens += tokens
    return chosen


def shrink_to_fit(view: ServingView, chosen: np.ndarray, drop_order: np.ndarray) -> np.ndarray:
    """Drop requests (in `drop_order`) from `chosen` until its next step fits in KV memory."""
    chosen = chosen.copy()
    need = step_blocks(view)
    used = int(need[chosen].sum())
    for j in drop_order:
        if used <= view.kv_blocks_total and chosen.sum() <= view.max_num_seqs:
            break
        if chosen[j]:
            chosen[j] = False
            used -= int(need[j])
    return chosen


def vllm_step(view: ServingView, priority: np.ndarray | None = None) -> np.ndarray:
    """vLLM's scheduling step as a mask over the view's requests.

    Prefill-first: with nothing swapped out, admit waiting requests in priority order (stop at
    the first that does not fit). Otherwise keep the running set, preempting the
    lowest-priority running requests while the next decode step does not fit, and swap
    requests back in when room allows. `priority` is a permutation of positions, highest
    first (default: arrival order).
    """
    running = view.state == RUNNING
    if running.all() and view.ids.size <= view.max_num_seqs \
            and int(step_blocks(view).sum()) <= view.kv_blocks_total:
        return running  # pure decode that fits: keep everyone (what the steps below return)
    order = np.arange(view.ids.size) if priority is None else priority
    waiting = view.state == WAITING
    swapped = view.state == SWAPPED
    if not swapped.any() and waiting.any():
        admitted = admit_in_order(view, running, order[waiting[order]], watermark_blocks=0)
        if (admitted & waiting).any():
            return admitted
    chosen = shrink_to_fit(view, running, order[running[order]][::-1])
    if swapped.any():
        chosen = admit_in_order(view, chosen, order[swapped[order]])
    return chosen
