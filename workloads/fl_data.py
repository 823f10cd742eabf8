"""Federated datasets: non-IID client partitions of real and synthetic data, and a LEAF loader.

Every client gets a training set and its own test set drawn with the same label proportions
(per-client accuracy is what multi-model FL is judged by). Three sources:

- `digits`: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes; ships with the
  package, no download). Split 75/25 into train and test pools first; clients draw from the
  pools without replacement within a client, but pools are reused across clients when the
  clients together ask for more than the pool holds (a population of 100+ clients on 1,797
  images must share them; their label mixes still differ).
- `teacher`: a capacity-limited synthetic task. Inputs are standard normal vectors; labels
  are the argmax of a fixed random teacher network (two tanh layers), its logits centred so the
  classes are about balanced. A small student cannot represent the teacher, a wider or deeper
  one gets closer, so accuracy depends on model capacity. Every sample is fresh (no reuse).
- LEAF JSON (`load_leaf`): the format of LEAF/FEMNIST (`users`, `num_samples`, `user_data`
  with `x` and `y` per user), natural partition by user.

Non-IID partition (`partition`): client k's label proportions ~ Dirichlet(alpha * 1) (small
alpha: few labels per client; large: close to IID), its sample count ~ log-normal around
`mean_samples` with sigma `quantity_sigma` (quantity skew), at least `min_samples`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orrery.core.errors import OrreryInputError, TraceFormatError, require_file


@dataclass(frozen=True)
class ClientData:
    x_train: np.ndarray  # float32 (n, features)
    y_train: np.ndarray  # int64 (n,)
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class FederatedDataset:
    name: str
    clients: tuple[ClientData, ...]
    n_classes: int
    input_shape: tuple[int, ...]  # shape of one sample as models see it; x arrays are flat

    def __len__(self) -> int:
        return len(self.clients)

    def n_train(self) -> np.ndarray:
        return np.array([len(c.y_train) for c in self.clients])

    def label_entropy(self) -> np.ndarray:
        """Entropy of each client's training labels / log(n_classes), in [0, 1]."""
        out = np.zeros(len(self.clients))
        for i, c in enumerate(self.clients):
            p = np.bincount(c.y_train, minlength=self.n_classes) / max(len(c.y_train), 1)
            p = p[p > 0]
            out[i] = float(-(p * np.log(p)).sum() / math.log(self.n_classes)) if self.n_classes > 1 else 0.0
        return out


# ----------------------------------------------------------------------------- partitioning
def quantity_sizes(n_clients: int, mean_samples: float, quantity_sigma: float, min_samples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Per-client sample counts: log-normal with the given mean (sigma 0: all equal)."""
    if n_clients < 1 or mean_samples <= 0 or quantity_sigma < 0 or min_samples < 1:
        raise OrreryInputError("need n_clients >= 1, mean_samples > 0, quantity_sigma >= 0, min_samples >= 1")
    mu = math.log(mean_samples) - quantity_sigma ** 2 / 2
    n = np.exp(mu + quantity_sigma * rng.standard_normal(n_clients))
    return np.maximum(np.rint(n).astype(np.int64), min_samples)


def label_proportions(n_clients: int, n_classes: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """(n_clients, n_classes) rows ~ Dirichlet(alpha)."""
    if alpha <= 0:
        raise OrreryInputError(f"Dirichlet alpha must be > 0, got {alpha}")
    # tiny alphas underflow to all-zero rows: fall back to one random class
    p = rng.dirichlet(np.full(n_classes, float(alpha)), size=n_clients)
    bad = ~np.isfinite(p).all(axis=1) | (p.sum(axis=1) <= 0)
    if bad.any():
        p[bad] = np.eye(n_classes)[rng.integers(0, n_classes, int(bad.sum()))]
    return p


def _draw(pool_by_class: list[np.ndarray], counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = []
    for k, n in enumerate(counts):
        pool = pool_by_class[k]
        if n == 0 or len(pool) == 0:
            continue
        if n <= len(pool):
            out.append(rng.choice(pool, size=int(n), replace=False))
        else:
            out.append(rng.choice(pool, size=int(n), replace=True))
    return np.concatenate(out) if out else np.empty(0, np.int64)


def _counts(n: int, p: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multinomial counts over classes that exist in the pool."""
    q = p * (available > 0)
    if q.sum() <= 0:
        q = (available > 0).astype(float)
    return rng.multinomial(n, q / q.sum())


def partition(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              n_clients: int, n_classes: int, rng: np.random.Generator, *, alpha: float = 0.5,
              mean_samples: float = 50.0, quantity_sigma: float = 0.5, min_samples: int = 8,
              test_samples: int = 30, name: str = "partition",
              input_shape: tuple[int, ...] | None = None) -> FederatedDataset:
    """Dirichlet label skew + log-normal quantity skew over train/test pools (see module doc)."""
    sizes = quantity_sizes(n_clients, mean_samples, quantity_sigma, min_samples, rng)
    props = label_proportions(n_clients, n_classes, alpha, rng)
    tr = [np.flatnonzero(y_train == k) for k in range(n_classes)]
    te = [np.flatnonzero(y_test == k) for k in range(n_classes)]
    avail = np.array([min(len(a), len(b)) for a, b in zip(tr, te, strict=True)])
    if avail.sum() == 0:
        raise OrreryInputError(f"{name}: no class has both training and test samples")
    clients = []
    for i in range(n_clients):
        itr = _draw(tr, _counts(int(sizes[i]), props[i], avail, rng), rng)
        ite = _draw(te, _counts(int(test_samples), props[i], avail, rng), rng)
        clients.append(ClientData(x_train[itr], y_train[itr], x_test[ite], y_test[ite]))
    shape = input_shape or (x_train.shape[1],)
    return FederatedDataset(name, tuple(clients), n_classes, tuple(shape))


# ----------------------------------------------------------------------------- sources
def digits_pools(rng: np.random.Generator, test_fraction: float = 0.25):
    """scikit-learn digits as flat float32 in [0, 1], split into train and test pools."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = rng.permutation(len(y))
    n_te = int(round(test_fraction * len(y)))
    te, tr = perm[:n_te], perm[n_te:]
    return x[tr], y[tr], x[te], y[te]


@dataclass(frozen=True)
class Teacher:
    """A fixed random two-layer tanh network; `labels(x)` is its argmax class."""

    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray
    centre: np.ndarray

    @classmethod
    def make(cls, dim: int = 32, hidden: int = 64, n_classes: int = 10, seed: int = 12345,
             gain: float = 2.0) -> Teacher:
        g = np.random.default_rng(seed)
        w1 = g.standard_normal((dim, hidden)) * gain / math.sqrt(dim)
        w2 = g.standard_normal((hidden, hidden)) * gain / math.sqrt(hidden)
        w3 = g.standard_normal((hidden, n_classes)) / math.sqrt(hidden)
        probe = g.standard_normal((20000, dim))
        t = cls(w1, w2, w3, np.zeros(n_classes))
        return cls(w1, w2, w3, t.logits(probe).mean(axis=0))

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(np.tanh(x @ self.w1) @ self.w2) @ self.w3 - self.centre

    def labels(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1).astype(np.int64)


def teacher_pools(n_train: int, n_test: int, rng: np.random.Generator, teacher: Teacher):
    dim = teacher.w1.shape[0]
    x = rng.standard_normal((n_train + n_test, dim)).astype(np.float32)
    y = teacher.labels(x.astype(np.float64))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_federated(name: str, n_clients: int, rng: np.random.Generator, *, alpha: float = 0.5,
                   mean_samples: float = 50.0, quantity_sigma: float = 0.5, min_samples: int = 8,
                   test_samples: int = 30, teacher: Teacher | None = None) -> FederatedDataset:
    """A partitioned `digits` or `teacher` dataset for `n_clients` clients."""
    kw = dict(alpha=alpha, mean_samples=mean_samples, quantity_sigma=quantity_sigma,
              min_samples=min_samples, test_samples=test_samples, name=name)
    if name == "digits":
        xtr, ytr, xte, yte = digits_pools(rng)
        return partition(xtr, ytr, xte, yte, n_clients, 10, rng, input_shape=(1, 8, 8), **kw)
    if name == "teacher":
        t = teacher or Teacher.make()
        n_tr = int(mean_samples * n_clients * 3 + 1000)  # pools big enough for the skew
        n_te = int(test_samples * n_clients * 3 + 1000)
        xtr, ytr, xte, yte = teacher_pools(n_tr, n_te, rng, t)
        return partition(xtr, ytr, xte, yte, n_clients, t.w3.shape[1], rng, **kw)
    raise OrreryInputError(f"unknown dataset {name!r}; known: digits, teacher (or a LEAF path)")


# ----------------------------------------------------------------------------- LEAF / FEMNIST
def _leaf_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.json"))
        if not files:
            raise TraceFormatError(p, "no *.json files in the folder", expected="LEAF JSON files")
        return files
    return [require_file(p, "LEAF data file")]


def read_leaf(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """user -> (x, y) from a LEAF JSON file or a folder of them; malformed -> TraceFormatError."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    width = None
    for f in _leaf_files(path):
        try:
            data = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TraceFormatError(f, f"not JSON: {err}", expected="a LEAF JSON object") from None
        if not isinstance(data, dict) or not all(k in data for k in ("users", "user_data")):
            raise TraceFormatError(f, "missing key 'users' or 'user_data'",
                                   expected="{'users': [...], 'num_samples': [...], 'user_data': {...}}")
        users, ud, ns = data["users"], data["user_data"], data.get("num_samples")
        if not isinstance(users, list) or not isinstance(ud, dict):
            raise TraceFormatError(f, "'users' must be a list and 'user_data' an object", column="users")
        if ns is not None and (not isinstance(ns, list) or len(ns) != len(users)):
            raise TraceFormatError(f, "'num_samples' does not match 'users'", column="num_samples",
                                   expected=f"a list of {len(users)} counts")
        for i, u in enumerate(users):
            rec = ud.get(str(u)) if isinstance(u, str | int) else None
            if not isinstance(rec, dict) or "x" not in rec or "y" not in rec:
                raise TraceFormatError(f, f"user {u!r} has no x/y in user_data", column=str(u),
                                       expected="{'x': [[...], ...], 'y': [...]}")
            try:
                x = np.asarray(rec["x"], dtype=np.float32)
                y_raw = np.asarray(rec["y"], dtype=np.float64)
            except (TypeError, ValueError):
                raise TraceFormatError(f, f"user {u!r}: x or y is not numeric (or ragged)", column=str(u),
                                       expected="x: a list of equal-length number lists, y: integers") from None
            if x.ndim != 2 or y_raw.ndim != 1 or len(x) != len(y_raw):
                raise TraceFormatError(f, f"user {u!r}: x has shape {x.shape}, y {y_raw.shape}", column=str(u),
                                       expected="x (n, features) and y (n,)")
            if len(y_raw) == 0:
                raise TraceFormatError(f, f"user {u!r} has no samples", column=str(u), expected="at least one")
            if not np.isfinite(x).all() or not np.all(y_raw == np.round(y_raw)) or (y_raw < 0).any():
                raise TraceFormatError(f, f"user {u!r}: non-finite x or a label that is not an integer >= 0",
                                       column=str(u), expected="finite features, labels 0, 1, ...")
            if ns is not None and int(ns[i]) != len(y_raw):
                raise TraceFormatError(f, f"user {u!r}: num_samples {ns[i]} but {len(y_raw)} samples",
                                       column="num_samples", expected="counts equal to the data")
            if width is None:
                width = x.shape[1]
            elif x.shape[1] != width:
                raise TraceFormatError(f, f"user {u!r}: {x.shape[1]} features, earlier users {width}",
                                       column=str(u), expected="the same feature count for every user")
            key = str(u)
            if key in out:
                px, py = out[key]
                out[key] = (np.concatenate([px, x]), np.concatenate([py, y_raw.astype(np.int64)]))
            else:
                out[key] = (x, y_raw.astype(np.int64))
    if not out:
        raise TraceFormatError(path, "no users", expected="at least one user")
    return out


def load_leaf(path: str | Path, *, test_path: str | Path | None = None, n_clients: int | None = None,
              test_fraction: float = 0.2, n_classes: int | None = None,
              rng: np.random.Generator | None = None) -> FederatedDataset:
    """A LEAF dataset (e.g. FEMNIST) as a `FederatedDataset`, one client per user in file order.

    With `test_path`, each user's test data comes from there (users must match); otherwise a
    seeded `test_fraction` of each user's samples is held out. `n_clients`: use the first n users.
    784 features are read as 1x28x28 images (FEMNIST); other widths as flat vectors.
    """
    rng = rng or np.random.default_rng(0)
    train = read_leaf(path)
    test = read_leaf(test_path) if test_path is not None else None
    users = list(train)
    if n_clients is not None:
        if n_clients > len(users):
            raise OrreryInputError(f"{path}: {len(users)} users, {n_clients} clients asked for")
        users = users[:n_clients]
    clients = []
    for u in users:
        x, y = train[u]
        if test is not None:
            if u not in test:
                raise TraceFormatError(test_path, f"user {u!r} has no test data", column=u,
                                       expected="the users of the training files")
            xt, yt = test[u]
        else:
            perm = rng.permutation(len(y))
            k = int(round(test_fraction * len(y))) if len(y) > 1 else 0
            k = min(max(k, 1 if len(y) > 1 else 0), len(y) - 1) if len(y) > 1 else 0
            xt, yt, x, y = x[perm[:k]], y[perm[:k]], x[perm[k:]], y[perm[k:]]
        clients.append(ClientData(x, y, xt, yt))
    feats = clients[0].x_train.shape[1]
    k_max = max(int(max(c.y_train.max(initial=0), c.y_test.max(initial=0))) for c in clients) + 1
    if n_classes is not None and k_max > n_classes:
        raise TraceFormatError(path, f"label {k_max - 1} >= n_classes {n_classes}", expected=f"labels < {n_classes}")
    shape = (1, 28, 28) if feats == 784 else (feats,)
    return FederatedDataset(f"leaf:{Path(path).name}", tuple(clients), int(n_classes or k_max), shape)


def write_leaf(path: str | Path, users: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write users' (x, y) in LEAF JSON (tests and users converting their own data)."""
    p = Path(path)
    names = list(users)
    p.write_text(json.dumps({
        "users": names,
        "num_samples": [len(users[u][1]) for u in names],
        "user_data": {u: {"x": np.asarray(users[u][0]).tolist(), "y": np.asarray(users[u][1]).tolist()}
                      for u in names},
    }))
    return p
