"""The models, data and training loop shared by the sparsity tests and ``teraml bench sparsity``.

One harness runs every method from a deep copy of one initialized model, with one seeded data order,
Adam and equal steps: D1 is an MLP on scikit-learn's digits, D2 a field-embedding MLP on
``make_criteo_like`` with only its first layer pruned. The torch.ao peers (``WeightNormSparsifier``, with
``CubicSL`` for the gradual ramp) run in the same loop.
"""

from __future__ import annotations

import copy
import math
import time
import warnings

import torch
from torch import nn

from teraml.sparsity.pruner import BlockPruner

DIGITS = {"epochs": 30, "batch": 64, "lr": 1e-3, "weight_decay": 1e-4, "schedule": "imagenet", "layers": ["0", "2"]}
CRITEO = {"epochs": 2, "batch": 512, "lr": 2e-3, "weight_decay": 1e-5, "schedule": "criteo", "layers": ["mlp.0"]}
CRITEO_LONG = {**CRITEO, "epochs": 3, "batch": 256}


# ------------------------------------------------------------------------------------------------ data


def digits_data() -> dict:
    """Digits scaled to [0, 1], stratified 70/30 split (random_state=0), as float32 / int64 tensors."""
    from sklearn.model_selection import train_test_split

    from teraml.datasets import load_digits

    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    return {"train": (torch.tensor(Xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.int64)),
            "test": (torch.tensor(Xte, dtype=torch.float32), torch.tensor(yte, dtype=torch.int64)),
            "task": "classification"}


def criteo_data(n_samples: int = 80_000, n_train: int = 60_000) -> dict:
    """``make_criteo_like(n_samples)`` split n_train / rest; dense fields standardized on train."""
    from teraml.datasets import make_criteo_like

    Xd, Xc, y = make_criteo_like(n_samples, random_state=0)
    mu, sd = Xd[:n_train].mean(axis=0), Xd[:n_train].std(axis=0)
    sd[sd == 0] = 1.0
    Xd = (Xd - mu) / sd

    def part(sl):
        return (torch.tensor(Xd[sl], dtype=torch.float32), torch.tensor(Xc[sl], dtype=torch.int64),
                torch.tensor(y[sl], dtype=torch.float32))

    return {"train": part(slice(0, n_train)), "test": part(slice(n_train, None)), "task": "binary",
            "n_dense": Xd.shape[1], "n_categorical": Xc.shape[1], "hash_buckets": int(Xc.max()) + 1}


# ------------------------------------------------------------------------------------------------ models


def digits_mlp(seed: int) -> nn.Sequential:
    """64 -> 256 -> 256 -> 10 with ReLU (the pruned layers are "0" and "2")."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


class CriteoNet(nn.Module):
    """Dim-16 field embeddings (dense fields as ``x v + b``), concatenated (624 wide), then an MLP.

    ``mlp.0`` (624 -> 128) is the layer SA++ prunes in the paper's Criteo setting.
    """

    def __init__(self, n_dense: int, n_categorical: int, buckets: int, dim: int = 16, hidden: int = 128):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(buckets, dim) for _ in range(n_categorical))
        self.dense_v = nn.Parameter(torch.randn(n_dense, dim) * 0.1)
        self.dense_b = nn.Parameter(torch.zeros(n_dense, dim))
        width = (n_dense + n_categorical) * dim
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        parts = [e(cat[:, j]) for j, e in enumerate(self.emb)]
        d = dense[:, :, None] * self.dense_v + self.dense_b
        x = torch.cat(parts + [d.reshape(dense.shape[0], -1)], dim=1)
        return self.mlp(x).squeeze(-1)


def criteo_net(data: dict, seed: int) -> CriteoNet:
    torch.manual_seed(seed)
    return CriteoNet(data["n_dense"], data["n_categorical"], data["hash_buckets"])


# ------------------------------------------------------------------------------------------------ loop


def batches(n: int, batch: int, epochs: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for a in range(0, n, batch):
            yield perm[a:a + batch]


def n_steps(n: int, batch: int, epochs: int) -> int:
    return epochs * math.ceil(n / batch)


def _loss(model, data, idx, part="train"):
    tensors = data[part]
    if data["task"] == "classification":
        X, y = tensors
        return nn.functional.cross_entropy(model(X[idx]), y[idx])
    dense, cat, y = tensors
    return nn.functional.binary_cross_entropy_with_logits(model(dense[idx], cat[idx]), y[idx])


@torch.no_grad()
def evaluate(model, data) -> dict:
    """Test accuracy (digits) or log-loss (Criteo-like) of ``model`` in eval mode."""
    model.eval()
    if data["task"] == "classification":
        X, y = data["test"]
        out = {"accuracy": float((model(X).argmax(dim=1) == y).float().mean())}
    else:
        dense, cat, y = data["test"]
        logits = model(dense, cat)
        out = {"log_loss": float(nn.functional.binary_cross_entropy_with_logits(logits, y))}
    model.train()
    return out


def train(data: dict, base_model: nn.Module, method: str, *, sparsity: float, block: int, seed: int,
          config: dict, pruned_weights: str = "zero") -> dict:
    """Train a deep copy of ``base_model`` with one method; return its test metric, report and time.

    ``method`` is "dense", a BlockPruner method, "ao_magnitude" (WeightNormSparsifier stepped once at the
    start of the final sparse phase) or "ao_gmp" (WeightNormSparsifier + CubicSL stepped every step of the
    gmp ramp). Every run sees the same data order (``seed``) and clears Adam's state at phase boundaries.
    """
    model = copy.deepcopy(base_model)
    n = data["train"][0].shape[0]
    total = n_steps(n, config["batch"], config["epochs"])
    pruner = ao = None
    t0 = time.perf_counter()
    if method not in ("dense", "ao_magnitude", "ao_gmp"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pruner = BlockPruner(sparsity=sparsity, total_steps=total, block_shape=block, method=method,
                                 schedule=config["schedule"], layers=config["layers"], pruned_weights=pruned_weights)
        pruner.prepare(model)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    if method.startswith("ao_"):
        ao = _AoPeer(model, method, sparsity, block, total, config)
    for step, idx in enumerate(batches(n, config["batch"], config["epochs"], seed)):
        loss = _loss(model, data, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if pruner is not None:
            pruner.step(opt)
        if ao is not None:
            ao.after_step(step + 1, opt)
    report = None
    if pruner is not None:
        pruner.finalize()
        report = pruner.report()
    if ao is not None:
        report = ao.finish()
    seconds = time.perf_counter() - t0
    return {"method": method, "sparsity": sparsity, "block": block, "seed": seed, **evaluate(model, data),
            "report": report, "seconds": seconds, "model": model}


class _AoPeer:
    """torch.ao.pruning's block magnitude sparsifier, optionally with its cubic scheduler, in our loop."""

    def __init__(self, model, method, sparsity, block, total, config):
        from torch.ao.pruning import WeightNormSparsifier

        self.model, self.method, self.total = model, method, total
        kind = "magnitude" if method == "ao_magnitude" else "gmp"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ref = BlockPruner(sparsity=sparsity, total_steps=total, block_shape=block, method=kind,
                              schedule=config["schedule"], layers=config["layers"])
        self.table = ref.schedule_table()
        self.sparsifier = WeightNormSparsifier(sparsity_level=sparsity, sparse_block_shape=(block, block),
                                               zeros_per_block=block * block)
        # the layers BlockPruner prunes (the others have fewer than its min_blocks blocks and stay dense)
        pruned = [n for n, e in ref.prepare(copy.deepcopy(model)) and ref.report().items() if e["pruned"]]
        self.sparsifier.prepare(model, config=[{"tensor_fqn": f"{name}.weight"} for name in pruned])
        self.scheduler = None
        if kind == "gmp":
            from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL

            _, t0, t1 = next(p for p in self.table if p[0] == "sparsify")
            self.ramp = (t0, t1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.scheduler = CubicSL(self.sparsifier, init_sl=0.0, init_t=t0, delta_t=1, total_t=t1 - t0)
        self.sparse_start = next(p for p in self.table if p[0] == "sparse")[1]

    def after_step(self, t: int, opt) -> None:
        if self.scheduler is None:          # one-shot magnitude at the start of the final sparse phase
            if t == self.sparse_start:
                self.sparsifier.step()
                opt.state.clear()
            return
        with warnings.catch_warnings():     # gradual: both step()s every step, as torch.ao documents
            warnings.simplefilter("ignore")
            self.scheduler.step()
            self.sparsifier.step()
        if t in self.ramp:
            opt.state.clear()

    def finish(self) -> dict:
        self.sparsifier.squash_mask()
        out = {}
        for cfg in self.sparsifier.groups if hasattr(self.sparsifier, "groups") else []:
            name = cfg["tensor_fqn"].rsplit(".", 1)[0]
            W = dict(self.model.named_modules())[name].weight.detach()
            out[name] = {"real_sparsity": float((W == 0).sum()) / W.numel()}
        return out

