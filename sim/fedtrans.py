"""Multi-model FL emulation (FedTrans and baselines): real torch training, simulated devices.

The FL simulator's machinery decides who takes part and when: a population of phones (hardware
from `hwmodels.edge`, AI-Benchmark fit), availability (diurnal generator or a trace), idle
check-ins (`sim.fl.DevicePool`), eligibility, over-commitment and deadlines. Device i is
client i of a federated dataset (`workloads.fl_data`). Per round:

1. Collect idle eligible check-ins first come first served until ceil(overcommit x
   participants) clients are placed; each batch of candidates goes to the policy
   (`policies/fedtrans/`), which may add models (widen/deepen a cell of a model, or a fresh
   model) and assigns candidates to models they can train (memory; compute + transfer time
   within the round's time budget). Unplaced candidates are released. The executor checks
   memory itself and refuses a policy that overloads a device.
2. A placed client is busy for compute (`epochs x samples x train FLOPs / device FLOP/s`, where
   device FLOP/s = `reference_flops / s_per_unit`) plus transfer (`update bytes / bw_down +
   update bytes / bw_up`), or drops out when its availability ends first. The round closes when
   `participants` responses are in or `deadline_s` after the last placement; with fewer than
   `success_fraction x participants` responses it is aborted and retried (its cost is spent).
3. At the close the responding clients really train (a `LocalTrainer`; by default the torch one,
   `realbackend.fl_train.TorchTrainer`, which the simulator names but never imports), from the
   global weights of their model, on their own data; soft aggregation (policy's share weights)
   updates every model; the per-cell bottleneck signal and the models' losses are updated.

Costs (emulated sizes, see `policies.fedtrans.base.CostModel`): device-seconds worked (up to the
close), training FLOPs done, bytes down and up. Every `eval_every` successful rounds and at the
end, every client evaluates on its own test set the model the policy gives it ("eval" view);
per-client accuracy is what the study compares.

Bottleneck signal (input to FedTrans): per model and cell, the norm of the round's FedAvg
update of the cell's weights (own clients only) over the norm of the weights before the round,
smoothed by an EMA (`signal_ema`).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from orrery.core.config import Strict
from orrery.core.errors import OrreryInputError
from orrery.policies.fedtrans.base import ArchSpec, ClientView, CostModel, ModelView, MultiModelView
from orrery.policies.registry import make_policy
from orrery.sim.domains import Domain, RunResult, register_domain
from orrery.sim.engine import Simulation
from orrery.sim.fl import (
    WEEK_S,
    DevicePool,
    PopulationConfig,
    RoundConfig,
    build_availability,
    build_population,
)
from orrery.sim.scenario import Scenario
from orrery.traces.devices import check_requirement, eligible_mask

DEFAULT_TRAINER = "orrery.realbackend.fl_train:TorchTrainer"  # named, not imported: sim stays below realbackend


class LocalTrainer(Protocol):
    """The real training the emulation delegates to (weights are opaque to the simulator).

    `realbackend.fl_train.TorchTrainer` is the shipped one. `seed(s)` seeds the generator of
    model initialisation and widening; `local_train` returns an update with `model_id`
    (settable), `n_samples` and `loss_before` (the received model's loss on the client's data).
    """

    def seed(self, seed: int) -> None: ...

    def init_params(self, arch: ArchSpec) -> Any: ...

    def widen(self, arch: ArchSpec, params: Any, cell: int, width: int, *, spread: float) -> tuple[ArchSpec, Any]: ...

    def deepen(self, arch: ArchSpec, params: Any, cell: int) -> tuple[ArchSpec, Any]: ...

    def local_train(self, arch: ArchSpec, params: Any, x: np.ndarray, y: np.ndarray, *, epochs: int,
                    batch_size: int, lr: float, momentum: float, seed: int) -> Any: ...

    def aggregate(self, models: dict[int, Any], updates: list, share: dict) -> dict[int, Any]: ...

    def cell_update_ratio(self, arch: ArchSpec, before: Any, after: Any) -> list[float]: ...

    def predict(self, arch: ArchSpec, params: Any, x: np.ndarray) -> np.ndarray: ...


def default_trainer() -> LocalTrainer:
    """A fresh instance of the trainer `DEFAULT_TRAINER` names (the real backend's torch one)."""
    module, _, name = DEFAULT_TRAINER.partition(":")
    return getattr(importlib.import_module(module), name)()


class DataConfig(Strict):
    dataset: Literal["teacher", "digits", "leaf"] = Field("teacher", description="teacher: capacity-limited synthetic; digits: scikit-learn; leaf: LEAF JSON")
    leaf_train: str | None = Field(None, description="LEAF training JSON file or folder (dataset = leaf)")
    leaf_test: str | None = Field(None, description="LEAF test JSON file or folder; None: hold out test_fraction per user")
    alpha: float = Field(0.5, gt=0, description="Dirichlet label-skew concentration (small: few labels per client)")
    mean_samples: float = Field(60.0, gt=0, description="mean training samples per client")
    quantity_sigma: float = Field(0.6, ge=0, le=3, description="log-normal sigma of client sizes (quantity skew)")
    min_samples: int = Field(8, ge=1)
    test_samples: int = Field(40, ge=1, description="test samples per client (same label mix as its training data)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="LEAF without test files: held-out share per user")
    teacher_dim: int = Field(8, ge=1, description="teacher task: input features")
    teacher_hidden: int = Field(64, ge=1, description="teacher task: hidden units of the teacher")
    teacher_gain: float = Field(1.0, gt=0)
    teacher_seed: int = Field(12345, ge=0, description="the teacher is fixed by this seed, not the scenario seed")
    n_classes: int = Field(10, ge=2, le=1000, description="teacher task classes")


class ModelSpec(Strict):
    kind: Literal["mlp", "cnn"] = "mlp"
    widths: tuple[int, ...] = Field((8, 8), description="starting model: units (channels) per cell")
    depths: tuple[int, ...] = Field((1, 1), description="starting model: layers per cell")
    max_width: int = Field(64, ge=1, description="search space: widest cell")
    max_depth: int = Field(2, ge=1, description="search space: deepest cell")
    max_models: int = Field(6, ge=1, le=64)
    widen_spread: float = Field(0.5, ge=0, le=5, description="std of the symmetry-breaking noise of widen's weight split")
    cost_scale: float = Field(2000.0, gt=0, description="emulated model = this x the torch proxy (params, FLOPs, bytes, memory)")

    @model_validator(mode="after")
    def _cells(self):
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ValueError(f"widths {self.widths} and depths {self.depths} must be non-empty and equally long")
        if min(self.widths) < 1 or min(self.depths) < 1:
            raise ValueError("widths and depths must be >= 1")
        if max(self.widths) > self.max_width or max(self.depths) > self.max_depth:
            raise ValueError("the starting model lies outside max_width / max_depth")
        return self


class TrainConfig(Strict):
    rounds: int = Field(60, ge=1, description="successful rounds to run")
    participants: int = Field(20, ge=1, description="target responses per round")
    deadline_s: float = Field(300.0, gt=0, description="round deadline after the last placement; also the policy's time budget (s)")
    local_epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    eval_every: int = Field(5, ge=1, description="evaluate every client every this many successful rounds")
    signal_ema: float = Field(0.5, ge=0, lt=1, description="EMA weight of the old bottleneck signal")


class DeviceCaps(Strict):
    reference_flops: float = Field(1e9, gt=0, description="FLOPs of one AI-Benchmark work unit (s_per_unit = s per unit)")
    train_mem_fraction: float = Field(0.05, gt=0, le=1, description="share of a phone's RAM a training may use")


class FedTransScenario(Scenario):
    """One multi-model FL emulation run."""

    domain: ClassVar[str] = "fedtrans"

    policy: str = "fedtrans"
    horizon_s: float | None = Field(WEEK_S, gt=0, description="simulated time limit (s)")
    population: PopulationConfig = Field(default_factory=lambda: PopulationConfig(n_devices=120))
    rounds: RoundConfig = Field(default_factory=RoundConfig)
    requirement: str = Field("any", description="device eligibility (see traces.devices)")
    window_s: float = Field(60.0, gt=0, le=3600, description="check-ins are handled in batches of this length (s)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainConfig = Field(default_factory=TrainConfig)
    devices: DeviceCaps = Field(default_factory=DeviceCaps)

    @model_validator(mode="after")
    def _check(self):
        check_requirement(self.requirement)
        if self.data.dataset == "leaf" and not self.data.leaf_train:
            raise ValueError("data.dataset = 'leaf' needs data.leaf_train")
        if self.population.n_devices > 100_000:
            raise ValueError(f"population.n_devices = {self.population.n_devices}: every device is a client "
                             "with real data; at most 100000")
        return self


# ----------------------------------------------------------------------------- world
def build_dataset(scn: FedTransScenario, rng: np.random.Generator):
    from orrery.workloads import fl_data

    d = scn.data
    n = scn.population.n_devices
    if d.dataset == "leaf":
        from orrery.traces.paths import resolve_data_path

        test = resolve_data_path(d.leaf_test) if d.leaf_test else None
        return fl_data.load_leaf(resolve_data_path(d.leaf_train), test_path=test, n_clients=n,
                                 test_fraction=d.test_fraction, rng=rng)
    teacher = None
    if d.dataset == "teacher":
        teacher = fl_data.Teacher.make(dim=d.teacher_dim, hidden=d.teacher_hidden, n_classes=d.n_classes,
                                       seed=d.teacher_seed, gain=d.teacher_gain)
    return fl_data.make_federated(d.dataset, n, rng, alpha=d.alpha, mean_samples=d.mean_samples,
                                  quantity_sigma=d.quantity_sigma, min_samples=d.min_samples,
                                  test_samples=d.test_samples, teacher=teacher)


class _Model:
    def __init__(self, mid: int, parent: int, arch: ArchSpec, params, created: int, op: str, cell: int):
        self.mid, self.parent, self.arch, self.params = mid, parent, arch, params
        self.created, self.op, self.cell = created, op, cell
        self.rounds_trained = 0
        self.losses: list[float] = []
        self.signal = [0.0] * len(arch.cells)
        self.clients_last = 0

    def view(self) -> ModelView:
        return ModelView(self.mid, self.parent, self.arch, self.created, self.rounds_trained,
                         tuple(self.losses[-20:]), tuple(self.signal), self.clients_last)


class FedTransEngine:
    def __init__(self, scn: FedTransScenario, trainer: LocalTrainer):
        self.trainer = trainer
        self.scn = scn
        self.sim = sim = Simulation(scn.seed)
        self.horizon = float(scn.horizon_s or WEEK_S)
        pop = build_population(scn.population, sim.rng["hardware"])
        av = build_availability(scn.population, self.horizon, sim.rng["availability"])
        self.pool = DevicePool(pop, av, scn.population.recheckin_s, scn.population.n_tiers)
        self.eligible = eligible_mask(pop, scn.requirement)
        self.data = build_dataset(scn, sim.rng["data"])
        if len(self.data) != len(pop):
            raise OrreryInputError(f"dataset has {len(self.data)} clients, population {len(pop)} devices")
        self.cost = CostModel(scale=scn.model.cost_scale, batch_size=scn.train.batch_size)
        hw = pop.hw
        self.mem_bytes = hw.ram_gb.astype(np.float64) * 1e9 * scn.devices.train_mem_fraction
        self.flops_s = scn.devices.reference_flops / hw.s_per_unit.astype(np.float64)
        n_tr, ent = self.data.n_train(), self.data.label_entropy()
        self.clients = tuple(
            ClientView(i, float(self.mem_bytes[i]), float(self.flops_s[i]), float(hw.bw_down_bytes_s[i]),
                       float(hw.bw_up_bytes_s[i]), int(n_tr[i]), float(ent[i]))
            for i in range(len(pop))
        )
        self.policy = make_policy("fedtrans", scn.policy, scn.policy_params)
        seed = int(sim.rng["models"].integers(0, 2**62))
        trainer.seed(seed)
        shape = self.data.input_shape if scn.model.kind == "cnn" else (int(np.prod(self.data.input_shape)),)
        if scn.model.kind == "cnn" and len(shape) != 3:
            raise OrreryInputError(f"model.kind = 'cnn' needs image data; {self.data.name} has shape {shape}")
        root = ArchSpec(scn.model.kind, tuple(shape), self.data.n_classes,
                        tuple(zip(scn.model.widths, scn.model.depths, strict=True)))
        self.models: dict[int, _Model] = {0: _Model(0, -1, root, trainer.init_params(root), 0, "root", -1)}
        self.round = 0
        self.aborted = 0
        self.cum = dict(device_s=0.0, flops=0.0, bytes_down=0.0, bytes_up=0.0)
        self.rounds_tab = sim.rec.table("rounds", [
            "round", "attempt", "t_req_s", "t_full_s", "t_close_s", "assigned", "responses", "success",
            "n_models", "cum_device_s", "cum_flops", "cum_bytes"])
        self.asg_tab = sim.rec.table("assignments", [
            "round", "attempt", "client", "model_id", "t_assign_s", "resp_s", "compute_s", "transfer_s",
            "train_mem_bytes", "device_mem_bytes", "responded"])
        self.eval_tab = sim.rec.table("eval", [
            "round", "t_s", "cum_device_s", "cum_flops", "cum_bytes", "acc_mean", "acc_p10", "acc_p50",
            "served_fraction", "n_models"])
        self.models_tab = sim.rec.table("models", [
            "model_id", "parent_id", "op", "cell", "created_round", "cells", "params", "emu_params",
            "train_mem_bytes", "train_flops_per_sample", "update_bytes"])
        self._log_model(self.models[0])
        self.final_acc = np.full(len(pop), np.nan)
        self.final_model = np.full(len(pop), -1)
        self.t_last_close = 0.0
        self.last_eval_round = -1
        self.share: dict[tuple[int, int], float] = {}

    # -- views and decisions -----------------------------------------------------------
    def view(self, purpose: str, clients: tuple[ClientView, ...], assigned: dict[int, int], target: int) -> MultiModelView:
        s = self.scn
        return MultiModelView(
            round=self.round, time_s=float(self.sim.now), purpose=purpose,
            models=tuple(self.models[k].view() for k in sorted(self.models)), clients=clients,
            population=self.clients, assigned=dict(assigned), target=target, time_budget_s=s.train.deadline_s,
            local_epochs=s.train.local_epochs, cost=self.cost, max_width=s.model.max_width,
            max_depth=s.model.max_depth, max_models=s.model.max_models, next_model_id=len(self.models),
        )

    def decide(self, v: MultiModelView):
        d = self.policy.schedule(v)
        if v.purpose == "eval" and d.new_models:
            raise RuntimeError(f"policy {self.scn.policy!r} proposed models in an eval view")
        if len(self.models) + len(d.new_models) > self.scn.model.max_models:
            raise RuntimeError(f"policy {self.scn.policy!r} exceeds max_models")
        for nm in d.new_models:
            self._apply(nm)
        if v.purpose == "train":  # soft-aggregation weights of the latest training decision
            self.share = {k: float(w) for k, w in d.share.items() if k[0] in self.models and k[1] in self.models}
        ids = {c.client_id for c in v.clients}
        for cid, mid in d.assign.items():  # the executor never trusts a policy with memory
            if cid not in ids or mid not in self.models:
                raise RuntimeError(f"policy {self.scn.policy!r} assigned client {cid} to model {mid}: not in the view")
            need = self.cost.train_mem_bytes(self.models[mid].arch)
            if need > self.mem_bytes[cid]:
                raise RuntimeError(f"policy {self.scn.policy!r} gave client {cid} model {mid} needing {need:.3g} B; "
                                   f"the device has {self.mem_bytes[cid]:.3g} B")
        return d

    def _apply(self, nm) -> None:
        tr = self.trainer
        mid = len(self.models)
        if nm.op == "fresh":
            arch = nm.result(None)
            root = self.models[0].arch
            if not arch.same_family(root) or not arch.within(self.scn.model.max_width, self.scn.model.max_depth):
                raise RuntimeError(f"policy proposed an architecture outside the search space: {arch}")
            m = _Model(mid, -1, arch, tr.init_params(arch), self.round, "fresh", -1)
        else:
            parent = self.models.get(nm.parent_id)
            if parent is None:
                raise RuntimeError(f"policy transformed unknown model {nm.parent_id}")
            if nm.op == "widen":
                arch, params = tr.widen(parent.arch, parent.params, nm.cell, nm.width,
                                        spread=self.scn.model.widen_spread)
            elif nm.op == "deepen":
                arch, params = tr.deepen(parent.arch, parent.params, nm.cell)
            else:
                raise RuntimeError(f"unknown transformation {nm.op!r}")
            if not arch.within(self.scn.model.max_width, self.scn.model.max_depth):
                raise RuntimeError(f"policy grew a model outside the search space: {arch.cells}")
            m = _Model(mid, parent.mid, arch, params, self.round, nm.op, nm.cell)
            m.losses = []
        self.models[mid] = m
        self._log_model(m)

    def _log_model(self, m: _Model) -> None:
        a = m.arch
        self.models_tab.append(m.mid, m.parent, m.op, m.cell, m.created, str(list(map(list, a.cells))), a.n_params(),
                               a.n_params() * self.cost.scale, self.cost.train_mem_bytes(a),
                               self.cost.train_flops_per_sample(a), self.cost.update_bytes(a))

    # -- rounds ------------------------------------------------------------------------------
    def process(self):
        s, pool, env = self.scn, self.pool, self.sim.env
        need = math.ceil(s.rounds.overcommit * s.train.participants)
        attempt = 0
        while self.round < s.train.rounds:
            t_req = env.now
            placed: list[tuple[int, int, float, float]] = []  # (client, model, t_assign, interval end)
            seen: set[int] = set()
            counts: dict[int, int] = {}
            t = env.now
            while len(placed) < need:
                if t >= self.horizon:
                    return
                t1 = min(t + s.window_s, self.horizon)
                dev, _tt, iend = pool.idle_checkins_between(t, t1)
                yield env.timeout(t1 - t)
                t = t1
                ok = [k for k in range(len(dev)) if self.eligible[dev[k]] and int(dev[k]) not in seen]
                ok = ok[: need - len(placed)]
                if not ok:
                    continue
                cands = tuple(self.clients[int(dev[k])] for k in ok)
                seen.update(int(dev[k]) for k in ok)
                d = self.decide(self.view("train", cands, counts, need - len(placed)))
                for k in ok:
                    mid = d.assign.get(int(dev[k]))
                    if mid is not None:
                        placed.append((int(dev[k]), mid, t, float(iend[k])))
                        counts[mid] = counts.get(mid, 0) + 1
            t_full = t
            cl = np.array([p[0] for p in placed])
            mids = np.array([p[1] for p in placed])
            t_a = np.array([p[2] for p in placed])
            iend = np.array([p[3] for p in placed])
            n_s = np.array([self.clients[c].n_samples for c in cl], dtype=float)
            fps = np.array([self.cost.train_flops_per_sample(self.models[m].arch) for m in mids])
            ub = np.array([self.cost.update_bytes(self.models[m].arch) for m in mids])
            comp = s.train.local_epochs * n_s * fps / self.flops_s[cl]
            down = ub / self.pool.pop.hw.bw_down_bytes_s[cl].astype(float)
            up = ub / self.pool.pop.hw.bw_up_bytes_s[cl].astype(float)
            resp = pool.occupy(cl, t_a, comp + down + up, iend)
            fin = np.sort(resp[np.isfinite(resp)])
            k = s.train.participants
            t_target = fin[k - 1] if len(fin) >= k else math.inf
            t_close = max(t_full, min(t_full + s.train.deadline_s, t_target))
            responded = resp <= t_close
            strag = ~responded
            if strag.any():
                pool.busy_until[cl[strag]] = np.minimum(pool.busy_until[cl[strag]], t_close)
            success = int(responded.sum()) >= math.ceil(s.rounds.success_fraction * k - 1e-9)
            # costs: download, then compute, then upload; work stops at the close or a dropout
            worked = np.clip(np.minimum(pool.busy_until[cl], t_close) - t_a, 0.0, None)
            worked = np.where(responded, comp + down + up, worked)
            frac_c = np.clip((worked - down) / np.maximum(comp, 1e-12), 0.0, 1.0)
            self.cum["device_s"] += float(worked.sum())
            self.cum["flops"] += float((frac_c * s.train.local_epochs * n_s * fps).sum())
            self.cum["bytes_down"] += float((ub * np.clip(worked / np.maximum(down, 1e-12), 0, 1)).sum())
            self.cum["bytes_up"] += float((ub * responded).sum())
            self.asg_tab.extend(
                round=np.full(len(cl), self.round), attempt=np.full(len(cl), attempt), client=cl, model_id=mids,
                t_assign_s=t_a, resp_s=resp, compute_s=comp, transfer_s=down + up,
                train_mem_bytes=np.array([self.cost.train_mem_bytes(self.models[m].arch) for m in mids]),
                device_mem_bytes=self.mem_bytes[cl], responded=responded)
            yield env.timeout(max(t_close - env.now, 0.0))
            self.t_last_close = t_close
            if success:
                self.train_round(cl[responded], mids[responded], self.share)
            else:
                self.aborted += 1
            self.rounds_tab.append(self.round, attempt, t_req, t_full, t_close, len(cl), int(responded.sum()),
                                   success, len(self.models), self.cum["device_s"], self.cum["flops"],
                                   self.cum["bytes_down"] + self.cum["bytes_up"])
            attempt += 1
            if success:
                self.round += 1
                if self.round % s.train.eval_every == 0 or self.round == s.train.rounds:
                    self.evaluate()

    def train_round(self, clients: np.ndarray, mids: np.ndarray, d_share) -> None:
        tr = self.trainer
        s = self.scn
        rng = self.sim.rng["train"]
        updates: list = []
        for c, mid in zip(clients.tolist(), mids.tolist(), strict=True):
            m = self.models[mid]
            cd = self.data.clients[c]
            u = tr.local_train(m.arch, m.params, cd.x_train, cd.y_train, epochs=s.train.local_epochs,
                               batch_size=s.train.batch_size, lr=s.train.lr, momentum=s.train.momentum,
                               seed=int(rng.integers(0, 2**62)))
            u.model_id = mid
            updates.append(u)
        before = {mid: m.params for mid, m in self.models.items()}
        new = tr.aggregate(before, updates, d_share)
        ema = s.train.signal_ema
        for mid, m in self.models.items():
            own = [u for u in updates if u.model_id == mid]
            m.clients_last = len(own)
            if own:
                fedavg = tr.aggregate({mid: m.params}, own, {})[mid]
                ratio = tr.cell_update_ratio(m.arch, m.params, fedavg)
                m.signal = [r if m.rounds_trained == 0 else ema * o + (1 - ema) * r
                            for o, r in zip(m.signal, ratio, strict=True)]
                n = sum(u.n_samples for u in own)
                m.losses.append(float(sum(u.loss_before * u.n_samples for u in own) / max(n, 1)))
                m.rounds_trained += 1
            m.params = new[mid]

    def evaluate(self) -> None:
        d = self.decide(self.view("eval", self.clients, {}, 0))
        acc = np.full(len(self.clients), np.nan)
        model_of = np.full(len(self.clients), -1)
        by_model: dict[int, list[int]] = {}
        for cid, mid in d.assign.items():
            by_model.setdefault(mid, []).append(cid)
        for mid, cids in sorted(by_model.items()):
            m = self.models[mid]
            xs = [self.data.clients[c].x_test for c in cids]
            pred = self.trainer.predict(m.arch, m.params, np.concatenate(xs))
            pos = 0
            for c, x in zip(cids, xs, strict=True):
                y = self.data.clients[c].y_test
                acc[c] = float((pred[pos:pos + len(x)] == y).mean()) if len(y) else np.nan
                model_of[c] = mid
                pos += len(x)
        served = np.isfinite(acc)
        self.eval_tab.append(self.round, float(self.sim.now), self.cum["device_s"], self.cum["flops"],
                             self.cum["bytes_down"] + self.cum["bytes_up"],
                             float(np.nanmean(acc)) if served.any() else math.nan,
                             float(np.nanpercentile(acc, 10)) if served.any() else math.nan,
                             float(np.nanpercentile(acc, 50)) if served.any() else math.nan,
                             float(served.mean()), len(self.models))
        self.final_acc, self.final_model = acc, model_of
        self.last_eval_round = self.round


def run_fedtrans(scn: FedTransScenario, trainer: LocalTrainer | None = None) -> RunResult:
    """Run one multi-model FL emulation (a pure function of the scenario and the trainer's kind).

    `trainer`: a fresh `LocalTrainer` (default: `default_trainer()`, real torch training)."""
    eng = FedTransEngine(scn, trainer if trainer is not None else default_trainer())
    eng.sim.process(eng.process())
    eng.sim.run(until=eng.horizon)
    if eng.last_eval_round != eng.round:  # the horizon ended the training early
        eng.evaluate()
    return _result(scn, eng)


def _result(scn: FedTransScenario, eng: FedTransEngine) -> RunResult:
    frames = eng.sim.rec.frames()
    acc, mod = eng.final_acc, eng.final_model
    served = np.isfinite(acc)
    hw = eng.pool.pop.hw
    models = frames["models"]
    emu = models.set_index("model_id")["emu_params"] if len(models) else pd.Series(dtype=float)
    table = pd.DataFrame({
        "client": np.arange(len(acc)), "model_id": mod, "accuracy": acc,
        "n_train": eng.data.n_train(), "n_test": [len(c.y_test) for c in eng.data.clients],
        "label_entropy": eng.data.label_entropy(), "ram_gb": hw.ram_gb.astype(float),
        "train_mem_bytes_avail": eng.mem_bytes, "flops_per_s": eng.flops_s,
        "model_emu_params": [float(emu.get(m, np.nan)) if m >= 0 else np.nan for m in mod],
    })
    rounds = frames["rounds"]
    nan = math.nan
    ops = models["op"].to_numpy() if len(models) else np.array([])
    metrics = {
        "acc_mean": float(np.nanmean(acc)) if served.any() else nan,
        "acc_p10": float(np.nanpercentile(acc, 10)) if served.any() else nan,
        "acc_p50": float(np.nanpercentile(acc, 50)) if served.any() else nan,
        "served_fraction": float(served.mean()),
        "cost_device_s": eng.cum["device_s"],
        "cost_flops": eng.cum["flops"],
        "cost_bytes_down": eng.cum["bytes_down"],
        "cost_bytes_up": eng.cum["bytes_up"],
        "cost_device_s_per_round": eng.cum["device_s"] / eng.round if eng.round else nan,
        "cost_flops_per_round": eng.cum["flops"] / eng.round if eng.round else nan,
        "rounds_completed": float(eng.round),
        "rounds_aborted": float(eng.aborted),
        "time_s": float(eng.t_last_close),
        "n_models": float(len(eng.models)),
        "transforms": float(np.isin(ops, ["widen", "deepen"]).sum()),
        "largest_emu_params": float(models["emu_params"].max()) if len(models) else nan,
        "round_time_mean_s": float((rounds["t_close_s"] - rounds["t_req_s"]).mean()) if len(rounds) else nan,
    }
    return RunResult(metrics=metrics, table=table, series={
        "rounds": rounds, "eval": frames["eval"], "models": models, "assignments": frames["assignments"]})


# ----------------------------------------------------------------------------- plots
def _label(r) -> str:
    g = {k: v for k, v in r.values.items() if k != "policy"}
    pol = str(r.values.get("policy", r.scenario.get("policy", "?")))
    return pol + (" " + ",".join(f"{v}" for v in g.values()) if g else "")


register_domain(Domain(
    name="fedtrans",
    scenario_type=FedTransScenario,
    run=run_fedtrans,
    policy_domain="fedtrans",
    metrics={
        "acc_mean": "higher", "acc_p10": "higher", "acc_p50": "higher", "served_fraction": "higher",
        "cost_device_s": "lower", "cost_flops": "lower",
        "cost_device_s_per_round": "lower", "cost_flops_per_round": "lower", "cost_bytes_down": "lower", "cost_bytes_up": "lower",
        "rounds_completed": "higher", "rounds_aborted": "lower", "time_s": "lower", "n_models": "lower",
        "transforms": "lower", "largest_emu_params": "lower", "round_time_mean_s": "lower",
    },
    plots="orrery.experiments.plotting:fedtrans_plots",
    description="Multi-model FL emulation: real torch training of FedAvg / tiered / FedTrans on simulated phones",
))
