"""A tiny byte-level Llama trained on Python's standard-library source.

This is the one real model on which teraml's attention and KV-cache methods are measured. It is a
genuine Hugging Face ``transformers.LlamaForCausalLM`` (vocabulary = the 256 byte values, random
init, nothing downloaded), so attention is swapped through ``attn_implementation`` and decoding goes
through a transformers ``Cache``, exactly as users swap teraml in.

Model (about 1.0 M parameters, fp32, GQA on purpose)::

    LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_theta=1e4, tie_word_embeddings=True)

Recipe: AdamW (lr 4e-3, betas (0.9, 0.95), weight decay 0.1), 30 warm-up steps then cosine to 10%,
gradient clip 1.0, seed 0, 2 threads; 600 steps of 4 x 1024 random windows of
``stdlib_text("train")``, then 200 steps of 1 x 4096. A wall-clock cap (600 s) stops training early
and records the step reached.

The trained checkpoint is saved with ``save_pretrained`` under the user cache directory
(``$TERAML_CACHE_DIR``, else ``$XDG_CACHE_HOME/teraml``, else ``~/.cache/teraml``) with a
``manifest.json`` (config, recipe, SHA-256 of the training bytes, steps, losses, versions) and reused
while config, recipe and data hash match.

Example::

    from teraml.models import tinylm
    ckpt = tinylm.train_tinylm()      # trains once (<= 10 min), then loads from the cache
    tinylm.evaluate(ckpt.model)       # validation bits/byte at context 4096 (about 2.3)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from teraml._validation import (
    Satisfies,
    check_bool,
    check_choice,
    check_instance,
    check_int,
    check_param,
    check_path,
)
from teraml.datasets import stdlib_text, stdlib_text_sha256, unigram_entropy

__all__ = [
    "CONFIG",
    "RECIPE",
    "TinyLMCheckpoint",
    "cache_dir",
    "is_cached",
    "make_config",
    "make_model",
    "train_tinylm",
    "evaluate",
    "evaluate_nll",
    "unigram_bits_per_byte",
]

logger = logging.getLogger(__name__)

#: The model configuration (keyword arguments of ``transformers.LlamaConfig``).
CONFIG: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_theta": 1e4,
    "tie_word_embeddings": True,
}

#: The training recipe. ``phases`` run in order; the learning-rate schedule spans all of them.
RECIPE: dict[str, Any] = {
    "seed": 0,
    "threads": 2,
    "lr": 4e-3,
    "betas": [0.9, 0.95],
    "weight_decay": 0.1,
    "warmup_steps": 30,
    "final_lr_fraction": 0.1,
    "clip": 1.0,
    "phases": [
        {"steps": 600, "batch_size": 4, "context": 1024},
        {"steps": 200, "batch_size": 1, "context": 4096},
    ],
    "max_seconds": 600.0,
    "val_every": 100,
}

_LN2 = math.log(2.0)


def _require_torch():
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("teraml.models.tinylm needs torch and transformers: pip install 'teraml[torch]'") from exc
    return torch, transformers


def cache_dir() -> Path:
    """The user cache directory of teraml (``$TERAML_CACHE_DIR``, ``$XDG_CACHE_HOME/teraml`` or ``~/.cache/teraml``).

    >>> cache_dir().name in ("teraml",) or "TERAML_CACHE_DIR" in os.environ
    True
    """
    env = os.environ.get("TERAML_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "teraml"


def _merged(base: dict, overrides: dict | None, what: str) -> dict:
    out = copy.deepcopy(base)
    if overrides is None:
        return out
    check_instance(what, overrides, dict, "a dict or None")
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}; expected a subset of {sorted(base)}")
    out.update(copy.deepcopy(overrides))
    return out


_PHASES = [Satisfies(lambda p: len(p) > 0, "a non-empty list of dicts", types=list)]
_PHASE = [Satisfies(lambda p: set(p) == {"steps", "batch_size", "context"},
                    "a dict with keys 'steps', 'batch_size', 'context'", types=dict)]


def _check_recipe(recipe: dict) -> None:
    phases = check_param("recipe['phases']", recipe["phases"], _PHASES)
    for i, ph in enumerate(phases):
        check_param(f"recipe['phases'][{i}]", ph, _PHASE)
        check_int(f"recipe['phases'][{i}]['steps']", ph["steps"], min_value=0)
        check_int(f"recipe['phases'][{i}]['batch_size']", ph["batch_size"], min_value=1)
        check_int(f"recipe['phases'][{i}]['context']", ph["context"], min_value=2)
    check_int("recipe['seed']", recipe["seed"], min_value=0)
    check_int("recipe['threads']", recipe["threads"], min_value=1)


def make_config(overrides: dict | None = None):
    """Return the ``transformers.LlamaConfig`` of the tiny LM (``overrides`` change single fields).

    >>> make_config().num_hidden_layers                                # doctest: +SKIP
    4
    """
    _, transformers = _require_torch()
    cfg = _merged(CONFIG, overrides, "config")
    kwargs = dict(cfg)
    theta = kwargs.pop("rope_theta")
    try:
        config = transformers.LlamaConfig(**kwargs, rope_parameters={"rope_type": "default", "rope_theta": theta})
    except TypeError:  # older transformers
        config = transformers.LlamaConfig(**kwargs, rope_theta=theta)
    config._attn_implementation = "sdpa"
    return config


def make_model(config_overrides: dict | None = None, *, seed: int = 0):
    """A freshly initialised (untrained) tiny LM in fp32 with ``"sdpa"`` attention.

    The global torch RNG is left untouched.

    >>> model = make_model()                                         # doctest: +SKIP
    >>> sum(p.numel() for p in model.parameters())                   # doctest: +SKIP
    1018496
    """
    torch, transformers = _require_torch()
    seed = check_int("seed", seed, min_value=0)
    config = make_config(config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    return model.float().eval()


@dataclasses.dataclass
class TinyLMCheckpoint:
    """A trained tiny LM: the model, its manifest, where it is stored and whether it came from the cache."""

    model: Any
    manifest: dict
    path: Path
    from_cache: bool

    @property
    def history(self) -> list[dict]:
        """Training curve: one dict per logged step (``step``, ``seconds``, ``train_bpb``, maybe ``val_bpb``)."""
        return self.manifest.get("history", [])


@contextlib.contextmanager
def _hf_progress(verbose: bool):
    """Silence transformers' own progress bars (save/load shards) unless verbose."""
    _, transformers = _require_torch()
    hf_logging = transformers.utils.logging
    was = hf_logging.is_progress_bar_enabled()
    if not verbose:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _cache_key(config: dict, recipe: dict, data_sha: str) -> str:
    blob = json.dumps({"config": config, "recipe": recipe, "data": data_sha}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def is_cached(config: dict | None = None, recipe: dict | None = None, cache: str | os.PathLike | None = None) -> bool:
    """Whether :func:`train_tinylm` with these overrides would load a checkpoint instead of training.

    >>> isinstance(is_cached(), bool)
    True
    """
    cfg, rec = _merged(CONFIG, config, "config"), _merged(RECIPE, recipe, "recipe")
    return (_checkpoint_dir(cfg, rec, cache, stdlib_text_sha256("train")) / "manifest.json").is_file()


def _checkpoint_dir(cfg: dict, rec: dict, cache, data_sha: str) -> Path:
    """The cache folder of the checkpoint of (config, recipe, training data) under ``cache`` (None: cache_dir())."""
    check_path("cache", cache, allow_none=True)
    root = Path(cache) if cache is not None else cache_dir()
    return root / "tinylm" / _cache_key(cfg, rec, data_sha)


def _versions() -> dict:
    torch, transformers = _require_torch()
    import teraml

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "teraml": teraml.__version__,
    }


def _lr_at(step: int, total: int, recipe: dict) -> float:
    lr, warm, floor = recipe["lr"], recipe["warmup_steps"], recipe["final_lr_fraction"]
    if warm > 0 and step < warm:
        return lr * (step + 1) / warm
    span = max(1, total - warm)
    progress = min(1.0, (step - warm) / span)
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _byte_windows(data: np.ndarray, starts: np.ndarray, length: int):
    torch, _ = _require_torch()
    idx = starts[:, None] + np.arange(length)[None, :]
    return torch.from_numpy(data[idx].astype(np.int64))


def _window_loss(model, batch):
    """Mean next-byte cross-entropy (nats) of ``batch`` (B, L+1)."""
    torch, _ = _require_torch()
    logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))


def _train(model, recipe: dict, data: np.ndarray, val: np.ndarray, verbose: bool) -> dict:
    torch, _ = _require_torch()
    from tqdm.auto import tqdm

    rng = np.random.default_rng(recipe["seed"])
    total = sum(ph["steps"] for ph in recipe["phases"])
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe["lr"],
        betas=tuple(recipe["betas"]),
    )
    val_starts = np.linspace(0, len(val) - 1025, 4).astype(np.int64)
    history: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    stopped_early = False
    model.train()
    bar = tqdm(total=total, desc="training tiny LM", unit="step", disable=not verbose, leave=False)
    last_loss = float("nan")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        for ph in recipe["phases"]:
            for _ in range(ph["steps"]):
                if time.perf_counter() - t0 > recipe["max_seconds"]:
                    stopped_early = True
                    break
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, recipe)
                starts = rng.integers(0, len(data) - ph["context"] - 1, size=ph["batch_size"])
                batch = _byte_windows(data, starts, ph["context"] + 1)
                loss = _window_loss(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clip"])
                opt.step()
                step += 1
                last_loss = float(loss.detach())
                entry = {"step": step, "seconds": time.perf_counter() - t0, "train_bpb": last_loss / _LN2,
                         "context": ph["context"]}
                if recipe["val_every"] and (step % recipe["val_every"] == 0 or step == total):
                    model.eval()
                    with torch.no_grad():
                        vloss = _window_loss(model, _byte_windows(val, val_starts, 1025))
                    model.train()
                    entry["val_bpb"] = float(vloss) / _LN2
                history.append(entry)
                bar.update(1)
                bar.set_postfix(bpb=f"{last_loss / _LN2:.3f}")
            if stopped_early:
                break
    bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    if stopped_early:
        logger.warning("tiny LM training hit its wall-clock cap of %.0f s after %d of %d steps",
                       recipe["max_seconds"], step, total)
    return {
        "steps": step,
        "planned_steps": total,
        "stopped_early": stopped_early,
        "train_seconds": seconds,
        "final_train_bpb": last_loss / _LN2,
        "history": history,
    }


def train_tinylm(
    *,
    retrain: bool = False,
    verbose: bool = True,
    cache: str | os.PathLike | None = None,
    config: dict | None = None,
    recipe: dict | None = None,
) -> TinyLMCheckpoint:
    """Train the tiny LM on ``stdlib_text("train")``, or load it from the cache.

    Parameters
    ----------
    retrain : bool
        Train even if a matching checkpoint is cached (and overwrite it).
    verbose : bool
        Show a tqdm progress bar while training.
    cache : path or None
        Where checkpoints live (default :func:`cache_dir`).
    config, recipe : dict or None
        Overrides of single entries of :data:`CONFIG` / :data:`RECIPE` (tests use a smaller
        recipe); the cache key covers them.

    Returns
    -------
    TinyLMCheckpoint
        ``model`` (eval mode), ``manifest`` (including ``history``, the training curve, and
        ``val_bpb`` / ``unigram_bpb`` measured by :func:`evaluate`), ``path`` and ``from_cache``.

    >>> ckpt = train_tinylm(verbose=False)                              # doctest: +SKIP
    >>> ckpt.manifest["unigram_bpb"] - ckpt.manifest["val_bpb"] >= 1.5  # doctest: +SKIP
    True
    """
    torch, transformers = _require_torch()
    retrain = check_bool("retrain", retrain)
    verbose = check_bool("verbose", verbose)
    cfg = _merged(CONFIG, config, "config")
    rec = _merged(RECIPE, recipe, "recipe")
    _check_recipe(rec)
    data_sha = stdlib_text_sha256("train")
    path = _checkpoint_dir(cfg, rec, cache, data_sha)
    manifest_path = path / "manifest.json"
    if not retrain and manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("config") == cfg and manifest.get("recipe") == rec and manifest.get("train_sha256") == data_sha:
                with _hf_progress(verbose):
                    model = transformers.LlamaForCausalLM.from_pretrained(path, attn_implementation="sdpa")
                logger.info("loaded tiny LM from %s", path)
                return TinyLMCheckpoint(model.float().eval(), manifest, path, True)
        except (OSError, ValueError) as exc:  # a damaged cache entry is rebuilt
            logger.warning("ignoring damaged tiny-LM cache entry %s (%s)", path, exc)

    train = np.frombuffer(stdlib_text("train"), dtype=np.uint8)
    val = np.frombuffer(stdlib_text("validation"), dtype=np.uint8)
    longest = max(ph["context"] for ph in rec["phases"])
    if longest + 1 >= min(len(train), len(val)):
        raise ValueError(f"recipe context must be shorter than the corpus; got {longest}")
    model = make_model(config, seed=rec["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(rec["threads"])
    try:
        stats = _train(model, rec, train, val, verbose)
        eval_ctx = min(longest, cfg["max_position_embeddings"])
        val_bpb = evaluate(model, context=eval_ctx, verbose=verbose)
    finally:
        torch.set_num_threads(threads)
    manifest = {
        "config": cfg,
        "recipe": rec,
        "train_sha256": data_sha,
        "train_bytes": int(len(train)),
        "val_bytes": int(len(val)),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        **{k: v for k, v in stats.items()},
        "val_bpb": val_bpb,
        "val_context": eval_ctx,
        "unigram_bpb": unigram_bits_per_byte("validation"),
        "unigram_train_bpb": unigram_bits_per_byte("train"),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        with _hf_progress(verbose):
            model.save_pretrained(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("trained tiny LM in %.1f s (%d steps): val %.3f bits/byte, unigram %.3f",
                stats["train_seconds"], stats["steps"], val_bpb, manifest["unigram_bpb"])
    return TinyLMCheckpoint(model, manifest, path, False)


def unigram_bits_per_byte(split: str = "validation") -> float:
    """Entropy (bits/byte) of the byte frequencies of ``stdlib_text(split)``: the no-context baseline.

    >>> 4.0 < unigram_bits_per_byte("validation") < 6.0
    True
    """
    return unigram_entropy(stdlib_text(split))


def _eval_offsets(n_bytes: int, context: int, n_windows: int) -> np.ndarray:
    last = n_bytes - context - 1
    if last < 0:
        raise ValueError(f"context must be < {n_bytes - 1} for this split; got {context}")
    offsets = np.linspace(0, last, n_windows).astype(np.int64)
    return offsets - (offsets % 2)


def evaluate_nll(
    model,
    *,
    context: int = 4096,
    n_windows: int = 8,
    split: str = "validation",
    verbose: bool = False,
    data: bytes | None = None,
) -> np.ndarray:
    """Per-position next-byte NLL (nats), shape ``(n_windows, context)``.

    Windows of ``context + 1`` bytes start at ``n_windows`` evenly spaced even offsets of
    ``stdlib_text(split)``; position ``t`` is the loss of predicting byte ``t + 1`` from bytes
    ``0..t``. The model runs in its current ``attn_implementation`` (so a method swapped in by
    ``set_attn_implementation`` is what gets measured). ``data`` evaluates on other bytes instead
    of ``stdlib_text(split)`` (e.g. the same validation bytes carried to another machine).

    >>> nll = evaluate_nll(model, context=1024, n_windows=2)           # doctest: +SKIP
    >>> nll.shape                                                      # doctest: +SKIP
    (2, 1024)
    """
    torch, transformers = _require_torch()
    check_instance("model", model, torch.nn.Module, "a torch.nn.Module (a transformers causal LM)")
    context = check_int("context", context, min_value=1)
    n_windows = check_int("n_windows", n_windows, min_value=1)
    check_choice("split", split, ("train", "validation"))
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_pos is not None and context > max_pos:
        raise ValueError(f"context must be <= the model's max_position_embeddings ({max_pos}); got {context}")
    if data is None:
        data = stdlib_text(split)
    else:
        check_instance("data", data, (bytes, bytearray), "bytes or None")
    data = np.frombuffer(bytes(data), dtype=np.uint8)
    offsets = _eval_offsets(len(data), context, n_windows)
    device = next(model.parameters()).device
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    out = np.empty((n_windows, context), dtype=np.float64)
    try:
        with torch.no_grad():
            for i, off in enumerate(tqdm(offsets, desc="evaluating", disable=not verbose, leave=False)):
                window = _byte_windows(data, np.array([off]), context + 1).to(device)
                logits = model(input_ids=window[:, :-1]).logits.float()
                nll = torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="none")
                out[i] = nll.double().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def evaluate(model, *, context: int = 4096, n_windows: int = 8, split: str = "validation",
             verbose: bool = False) -> float:
    """Validation bits/byte of ``model`` over all positions of :func:`evaluate_nll`'s windows.

    >>> bpb = evaluate(train_tinylm(verbose=False).model)               # doctest: +SKIP
    >>> bpb < unigram_bits_per_byte() - 1.5                             # doctest: +SKIP
    True
    """
    nll = evaluate_nll(model, context=context, n_windows=n_windows, split=split, verbose=verbose)
    return float(nll.mean() / _LN2)


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    ck = train_tinylm(retrain="--retrain" in sys.argv)
    print(json.dumps({k: v for k, v in ck.manifest.items() if k != "history"}, indent=2))
