"""The serving contract: what a scheduler sees (`ServingView`) and what it decides.

At every iteration boundary of one replica the backend (simulator or real engine) builds a
frozen view of the replica's live requests and asks `policy.schedule(view)` which requests run
next. The decision names the running set; the backend derives admissions (prefill), swap-ins
and preemptions from the difference with the current running set:

- requests admitted from WAITING are prefilled in this iteration (a prefill-only iteration, as
  in vLLM without chunked prefill); running requests then wait one iteration;
- otherwise every running request decodes one token;
- running requests left out are preempted: `"recompute"` frees their KV blocks and puts them
  back in the waiting queue, `"swap"` copies their blocks to host memory (SWAPPED).

Policies never see a request's true output length: a real server does not know it either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from orrery.policies.registry import Contract, register_contract

WAITING, RUNNING, SWAPPED = 0, 1, 2
PreemptMode = Literal["recompute", "swap"]


class LatencyOracle(Protocol):
    """Per-iteration latency model the backend exposes (simulated or calibrated on hardware)."""

    def decode_time_s(self, batch_size, context_tokens): ...  # vectorised over numpy arrays

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float: ...

    def swap_time_s(self, n_bytes): ...  # host <-> GPU copy of KV blocks

    kv_bytes_per_token: float  # per GPU


@dataclass(frozen=True, eq=False)
class ServingView:
    """One replica at an iteration boundary. Arrays are aligned with `ids` (live requests)."""

    now_s: float
    ids: np.ndarray  # request ids (int64), in arrival order
    state: np.ndarray  # WAITING / RUNNING / SWAPPED
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    generated_tokens: np.ndarray  # output tokens produced so far
    n_preemptions: np.ndarray
    ttft_exp_s: np.ndarray
    tds_exp_tok_s: np.ndarray
    qoe_deficit: np.ndarray  # area lost so far (token*s), see policies.serving.qoe
    digest_last_s: np.ndarray  # absolute time the client finishes reading delivered tokens
    kv_blocks_held: np.ndarray  # GPU KV blocks held (0 when waiting or swapped)
    block_size: int
    kv_blocks_total: int
    kv_blocks_free: int
    max_num_seqs: int
    max_num_batched_tokens: int
    latency: LatencyOracle
    total_preemptions: int = 0
    total_admitted: int = 0

    @property
    def context_tokens(self) -> np.ndarray:
        return self.prompt_tokens + self.generated_tokens

    def blocks_for(self, tokens) -> np.ndarray:
        """KV blocks needed to hold `tokens` tokens."""
        return -(-np.asarray(tokens) // self.block_size)


@dataclass(frozen=True, eq=False)
class ServingDecision:
    running: np.ndarray  # request ids to run next (subset of view.ids)
    preempt_mode: PreemptMode = "recompute"

    def __repr__(self) -> str:
        return f"ServingDecision(running={self.running.tolist()}, preempt_mode={self.preempt_mode!r})"


class ServingPolicy(ABC):
    """A scheduler for one replica. Subclasses register with `@register("serving", name)`."""

    policy_name: str = ""
    fast_forward: bool = True
    """When every live request is running and the decision keeps them all, the backend may run
    decode iterations without asking again until a request arrives or finishes or memory runs
    out; set False for policies that preempt with nothing waiting."""

    keeps_all_that_fit: bool = False
    """True when `schedule` returns `view.ids` whenever every live request is running, there
    are at most max_num_seqs of them and their next decode step fits in the KV cache
    (`common.keeps_everyone`), with no effect on later decisions other than `kept_all`'s. A
    backend may then skip building the view and the call, and call `kept_all` instead."""

    @abstractmethod
    def schedule(self, view: ServingView) -> ServingDecision:
        """Choose the running set for the next iteration."""

    def kept_all(self, now_s: float) -> None:  # noqa: B027 - optional hook
        """What `schedule` does to the policy's state when it keeps everyone (see
        `keeps_all_that_fit`); called instead of `schedule` in that case."""

    def on_finish(self, request_id: int, now_s: float) -> None:  # noqa: B027 - optional hook
        """Called when a request finishes (optional)."""


def keeps_all_without_asking(policy: ServingPolicy) -> bool:
    """`policy.keeps_all_that_fit`, unless a subclass replaced `schedule` below the class that
    set the flag (the promise is about that class's `schedule`)."""
    if not policy.keeps_all_that_fit:
        return False
    mro = type(policy).__mro__
    flag_owner = next((c for c in mro if "keeps_all_that_fit" in c.__dict__), ServingPolicy)
    schedule_owner = next(c for c in mro if "schedule" in c.__dict__)
    return issubclass(flag_owner, schedule_owner)


def blocks_after_step(view: ServingView, running_mask: np.ndarray) -> int:
    """KV blocks the chosen running set needs after its next iteration.

    Running requests need room for one more token; admitted (waiting) requests need their whole
    context (recompute) plus the first new token; swapped ones their context plus one.
    """
    ctx = view.context_tokens[running_mask] + 1
    return int(view.blocks_for(ctx).sum())


def validate_decision(view: ServingView, decision: ServingDecision) -> list[str]:
    """Problems with a decision (empty list: valid). Used by backends and check_policy."""
    problems = []
    if not isinstance(decision, ServingDecision):
        return [f"decision is {type(decision).__name__}, expected ServingDecision"]
    run = np.asarray(decision.running)
    if run.ndim != 1:
        return ["running must be a 1-D array of request ids"]
    if decision.preempt_mode not in ("recompute", "swap"):
        problems.append(f"preempt_mode {decision.preempt_mode!r} not in ('recompute', 'swap')")
    if np.unique(run).size != run.size:
        problems.append("running lists a request twice")
    mask = np.isin(view.ids, run)
    if mask.sum() != run.size:
        problems.append("running names requests that are not live at this replica")
    if run.size > view.max_num_seqs:
        problems.append(f"{run.size} running requests exceed max_num_seqs={view.max_num_seqs}")
    need = blocks_after_step(view, mask)
    if need > view.kv_blocks_total:
        problems.append(f"running set needs {need} KV blocks > capacity {view.kv_blocks_total}")
    admitted = mask & (view.state == WAITING)
    tokens = int(view.context_tokens[admitted].sum())
    if admitted.any() and tokens > view.max_num_batched_tokens and admitted.sum() > 1:
        problems.append(
            f"admitted prompts total {tokens} tokens > max_num_batched_tokens={view.max_num_batched_tokens}"
        )
    return problems


class _SampleLatency:
    def decode_time_s(self, batch_size, context_tokens):
        return 0.012 + 2e-4 * np.asarray(batch_size) + 2e-7 * np.asarray(context_tokens)

    def prefill_time_s(self, n_tokens: int, n_seqs: int = 1, context_tokens: int = 0) -> float:
        return 0.015 + 1e-4 * n_tokens

    def swap_time_s(self, n_bytes):
        return n_bytes / 25e9

    kv_bytes_per_token = 800e3


def sample_views(rng: np.random.Generator, n: int = 24) -> list[ServingView]:
    """Random but consistent replica states, from empty to memory-saturated."""
    views = []
    for i in range(n):
        block = 16
        total = int(rng.integers(50, 400))
        k = int(rng.integers(0, 60)) if i else 0
        arrival = np.sort(rng.uniform(0, 100, k))
        prompt = rng.integers(1, 600, k)
        state = rng.choice([WAITING, RUNNING, SWAPPED], size=k, p=[0.5, 0.4, 0.1])
        gen = np.where(state == WAITING, rng.integers(0, 2, k) * rng.integers(0, 50, k),
                       rng.integers(1, 300, k))
        held = np.where(state == RUNNING, -(-(prompt + gen) // block), 0)
        # keep the current running set within capacity (drop running requests until it fits)
        order = np.flatnonzero(state == RUNNING)
        while held.sum() > total and order.size:
            state[order[-1]], held[order[-1]] = WAITING, 0
            order = order[:-1]
        if i % 4 == 3 and k:  # everyone running, within max_num_seqs and the KV cache
            state[:] = RUNNING
            gen = np.maximum(gen, 1)
            held = -(-(prompt + gen) // block)
            total = max(total, int((-(-(prompt + gen + 1) // block)).sum()) + int(rng.integers(0, 20)))
        now = 100.0 + float(rng.uniform(0, 10))
        views.append(
            ServingView(
                now_s=now,
                ids=np.arange(k, dtype=np.int64) + 1000 * i,
                state=state,
                arrival_s=arrival,
                prompt_tokens=prompt,
                generated_tokens=gen,
                n_preemptions=rng.integers(0, 3, k),
                ttft_exp_s=np.ones(k),
                tds_exp_tok_s=rng.choice([4.8, 3.3], k),
                qoe_deficit=rng.uniform(0, 100, k),
                digest_last_s=np.where(gen > 0, arrival + gen / 4.8 + 1, -np.inf),
                kv_blocks_held=held,
                block_size=block,
                kv_blocks_total=total,
                kv_blocks_free=int(total - held.sum()),
                max_num_seqs=int(rng.choice([8, 64, 256])) if i % 4 != 3 else 256,
                max_num_batched_tokens=4096,
                latency=_SampleLatency(),
            )
        )
    return views


def check_promises(fresh, views: list[ServingView]) -> list[str]:
    """`keeps_all_that_fit`: on every sample view where all live requests run, there are at most
    max_num_seqs of them and their next step fits, `schedule` returns `view.ids`; and `kept_all`
    in place of that call leaves the policy deciding the later views exactly as after it."""
    policy = fresh()
    if not keeps_all_without_asking(policy):
        return []
    name = type(policy).__name__
    keep = [i for i, v in enumerate(views)
            if v.ids.size and bool((v.state == RUNNING).all()) and v.ids.size <= v.max_num_seqs
            and blocks_after_step(v, np.ones(v.ids.size, dtype=bool)) <= v.kv_blocks_total]
    if not keep:
        return ["no sample view keeps everyone: keeps_all_that_fit goes unchecked"]
    problems = []
    asked, told = fresh(), fresh()
    for i, v in enumerate(views):
        d = asked.schedule(v)
        if i in keep:
            if d.running.tolist() != v.ids.tolist():
                problems.append(f"view {i}: {name} sets keeps_all_that_fit but did not keep every "
                                f"running request although they fit")
            told.kept_all(v.now_s)
        elif repr(told.schedule(v)) != repr(d):
            problems.append(f"view {i}: {name}.kept_all left it deciding otherwise than "
                            f"after schedule on the views that kept everyone")
            break
    return problems


register_contract(
    Contract(domain="serving", base=ServingPolicy, sample_views=sample_views, validate=validate_decision,
             promises=check_promises)
)

__all__ = [
    "RUNNING",
    "SWAPPED",
    "WAITING",
    "ServingDecision",
    "ServingPolicy",
    "ServingView",
    "blocks_after_step",
    "keeps_all_without_asking",
    "validate_decision",
]
