"""The real serving engine: continuous batching over a small torch transformer, driven by the
very serving policy objects the simulator uses.

Requests come from the scenario's workload generator (same seeded streams as the simulator,
so the same requests) and arrive in wall-clock time, stretched by `time_scale` (real seconds
per workload second). At every iteration the engine builds a `ServingView` — in workload
seconds, with a latency oracle calibrated on this engine — asks `policy.schedule(view)`,
checks the decision with the same `validate_decision`, applies it to the same replica state
machine (`sim.serving_replica.ReplicaState`: KV blocks, swap space, request states), then
really runs what it says: preemptions
(recompute: drop the KV, re-prefill prompt + generated tokens later; swap: copy the KV slot
to host memory), swap-ins, a prefill iteration for admitted requests or a decode iteration
for the running set. Token delivery times are measured with `time.perf_counter` after the
device synchronises, and QoE comes from `policies.serving.qoe`, as in the simulator.

Clock: workload time advances by real time / `time_scale` for everything the engine does
(model steps, KV copies, bookkeeping), except the policy's own decision (view, `schedule`,
checks): that is charged at its real duration, unscaled. A scheduler's compute time does not
shrink with the model, so scaling it by 1/time_scale (40x for the tiny CPU engine) would
charge a cost no real deployment pays; the simulator charges none.

KV memory: the policies see the paged (block) accounting of the scenario (`block_size`,
`kv_capacity_tokens` of the engine); physically each request holding KV owns one contiguous
cache slot of the model's `max_len` tokens.

Without a GPU the engine runs on the CPU and says so: there is no GPU energy source, so
energy metrics are NaN and `info["energy_source"]` reads "none (CPU run: no GPU energy source
present)".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from orrery.core.errors import OrreryInputError
from orrery.policies.registry import make_policy
from orrery.policies.serving.base import ServingPolicy, validate_decision
from orrery.realbackend.latency import EngineLatencyOracle, EngineLatencyParams, EnginePerfModel
from orrery.realbackend.tiny_llm import SeqWork, TinyLLM, TinyLLMConfig
from orrery.sim.engine import RNGStreams
from orrery.sim.serving_replica import GiB, ReplicaState, RequestState, summarize_requests

NO_GPU_ENERGY = "none (CPU run: no GPU energy source present)"


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OrreryInputError(f"device {device!r} asked for, but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}); use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise OrreryInputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


@dataclass(frozen=True)
class EngineConfig:
    """How the real engine is built. `time_scale`: real seconds per workload second.

    `kv_capacity_tokens`: the KV capacity the policies see; 0 = what the memory holds (on CUDA
    the memory left after the weights, vLLM's rule; on the CPU `kv_budget_bytes`).
    `kv_budget_bytes`: bytes the KV cache may use (None on CUDA = free GPU memory)."""

    device: str = "auto"
    model: TinyLLMConfig = field(default_factory=TinyLLMConfig)
    kv_capacity_tokens: int = 8192
    time_scale: float = 1.0
    threads: int | None = 1  # CPU: intra-op threads (1: steadier timing; the model is tiny)
    seed: int = 0
    max_slots: int = 128  # cap on requests holding KV at once (physical cache slots)
    kv_budget_bytes: int | None = None

    def describe(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.describe()
        return d


def setup_torch(cfg: EngineConfig) -> str:
    device = resolve_device(cfg.device)
    if device == "cpu" and cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    return device


_MODEL_CACHE: dict[tuple, TinyLLM] = {}


def build_model(cfg: EngineConfig, n_slots: int) -> TinyLLM:
    """The engine's model on its device (bf16 on CUDA unless the config says float16/bfloat16).

    The last model built is kept and handed out again for the same device, architecture, seed
    and at least as many slots: a real-size model takes seconds to initialise and to capture its decode graphs,
    and calibration, drift probes and every validation run use the same one. Cache contents
    carry over harmlessly (a sequence only reads positions it wrote)."""
    device = setup_torch(cfg)
    mcfg = cfg.model
    if device.startswith("cuda") and mcfg.dtype == "float32":
        mcfg = replace(mcfg, dtype="bfloat16")
    key = (device, mcfg, int(cfg.seed), cfg.kv_budget_bytes)
    model = _MODEL_CACHE.get(key)
    if model is None or model.n_slots < n_slots:
        _MODEL_CACHE.clear()  # free the previous model's memory first
        model = TinyLLM(mcfg, n_slots, device=device, seed=cfg.seed, kv_budget_bytes=cfg.kv_budget_bytes)
        _MODEL_CACHE[key] = model
    return model


def resolve_kv_capacity(cfg: EngineConfig, model: TinyLLM) -> int:
    """`cfg.kv_capacity_tokens`, or (0) the tokens the KV budget holds: on CUDA the memory
    left after the weights (vLLM's sizing), on the CPU `kv_budget_bytes`."""
    if cfg.kv_capacity_tokens:
        return int(cfg.kv_capacity_tokens)
    budget = model.kv_budget_bytes
    if budget is None:
        raise OrreryInputError("kv_capacity_tokens = 0 (from memory) needs kv_budget_bytes on the CPU")
    return int(budget // model.cfg.kv_bytes_per_token)


@dataclass
class RealServingRun:
    """A real run: the same metrics/table as the simulator's `RunResult` plus what was measured
    about the machine (`info`: device, energy source, overheads)."""

    metrics: dict[str, float]
    table: pd.DataFrame
    series: dict[str, pd.DataFrame]
    info: dict


def _request_state(scn, rng_streams: RNGStreams, reqs=None) -> RequestState:
    """The shared per-request state (workload seconds) for this scenario's requests."""
    if reqs is None:
        reqs = scn.workload.generate(rng_streams["arrivals"], rng_streams["lengths"])
    if len(reqs) == 0:
        raise OrreryInputError("the workload generated no requests; raise n_requests or duration_s")
    state = RequestState(reqs, scn.qoe, rng_streams["qoe"])
    state.replica[:] = 0  # one replica
    return state


class RealServingEngine:
    """One replica of the real engine for one scenario."""

    def __init__(self, scn, cfg: EngineConfig, params: EngineLatencyParams, policy: ServingPolicy | None = None,
                 monitor=None):
        if scn.replicas != 1:
            raise OrreryInputError(f"the real engine runs one replica; the scenario asks for {scn.replicas}")
        hw = scn.hardware
        if hw.spec_decode is not None:
            raise OrreryInputError("the real engine has no speculative decoding; remove hardware.spec_decode")
        self.scn, self.cfg = scn, cfg
        self.ts = float(cfg.time_scale)
        self.perf = EnginePerfModel(params, self.ts)
        self.latency = EngineLatencyOracle(self.perf)
        self.policy = policy if policy is not None else make_policy("serving", scn.policy, scn.policy_params)
        self.monitor = monitor
        self.block = hw.block_size
        self.total_blocks = int(params.kv_capacity_tokens // self.block)
        self.max_model_len = min(cfg.model.max_len, scn.workload.max_total_tokens)
        if scn.workload.max_total_tokens > cfg.model.max_len:
            raise OrreryInputError(f"workload.max_total_tokens = {scn.workload.max_total_tokens} exceeds the "
                                   f"real engine's max_len {cfg.model.max_len}; lower it or build a longer model")
        if self.total_blocks < -(-self.max_model_len // self.block):
            raise OrreryInputError(f"engine KV capacity {params.kv_capacity_tokens} tokens is less than one "
                                   f"request of {self.max_model_len} tokens")
        self.max_num_seqs = hw.max_num_seqs
        self.max_batched = hw.max_num_batched_tokens or max(self.max_model_len, 2048)
        self.swap_cap_bytes = hw.swap_space_gib * GiB
        n_slots = min(self.max_num_seqs, self.total_blocks, cfg.max_slots)
        self.model = build_model(cfg, n_slots)
        self.device = str(self.model.device)
        self.kv_bytes_per_token = float(params.kv_bytes_per_token)

    # ------------------------------------------------------------------------------------
    def run(self, requests=None) -> RealServingRun:
        """Serve the scenario's workload (or `requests`, a `workloads.serving.Requests`)."""
        scn, ts = self.scn, self.ts
        streams = RNGStreams(scn.seed)
        r = _request_state(scn, streams, requests)
        tok_rng = np.random.default_rng(scn.seed + 7919)
        vocab = self.model.cfg.vocab_size
        tokens = [tok_rng.integers(0, vocab, int(p)).tolist() for p in r.prompt]
        slot_of = np.full(r.n, -1, np.int64)
        free_slots = list(range(self.model.n_slots))[::-1]
        swapped_kv: dict[int, torch.Tensor] = {}
        rs = ReplicaState(r, block_size=self.block, total_blocks=self.total_blocks,
                          max_num_seqs=self.max_num_seqs, max_num_batched_tokens=self.max_batched,
                          swap_cap_bytes=self.swap_cap_bytes, kv_bytes_per_token=self.kv_bytes_per_token,
                          latency=self.latency)
        nxt = 0
        its: dict[str, list] = {k: [] for k in ("start_s", "duration_s", "kind", "batch", "context_tokens",
                                                "kv_blocks_used", "schedule_s", "step_s", "host_s")}
        tok_req: list[np.ndarray] = []
        tok_t: list[np.ndarray] = []
        busy_real = 0.0
        sched_real = 0.0
        horizon = scn.horizon_s
        self._warmup()
        window = self.monitor.window(cross_check=True) if self.monitor is not None else None
        if window is not None:
            window.__enter__()
        t0 = time.perf_counter()

        paused = [0.0]  # real seconds spent deciding (view, policy, checks): charged unscaled

        def to_w(t_real: float) -> float:
            return (t_real - t0 - paused[0]) / ts + paused[0]

        def clock() -> float:
            return to_w(time.perf_counter())

        def sleep_until(t_w: float) -> None:
            dt = (t_w - paused[0]) * ts + paused[0] - (time.perf_counter() - t0)
            if dt > 0:
                time.sleep(dt)

        try:
            while True:
                now = clock()
                while nxt < r.n and r.arrival_s[nxt] <= now:
                    rs.add(nxt)
                    nxt += 1
                if horizon is not None and now >= horizon:
                    break
                if not rs.live:
                    if nxt >= r.n:
                        break
                    sleep_until(r.arrival_s[nxt])
                    continue
                s0 = time.perf_counter()
                view = rs.view(now)
                dec = self.policy.schedule(view)
                problems = validate_decision(view, dec)
                if problems:
                    raise RuntimeError(f"policy {scn.policy!r} made an invalid decision at t={now:.3f}s: "
                                       f"{'; '.join(problems)}")
                chosen = rs.chosen(view, dec)
                s1 = time.perf_counter()
                sched = s1 - s0
                sched_real += sched
                paused[0] += sched
                if not chosen.any():
                    if nxt >= r.n:
                        raise RuntimeError(f"policy {scn.policy!r} ran nothing with {view.ids.size} requests "
                                           f"live and no arrivals left")
                    sleep_until(r.arrival_s[nxt])
                    continue
                start_real = time.perf_counter()
                step = rs.apply(view, dec, chosen)
                swap_real = 0.0
                # the KV slots: preempted requests give theirs up (swap: copied to host first)
                for rid, swap in zip(step.preempted.tolist(), step.swapped_out.tolist(), strict=True):
                    slot = int(slot_of[rid])
                    if swap:
                        t_sw = time.perf_counter()
                        swapped_kv[rid] = self.model.save_slot(slot, int(r.prompt[rid] + r.generated[rid]))
                        self.model.synchronize()
                        swap_real += time.perf_counter() - t_sw
                    free_slots.append(slot)
                    slot_of[rid] = -1
                for rid in step.swapped_in.tolist():
                    slot = free_slots.pop()
                    t_sw = time.perf_counter()
                    self.model.load_slot(slot, swapped_kv.pop(rid))
                    self.model.synchronize()
                    swap_real += time.perf_counter() - t_sw
                    slot_of[rid] = slot
                run = step.run
                if step.kind == "prefill":
                    work = []
                    for rid in run.tolist():
                        slot = free_slots.pop()
                        slot_of[rid] = slot
                        ctx = int(r.prompt[rid] + r.generated[rid])
                        work.append(SeqWork(slot, 0, tokens[rid][:ctx]))
                else:
                    work = [SeqWork(int(slot_of[rid]), int(r.prompt[rid] + r.generated[rid]) - 1, [tokens[rid][-1]])
                            for rid in run.tolist()]
                step_real = time.perf_counter()
                out = self.model.step(work)
                self.model.synchronize()
                end_real = time.perf_counter()
                now = to_w(end_real)
                busy_real += end_real - start_real
                its["start_s"].append(to_w(start_real))
                its["duration_s"].append((end_real - start_real) / ts)
                its["kind"].append(step.kind)
                its["batch"].append(int(run.size))
                its["context_tokens"].append(step.ctx_tokens)
                its["kv_blocks_used"].append(rs.used_blocks)
                its["schedule_s"].append(sched)
                its["step_s"].append((end_real - step_real) / ts)
                for rid, t in zip(run.tolist(), out, strict=True):
                    tokens[rid].append(int(t))
                tok_req.append(run.copy())
                tok_t.append(np.full(run.size, now))
                done = rs.deliver(run, now)
                if done.size:
                    for rid in done.tolist():
                        free_slots.append(int(slot_of[rid]))
                        slot_of[rid] = -1
                    rs.finish(done, now, self.policy)
                # host-side work of this iteration besides the model step (view, policy, checks,
                # bookkeeping): calibration folds it into the latency model
                its["host_s"].append((time.perf_counter() - s1 - (end_real - step_real) - swap_real) / ts)
            wall_real = time.perf_counter() - t0
            end_w = clock()
        finally:
            energy = None
            if window is not None:
                window.__exit__(None, None, None)
                energy = window.result
        return self._collect(r, its, tok_req, tok_t, rs.preemptions, rs.swap_bytes, busy_real, sched_real,
                             wall_real, energy, end_w)

    def _warmup(self) -> None:
        """One prefill and a few decodes so that first-call costs stay out of the run."""
        m = self.model
        m.step([SeqWork(0, 0, [1] * 16)])
        for k in range(3):
            m.step([SeqWork(0, 16 + k, [2])])
        m.capture_graphs(min(self.max_num_seqs, m.n_slots))
        m.synchronize()

    def _collect(self, r: RequestState, its, tok_req, tok_t, preemptions, swap_bytes, busy_real, sched_real,
                 wall_real, energy, end_w: float) -> RealServingRun:
        table, metrics, _ = summarize_requests(r, end_w)
        tokens = int(r.generated.sum())
        energy_j = power_w = sampled_j = math.nan
        source = NO_GPU_ENERGY if not self.device.startswith("cuda") else "none (no NVML monitor given)"
        if energy is not None:
            energy_j, power_w, sampled_j = float(energy.energy_j), float(energy.avg_power_w), energy.sampled_j
            source = energy.source
        n_done = float(np.isfinite(r.finish_s).sum())
        metrics.update({
            "energy_j": energy_j,
            "energy_per_token_j": energy_j / max(tokens, 1),
            "energy_per_request_j": energy_j / max(n_done, 1.0),
            "avg_power_w": power_w,
            "iterations": float(len(its["kind"])),
            "swap_bytes": float(swap_bytes),
            "sim_time_s": end_w,
        })
        it = pd.DataFrame(its)
        series = {"iterations": it}
        if tok_req:
            series["tokens"] = pd.DataFrame({"request": np.concatenate(tok_req), "t_s": np.concatenate(tok_t)})
        info = {
            "device": self.device,
            "device_name": (torch.cuda.get_device_name(self.model.device) if self.device.startswith("cuda")
                            else "CPU"),
            "energy_source": source,
            "time_scale": self.ts,
            "wall_s": wall_real,
            "busy_real_s": busy_real,
            "schedule_real_s": sched_real,
            "threads": torch.get_num_threads(),
            "policy_class": f"{type(self.policy).__module__}.{type(self.policy).__qualname__}",
            "model": self.model.cfg.name,
            "execution": self.model.execution(),
            # the energy counter cross-checked by integrating sampled power over the same window
            "energy_sampled_j": sampled_j,
            "energy_counter_vs_sampled": (abs(energy_j - sampled_j) / energy_j
                                          if energy_j > 0 and math.isfinite(sampled_j) else math.nan),
        }
        # measured iteration time (model step + host work) over the calibrated model's
        # prediction: ~1 when the machine behaves as it did during calibration
        prm = self.perf.params
        for kind in ("decode", "prefill"):
            d = it[it.kind == kind]
            if len(d):
                pred = (prm.decode_s(d.batch, d.context_tokens) if kind == "decode"
                        else prm.prefill_s(d.context_tokens, d.batch))
                meas = (d.step_s + d.host_s) * self.ts
                info[f"{kind}_measured_over_model"] = float(meas.sum() / max(float(np.sum(pred)), 1e-12))
        return RealServingRun(metrics=metrics, table=table, series=series, info=info)


def run_real_serving(scn, cfg: EngineConfig, params: EngineLatencyParams, monitor=None,
                     policy: ServingPolicy | None = None) -> RealServingRun:
    """Run one serving scenario on the real engine (one replica)."""
    return RealServingEngine(scn, cfg, params, policy=policy, monitor=monitor).run()
