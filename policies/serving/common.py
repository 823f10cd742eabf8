"""Packing helpers shared by the serving policies (admission and growth under KV capacity)."""

from __future__ import annotations

import numpy as np

from orrery.policies.serving.base import RUNNING, SWAPPED, WAITING, ServingView

SMALL = 64  # below this many requests plain Python lists beat numpy calls


def step_blocks(view: ServingView) -> np.ndarray:
    """KV blocks each live request needs to run its next iteration (context + one token)."""
    return view.blocks_for(view.context_tokens + 1)


def state_list(view: ServingView) -> list[int]:
    """`view.state` as a Python list, remembered on the view (a view does not change during a
    decision; the policy's steps and the backend each read it)."""
    d = view.__dict__
    st = d.get("_state_list")
    if st is None:
        st = d["_state_list"] = view.state.tolist()
    return st


def context_list(view: ServingView) -> list[int]:
    """`view.context_tokens` as a Python list, remembered on the view (see `state_list`)."""
    d = view.__dict__
    c = d.get("_context_list")
    if c is None:
        c = d["_context_list"] = view.context_tokens.tolist()
    return c


def step_blocks_list(view: ServingView, context: list[int] | None = None) -> list[int]:
    """`step_blocks` as a Python list, for small batches: ceil((context + 1) / block) =
    (context + block) // block. `context`: the view's context tokens as a list, if at hand."""
    b = view.block_size
    return [(c + b) // b for c in (context_list(view) if context is None else context)]


def all_running(view: ServingView) -> bool:
    """Every live request is running (nothing waits or is swapped out). Remembered on the
    view (a view does not change during a decision; a policy and the backend both ask)."""
    d = view.__dict__
    flag = d.get("_all_running")
    if flag is None:
        st = state_list(view)
        flag = d["_all_running"] = st.count(RUNNING) == len(st)
    return flag


def keeps_everyone(view: ServingView) -> bool:
    """Every live request is running, within max_num_seqs, and their next decode step fits in
    the KV cache: vLLM's step keeps them all (`vllm_step` returns the running mask)."""
    if view.ids.size > view.max_num_seqs or not all_running(view):
        return False
    if view.ids.size <= SMALL:
        need = sum(step_blocks_list(view))
    else:
        need = int(step_blocks(view).sum())
    return need <= view.kv_blocks_total


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
    chosen_l = chosen.tolist() if isinstance(chosen, np.ndarray) else list(chosen)
    return np.array(_admit_list(view, chosen_l, order, stop_at_first_misfit, watermark_blocks), dtype=bool)


def _admit_list(view: ServingView, chosen_l: list[bool], order, stop_at_first_misfit: bool,
                watermark_blocks: int) -> list[bool]:
    """`admit_in_order` on Python lists (numpy scalars and small-array calls cost more than the
    loop's work); updates and returns `chosen_l`."""
    budget = view.max_num_batched_tokens
    cap = view.kv_blocks_total - watermark_blocks
    max_seqs = view.max_num_seqs
    ctx_l = context_list(view)
    b = view.block_size
    st = state_list(view)
    used = n = prefill_tokens = 0
    for c, ch, s in zip(ctx_l, chosen_l, st, strict=True):
        if ch:
            used += (c + b) // b
            n += 1
            if s == WAITING:
                prefill_tokens += c
    order = order.tolist() if isinstance(order, np.ndarray) else order
    for j in order:
        if chosen_l[j]:
            continue
        c = ctx_l[j]
        need = (c + b) // b
        tokens = c if st[j] == WAITING else 0
        fits = (
            n + 1 <= max_seqs
            and used + need <= cap
            and (prefill_tokens + tokens <= budget or (tokens and prefill_tokens == 0))
        )
        if not fits:
            if stop_at_first_misfit:
                break
            continue
        chosen_l[j] = True
        used += need
        n += 1
        prefill_tokens += tokens
    return chosen_l


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
    if keeps_everyone(view):
        return view.state == RUNNING  # pure decode that fits: keep everyone (what the steps below return)
    chosen = _vllm_step(view, priority)
    return np.array(chosen, dtype=bool) if isinstance(chosen, list) else chosen


def vllm_step_ids(view: ServingView, priority: np.ndarray | None = None) -> np.ndarray:
    """`view.ids[vllm_step(view, priority)]`: the ids the step runs; `view.ids` itself when it
    keeps every running request that fits or admits next to them so that every live request
    runs (the usual admission; a decision whose `running` is the view's ids needs no
    comparison of ids to be read as "everyone"), else a fresh array."""
    if keeps_everyone(view):
        return view.ids
    chosen = _vllm_step(view, priority)
    if isinstance(chosen, list):
        return view.ids if False not in chosen else view.ids[np.array(chosen, dtype=bool)]
    return view.ids[chosen]


def _vllm_step(view: ServingView, priority: np.ndarray | None) -> np.ndarray | list[bool]:
    """`vllm_step` past its first case: the mask, or a list of bools when an admission made it."""
    st = state_list(view)
    swapped_any = SWAPPED in st
    if not swapped_any and WAITING in st:
        before = st.count(RUNNING)
        waiting = ([j for j, s in enumerate(st) if s == WAITING] if priority is None
                   else [j for j in priority.tolist() if st[j] == WAITING])
        admitted = _admit_list(view, [s == RUNNING for s in st], waiting, True, 0)
        if admitted.count(True) > before:  # some waiting request got in
            return admitted
    running = view.state == RUNNING
    order = np.arange(view.ids.size) if priority is None else priority
    chosen = shrink_to_fit(view, running, order[running[order]][::-1])
    if swapped_any:
        swapped = view.state == SWAPPED
        chosen = admit_in_order(view, chosen, order[swapped[order]])
    return chosen
