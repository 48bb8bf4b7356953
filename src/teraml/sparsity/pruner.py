"""BlockPruner: SequentialAttention++ block pruning during training, and its baselines, in one class.

SA++ (Yasuda, Axiotis, Fu, Bateni and Mirrokni, NeurIPS 2024) learns one softmax weight per ``B_r x B_c``
block of each pruned matrix, inside ACDC-style dense, sparsify and sparse phases, and keeps the blocks
with the largest logits. "Attention" here is that learned mask over weight blocks, not a transformer
layer; the pruner works inside the user's own training loop (it is not a one-shot calibration pruner).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

from teraml._validation import Interval, Options, Satisfies, check_param, is_int, is_real, type_name
from teraml.sparsity import _schedule
from teraml.sparsity._blocks import (
    block_nonzero,
    expand,
    from_matrix,
    matrix_shape,
    n_keep,
    score_mag,
    select,
    to_matrix,
)
from teraml.sparsity._reparam import BlockParametrization, PowerPropParametrization

logger = logging.getLogger(__name__)

METHODS = ("sapp", "acdc", "magnitude", "gmp", "powerprop")


def _block_pair(value) -> bool:
    if is_int(value):
        return value >= 1
    return (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) and v >= 1 for v in value))


def _clip_ok(value) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_real(v) for v in value)
            and 0 < value[0] <= 1 <= value[1])


def _schedule_ok(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) and is_real(p[1]) for p in value)


def check_block_shape(block_shape) -> tuple[int, int]:
    """``block_shape`` as a pair of positive ints (an int b means (b, b))."""
    check_param("block_shape", block_shape, [Satisfies(_block_pair, "a positive int or a pair of positive ints")],
                sep=", ")
    return (int(block_shape), int(block_shape)) if is_int(block_shape) else (int(block_shape[0]), int(block_shape[1]))


class BlockPruner:
    """Prune ``B_r x B_c`` blocks of a PyTorch model's weights during training (SequentialAttention++).

    Every pruned layer ends with exactly ``n_keep = max(1, nb - round(sparsity * nb))`` of its ``nb``
    blocks; the rest are exact zeros. Use it inside your own loop::

        model = pruner.prepare(model)        # then build the optimizer (it must see the new logits)
        for batch in data:                   # total_steps optimizer steps in all
            loss(model, batch).backward(); opt.step(); opt.zero_grad()
            pruner.step(opt)                 # phase changes clear opt.state (LRs are kept)
        pruner.finalize()                    # exact zeros, parametrizations removed
        fast = export_block_sparse(model, pruner.block_shape)

    Parameters
    ----------
    sparsity : float in [0, 1)
        Fraction of blocks pruned in every pruned layer (the same in each: global budgets bottleneck).
    total_steps : int
        The optimizer steps of the whole run; the schedule's phases are fractions of it.
    block_shape : int or (int, int), default (8, 8)
    method : {"sapp", "acdc", "magnitude", "gmp", "powerprop"}
        "sapp" learns the block attention; "acdc" alternates dense and sparse phases on magnitude;
        "magnitude" prunes once before a final fine-tune; "gmp" follows the cubic ramp; "powerprop" is
        magnitude on block-PowerProp weights (group LASSO with weight decay).
    schedule : "imagenet", "criteo" or a list of (kind, fraction)
        Phase presets of the paper's two settings; kinds are "dense", "sparsify", "sparse".
    layers : None, list of names, or callable(name, module) -> bool
        Candidate layers (default every ``nn.Linear`` and ``nn.Conv2d`` with groups=1).
    min_blocks : int, default 100
        Candidates with fewer blocks stay dense (as in the paper); see :meth:`report`.
    sparsify_exponent : float, default 4
        ``c`` of SA++'s sparsify ramp ``(1 - e^{-cu}) / (1 - e^{-c})``.
    attention_clip : "auto", None or (low, high)
        Clip of SA++'s mean-1 block weights; "auto" is ``(1 - s, 1 / (1 - s))``.
    pruned_weights : {"zero", "mask"}
        Zero the weights outside the mask when it shrinks, or keep them for the next dense phase.

    Complexity: training keeps the dense matmul, plus O(P) per step for the masked weight and O(nb log nb)
    per mask update; there is no training speed-up. Memory: about 4 nb floats per layer.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from teraml.sparsity import BlockPruner
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    >>> pruner = BlockPruner(sparsity=0.9, total_steps=120, block_shape=4, layers=["0"])
    >>> model = pruner.prepare(model)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    >>> x, y = torch.randn(32, 64), torch.randint(0, 4, (32,))
    >>> for _ in range(120):
    ...     nn.functional.cross_entropy(model(x), y).backward(); opt.step(); opt.zero_grad()
    ...     _ = pruner.step(opt)
    >>> model = pruner.finalize()
    >>> pruner.report()["0"]["kept_blocks"], pruner.report()["0"]["n_blocks"]
    (26, 256)
    """

    _constraints = {
        "sparsity": [Interval("float", 0, 1, closed="left")],
        "total_steps": [Interval("int", 1, text="a positive int")],
        "method": [Options(*METHODS)],
        "min_blocks": [Interval("int", 0, text="a non-negative int")],
        "sparsify_exponent": [Interval("float", 0, closed="neither", text="a positive float")],
        "pruned_weights": [Options("zero", "mask", phrase="or")],
    }

    def __init__(self, *, sparsity: float, total_steps: int, block_shape=(8, 8), method: str = "sapp",
                 schedule="imagenet", layers=None, min_blocks: int = 100, sparsify_exponent: float = 4.0,
                 attention_clip="auto", pruned_weights: str = "zero"):
        given = {"sparsity": sparsity, "total_steps": total_steps, "method": method, "min_blocks": min_blocks,
                 "sparsify_exponent": sparsify_exponent, "pruned_weights": pruned_weights}
        p = {name: check_param(name, given[name], allowed, sep=", ") for name, allowed in self._constraints.items()}
        self.sparsity = p["sparsity"]
        self.total_steps = p["total_steps"]
        self.method = p["method"]
        self.min_blocks = p["min_blocks"]
        self.sparsify_exponent = p["sparsify_exponent"]
        self.pruned_weights = p["pruned_weights"]
        self._block = check_block_shape(block_shape)
        check_param("attention_clip", attention_clip, [Options("auto"), None, Satisfies(
            _clip_ok, "a pair"), "'auto', None or a pair (low, high) with 0 < low <= 1 <= high"], sep=", ")
        if attention_clip == "auto":
            self.clip = (1.0 - self.sparsity, 1.0 / (1.0 - self.sparsity))
        else:
            self.clip = None if attention_clip is None else (float(attention_clip[0]), float(attention_clip[1]))
        self.attention_clip = attention_clip
        self.phases = self._check_schedule(schedule)
        self.schedule = schedule
        if layers is not None and not (callable(layers) or isinstance(layers, (list, tuple))):
            check_param("layers", layers, [None, "None, a list of module names or a callable(name, module)"],
                        sep=", ")
        self.layers = layers
        self._table = _schedule.table(self.phases, self.total_steps)
        self._check_steps(schedule)
        self._model: nn.Module | None = None
        self._params: dict[str, BlockParametrization] = {}
        self._report: dict[str, dict] = {}
        self._steps = 0
        self._phase_index = 0
        self._warned_no_optimizer = False
        self._checked_optimizer = False
        self._finalized = False

    # ------------------------------------------------------------------------------------------ checks

    def _check_schedule(self, schedule) -> list[tuple[str, float]]:
        text = "'imagenet', 'criteo' or a list of (kind, fraction) pairs"
        check_param("schedule", schedule, [Options("imagenet", "criteo"), Satisfies(_schedule_ok, text), text],
                    sep=", ")
        if isinstance(schedule, str):
            return list(_schedule.PRESETS[schedule]["acdc" if self.method == "acdc" else self.method])
        phases = [(str(k), float(f)) for k, f in schedule]
        for kind, frac in phases:
            if kind not in _schedule.KINDS:
                raise ValueError(f"schedule kind must be one of 'dense', 'sparsify', 'sparse', got {kind!r}")
            if not frac > 0:
                raise ValueError(f"schedule fractions must be > 0, got {frac!r}")
        total = sum(f for _, f in phases)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"schedule fractions must sum to 1, got {round(total, 10)!r}")
        if phases[-1][0] == "dense":
            raise ValueError("schedule must end with a 'sparse' or 'sparsify' phase, got 'dense'")
        return phases

    def _check_steps(self, schedule) -> None:
        lengths = [stop - start for _, start, stop in self._table]
        shortest = min(range(len(lengths)), key=lambda j: (lengths[j], self.phases[j][1]))
        kind, frac = self.phases[shortest]
        name = f"schedule {schedule!r}" if isinstance(schedule, str) else "the given schedule"
        if lengths[shortest] == 0:
            need = _schedule.safe_total_steps(self.phases)
            raise ValueError(f"total_steps={self.total_steps} is too small for {name} with method "
                             f"{self.method!r}: the shortest phase ({kind!r}, {frac * 100:g}%) gets 0 steps; "
                             f"use total_steps >= {need}")
        if lengths[shortest] <= 2:
            warnings.warn(f"total_steps={self.total_steps} gives the shortest phase ({kind!r}, {frac * 100:g}%) of "
                          f"{name} only {lengths[shortest]} step(s)", UserWarning, stacklevel=3)

    # ------------------------------------------------------------------------------------------ read-only

    @property
    def block_shape(self) -> tuple[int, int]:
        """The block shape ``(B_r, B_c)``."""
        return self._block

    @property
    def steps_done(self) -> int:
        """Optimizer steps counted by :meth:`step` so far."""
        return self._steps

    @property
    def phase(self) -> str:
        """The current phase kind ("dense", "sparsify", "sparse"; "finished" after the last step)."""
        if self._steps >= self.total_steps:
            return "finished"
        return self.phases[self._phase_index][0]

    def schedule_table(self) -> list[tuple[str, int, int]]:
        """``(kind, start, stop)`` of every phase, in optimizer steps."""
        return list(self._table)

    # ------------------------------------------------------------------------------------------ prepare

    def _candidates(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        modules = dict(model.named_modules())
        if self.layers is None:
            return [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)
                    or (isinstance(m, nn.Conv2d) and m.groups == 1)]
        if callable(self.layers):
            chosen = [(n, m) for n, m in modules.items() if n and self.layers(n, m)]
        else:
            chosen = []
            for n in self.layers:
                if n not in modules or not n:
                    raise ValueError(f"layers: no module named {n!r} in the model")
                chosen.append((n, modules[n]))
        seen: dict[int, str] = {}
        for n, m in chosen:
            if id(m) in seen:
                raise ValueError(f"layers: {n!r} names the same module as {seen[id(m)]!r}; list each layer once")
            seen[id(m)] = n
            if not (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)):
                raise TypeError(f"layers: {n!r} is {type(m).__name__}; only nn.Linear and nn.Conv2d with groups=1 "
                                "can be block-pruned")
        return chosen

    def prepare(self, model: nn.Module) -> nn.Module:
        """Add the block parametrizations to ``model`` in place (logits are Parameters, masks buffers).

        Outputs are unchanged (all blocks kept, attention 1). Build the optimizer after this call.
        """
        if self._model is not None:
            raise RuntimeError("prepare() was already called on this pruner")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type_name(model).split('.')[-1]}")
        candidates = self._candidates(model)
        largest = None
        for name, module in candidates:
            R, C = matrix_shape(module.weight.shape)
            nbr, nbc = -(-R // self._block[0]), -(-C // self._block[1])
            nb = nbr * nbc
            entry = {"shape": tuple(module.weight.shape), "n_blocks": nb, "kept_blocks": nb, "pruned": False,
                     "skipped_reason": None, "nominal_sparsity": 0.0, "real_sparsity": None}
            if largest is None or nb > largest[1]:
                largest = (name, nb)
            if nb < self.min_blocks:
                entry["skipped_reason"] = f"{nb} blocks < min_blocks={self.min_blocks}"
            elif not module.weight.dtype.is_floating_point:
                entry["skipped_reason"] = f"weight dtype {module.weight.dtype} is not floating point"
            self._report[name] = entry
        pruned = [(n, m) for n, m in candidates if self._report[n]["skipped_reason"] is None]
        if not pruned:
            if not candidates:
                raise ValueError("no prunable layer: no candidate layer (the model has no nn.Linear or nn.Conv2d "
                                 "with groups=1, or layers= selects none)")
            raise ValueError(f"no prunable layer: all {len(candidates)} candidate layers have fewer than "
                             f"min_blocks={self.min_blocks} blocks (largest: {largest[0]!r} with {largest[1]}); lower "
                             "min_blocks or use smaller blocks")
        for name, entry in self._report.items():
            if entry["skipped_reason"]:
                logger.info("BlockPruner: %r stays dense (%s)", name, entry["skipped_reason"])
        cls = PowerPropParametrization if self.method == "powerprop" else BlockParametrization
        for name, module in pruned:
            param = cls(module.weight.shape, self._block, self.method, self.clip if self.method == "sapp" else None,
                        device=module.weight.device, dtype=module.weight.dtype)
            parametrize.register_parametrization(module, "weight", param)
            self._params[name] = param
            self._report[name].update(pruned=True, nominal_sparsity=self.sparsity)
        self._model = model
        self._enter(0)
        return model

    # ------------------------------------------------------------------------------------------ masks

    def _stored(self, name: str) -> torch.Tensor:
        module = dict(self._model.named_modules())[name]
        return module.parametrizations.weight.original

    def _update(self, keep_fraction_of_target: float | None, *, from_all: bool) -> None:
        """Select ``n_keep(s * f)`` blocks per layer (within the mask, or from all blocks) and zero the rest."""
        with torch.no_grad():
            for name, param in self._params.items():
                stored = self._stored(name)
                W = to_matrix(param.unmasked(stored))
                s = self.sparsity if keep_fraction_of_target is None else self.sparsity * keep_fraction_of_target
                k = n_keep(s, param.n_blocks)
                mag = score_mag(W, self._block)
                primary = param.logits if self.method == "sapp" else mag
                base = torch.ones_like(param.mask) if from_all else param.mask
                param.mask.copy_(select(base, k, primary=primary, mag=mag, nonzero=block_nonzero(W, self._block)))
                if self.pruned_weights == "zero":
                    keep = expand(param.mask.to(stored.dtype), param.R, param.C, self._block)
                    stored.copy_(from_matrix(to_matrix(stored) * keep, stored.shape))

    def _enter(self, j: int) -> None:
        """Start phase ``j``: its entry action on the masks."""
        self._phase_index = j
        kind = self.phases[j][0]
        if kind == "dense":
            with torch.no_grad():
                for param in self._params.values():
                    param.mask.fill_(True)
        elif kind == "sparse":
            self._update(None, from_all=self.method != "sapp")

    def _check_optimizer(self, optimizer) -> None:
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for name, param in self._params.items():
            if self.method == "sapp" and id(param.logits) not in held:
                raise ValueError(f"optimizer does not hold the pruner's parameters (e.g. {name!r} attention logits); "
                                 "build the optimizer after prepare(model)")
            if id(self._stored(name)) not in held:
                what = "powerprop weights" if self.method == "powerprop" else "weight"
                raise ValueError(f"optimizer does not hold the pruner's parameters (e.g. {name!r} {what}); "
                                 "build the optimizer after prepare(model)")

    def step(self, optimizer: torch.optim.Optimizer | None = None) -> str | None:
        """Count one optimizer step; update masks; at a phase boundary clear ``optimizer.state``.

        Call it after every ``optimizer.step()``. Returns the new phase's kind at a boundary, else None.
        """
        if self._model is None:
            raise RuntimeError("call prepare(model) before step()")
        if self._finalized:
            raise RuntimeError("finalize() was already called; the pruner has no more steps")
        if self._steps >= self.total_steps:
            raise RuntimeError(f"step {self._steps + 1} > total_steps={self.total_steps}: the schedule is finished; "
                               "call finalize()")
        if optimizer is None:
            if not self._warned_no_optimizer:
                warnings.warn("step() without the optimizer cannot clear its state at phase boundaries (the paper "
                              "calls this reset crucial); pass step(optimizer)", UserWarning, stacklevel=2)
                self._warned_no_optimizer = True
        elif not self._checked_optimizer:
            self._check_optimizer(optimizer)
            self._checked_optimizer = True
        self._steps += 1
        kind, start, stop = self._table[self._phase_index]
        if kind == "sparsify":
            i, n = self._steps - start, stop - start
            f = (_schedule.sapp_curve(i / n, self.sparsify_exponent) if self.method == "sapp"
                 else _schedule.gmp_curve(i / n))
            self._update(f if i < n else None, from_all=False)
        if self._steps < self.total_steps and self._steps == stop:
            j = self._phase_index + 1          # (no phase has 0 steps: checked at construction)
            self._enter(j)
            if optimizer is not None:
                optimizer.state.clear()
            return self.phases[j][0]
        return None

    # ------------------------------------------------------------------------------------------ finalize

    def finalize(self) -> nn.Module:
        """Write the masked weights with exact zeros and remove the parametrizations (logits, masks leave).

        Allowed once every pruned layer holds exactly its target number of blocks (in the sparse phase
        or after the last step).
        """
        if self._model is None:
            raise RuntimeError("call prepare(model) before finalize()")
        if self._finalized:
            return self._model
        at_target = all(int(p.mask.sum()) == min(n_keep(self.sparsity, p.n_blocks), p.n_blocks)
                        for p in self._params.values())
        if not at_target or self.phase in ("dense", "sparsify"):
            raise RuntimeError(f"finalize() called at step {self._steps} of {self.total_steps} in phase "
                               f"{self.phase!r}: the model is not sparse yet")
        modules = dict(self._model.named_modules())
        for name, param in self._params.items():
            module = modules[name]
            with torch.no_grad():
                W = module.weight.detach().clone()                     # the parametrized weight
                keep = expand(param.mask.to(W.dtype), param.R, param.C, self._block)
                W = from_matrix(to_matrix(W) * keep, W.shape)          # exact zeros outside the mask
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            with torch.no_grad():
                module.weight.data = W.to(module.weight.dtype)
        self._finalized = True
        return self._model

    def report(self) -> dict[str, dict]:
        """Per candidate layer: shape, n_blocks, kept_blocks, pruned, skipped_reason, nominal_sparsity and
        real_sparsity (fraction of exact zeros in the weight, skipped layers included)."""
        if self._model is not None:
            modules = dict(self._model.named_modules())
            for name, entry in self._report.items():
                if name in self._params:       # (the parametrization modules outlive finalize)
                    entry["kept_blocks"] = int(self._params[name].mask.sum())
                W = modules[name].weight.detach()
                entry["real_sparsity"] = float((W == 0).sum()) / W.numel()
        return {n: dict(e) for n, e in self._report.items()}

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The pruner's progress (the masks and logits live in the model's state dict)."""
        return {"steps_done": self._steps, "phase_index": self._phase_index, "finalized": self._finalized,
                "warned_no_optimizer": self._warned_no_optimizer, "sparsity": self.sparsity,
                "total_steps": self.total_steps, "method": self.method, "block_shape": list(self._block)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the progress saved by :meth:`state_dict` (same configuration required)."""
        for key in ("sparsity", "total_steps", "method"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state_dict: {key} is {state[key]!r}, this pruner has {getattr(self, key)!r}")
        if tuple(state["block_shape"]) != self._block:
            raise ValueError(f"state_dict: block_shape is {tuple(state['block_shape'])}, this pruner has {self._block}")
        self._steps = int(state["steps_done"])
        self._phase_index = int(state["phase_index"])
        self._finalized = bool(state["finalized"])
        self._warned_no_optimizer = bool(state["warned_no_optimizer"])

