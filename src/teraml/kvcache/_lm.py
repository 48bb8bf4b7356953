"""The KV caches on the shared tiny LM (gate S6): quality at equal memory against the full cache.

Every method decodes the same validation bytes of ``teraml.datasets.stdlib_text("validation")`` through a
transformers ``Cache``: :class:`~transformers.DynamicCache` (the full cache, the reference),
:class:`~teraml.kvcache.hf.SubGenCache` (presets ``"paper"`` and ``"llm"``) and
:class:`~teraml.kvcache.hf.BaselineCache` (``sink_window``, ``h2o``, ``uniform``, ``key_norm`` at the same
budget B, and ``exact`` once as a sanity row).

Protocol, per method and budget. ``n_windows`` windows start at evenly spaced even offsets of the
validation bytes (as ``tinylm.evaluate_nll`` places them). Each window's first ``prefill`` bytes go
through the cache in one forward (exact: the prefill tokens are the new tokens of the first call); then
``T = max(steps, agree)`` bytes are fed one per forward. All windows run as one batch, and each window
appears twice in it:

* a *text* row is teacher-forced on the window's own bytes: the next-byte log-probabilities after each of
  the first ``steps`` fed bytes give bits/byte, and KL(full || method) against the full cache's;
* a *greedy* row is fed the full cache's greedy continuation of the same prefill (generated in the
  reference run): the fraction of the first ``agree`` positions where the method's argmax equals the
  full cache's is the greedy agreement.

Rows of a batch never interact (each store is per (sequence, kv-head)), so batching only saves forwards.
Memory is counted in stored d-vectors per (layer, sequence, kv-head): ``max`` over layers, rows, heads and
steps of ``cache.stored_vectors()`` must stay <= 2B, and ``memory_fraction`` is ``cache.memory_bytes()`` at
the end over the bytes of the full cache holding the same folded tokens. SubGen ``"llm"`` also runs
unbudgeted; its largest stored count M sets the budget ceil(M / 2) at which the baselines run again.

Example::

    import torch
    from teraml.kvcache._lm import lm_suite, table, figure
    torch.set_num_threads(2)
    res = lm_suite(quick=True)          # the cached tiny LM (else a 60-step smoke model), about 40 s
    caption, headers, rows = table(res)
    fig = figure(res)
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import warnings
from typing import Any

import numpy as np

from teraml._benchutil import check
from teraml._validation import check_bool, check_instance, check_int

__all__ = ["lm_suite", "table", "figure", "BUDGETED_METHODS", "BASELINES"]

logger = logging.getLogger(__name__)

#: Methods run at every budget B (SubGen presets first, then the baselines).
BUDGETED_METHODS = ("paper", "llm", "sink_window", "h2o", "uniform", "key_norm")
#: The eviction baselines (also rerun at B = ceil(M / 2), M the unbudgeted ``"llm"`` memory).
BASELINES = ("sink_window", "h2o", "uniform", "key_norm")

_LN2 = math.log(2.0)
#: Quick / full defaults of the sizes left as None.
_DEFAULTS = {True: dict(budgets=(64,), n_windows=2, steps=96, agree=64),
             False: dict(budgets=(64, 128), n_windows=8, steps=384, agree=256)}
_SMOKE_RECIPE = {"phases": [{"steps": 60, "batch_size": 2, "context": 512}]}


# ------------------------------------------------------------------------------------------------- setup


def _pick_model(quick: bool, verbose: bool):
    """The tiny LM as the attention benchmark picks it: the cached full model if there is one; else, in quick
    mode, a 60-step smoke model; a full run trains the full model if needed. Returns (model, info)."""
    from teraml.models import tinylm

    smoke = False
    ckpt = None
    if quick:
        try:
            ckpt = tinylm.train_tinylm(verbose=verbose) if tinylm.is_cached() else None
        except Exception:  # noqa: BLE001 - a damaged cache falls back to the smoke model
            ckpt = None
        if ckpt is None:
            smoke = True
            ckpt = tinylm.train_tinylm(recipe=_SMOKE_RECIPE, verbose=verbose)
    else:
        ckpt = tinylm.train_tinylm(verbose=verbose)
    info = {"checkpoint": str(ckpt.path), "steps": int(ckpt.manifest["steps"]), "smoke": smoke,
            "from_cache": bool(ckpt.from_cache), "val_bpb": ckpt.manifest.get("val_bpb")}
    return ckpt.model.eval(), info


def _windows(prefill: int, T: int, n_windows: int):
    """(n_windows, prefill + T + 1) int64 bytes of the validation split at evenly spaced even offsets."""
    import torch

    from teraml.datasets import stdlib_text

    data = np.frombuffer(stdlib_text("validation"), dtype=np.uint8)
    length = prefill + T + 1
    last = len(data) - length
    if last < 0:
        raise ValueError(f"prefill + max(steps, agree) must be < {len(data) - 1} bytes; got {prefill + T}")
    offsets = np.linspace(0, last, n_windows).astype(np.int64)
    offsets = offsets - (offsets % 2)
    idx = offsets[:, None] + np.arange(length)[None, :]
    return torch.from_numpy(data[idx].astype(np.int64)), offsets


def _cache_kw(model) -> str:
    """transformers 5.x renamed the cache argument of ``forward`` from ``past_key_values`` to ``cache``."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _max_stored(cache) -> int | None:
    """Max over layers, sequences and kv-heads of the folded stored vectors (None for a DynamicCache)."""
    sv = getattr(cache, "stored_vectors", None)
    if sv is None:
        return None
    vals = [int(v.max()) for v in sv().values() if v.numel()]
    return max(vals) if vals else 0


# ------------------------------------------------------------------------------------------------ decoding


class _Run:
    """What one decode of the batch gave: text-row log-probs, greedy-row argmaxes, memory, time."""

    def __init__(self, logprobs, argmax, logits, max_stored, memory_bytes, seconds, stats):
        self.logprobs, self.argmax, self.logits = logprobs, argmax, logits
        self.max_stored, self.memory_bytes, self.seconds, self.stats = max_stored, memory_bytes, seconds, stats


def _decode(model, cache, windows, *, prefill: int, T: int, greedy=None, keep_logits=False, kw="cache"):
    """Feed ``windows`` (n, prefill + T + 1) as text rows and, unless ``greedy`` is False, the greedy rows.

    ``greedy`` None: the reference run, which generates the greedy continuation (n, T + 1) with this cache
    (rows n..2n-1 are fed their own argmax); a tensor: rows n..2n-1 are teacher-forced on it; False: text
    rows only. Returns (_Run, greedy tokens or None)."""
    import torch

    n = windows.shape[0]
    with_greedy = greedy is not False
    generate = greedy is None
    batch = torch.cat([windows, windows], 0) if with_greedy else windows
    lps, amx, lgs = [], [], []
    max_stored = 0
    gen = []
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model(input_ids=batch[:, :prefill], use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1]
        if generate:
            gen.append(logits[n:].argmax(-1))
        for i in range(T):
            tok = batch[:, prefill + i].clone()
            if with_greedy:
                tok[n:] = gen[i] if generate else greedy[:, i]
            logits = model(input_ids=tok[:, None], use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1]
            logits = logits.float()
            lps.append(torch.log_softmax(logits[:n], -1))
            if with_greedy:
                a = logits[n:].argmax(-1)
                amx.append(a)
                if generate:
                    gen.append(a)
            if keep_logits:
                lgs.append(logits)
            ms = _max_stored(cache)
            if ms is not None:
                max_stored = max(max_stored, ms)
    seconds = time.perf_counter() - t0
    mem = cache.memory_bytes() if hasattr(cache, "memory_bytes") else None
    stats = None
    if hasattr(cache, "stats"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            st = cache.stats()
        if st and "clusters" in st[0]:
            stats = {"clusters_mean": float(np.mean([r["clusters"] for r in st])),
                     "clusters_max": int(max(r["clusters"] for r in st)),
                     "merges_max": int(max(r["merges"] for r in st))}
    run = _Run(torch.stack(lps, 1), torch.stack(amx, 1) if amx else None,
               torch.stack(lgs, 1) if keep_logits else None,
               max_stored if hasattr(cache, "stored_vectors") else None, mem, seconds, stats)
    return run, (torch.stack(gen, 1) if generate else None)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


# ------------------------------------------------------------------------------------------------- suite


def lm_suite(*, quick=False, budgets=None, n_windows=None, prefill=128, steps=None, agree=None, seed=0,
             verbose=False, model=None) -> dict:
    """Decode the tiny LM through every KV cache at equal memory and compare with the full cache (gate S6).

    Parameters
    ----------
    quick : smaller defaults for the sizes left as None: budgets (64,), 2 windows, 96 steps, 64 agreement
        positions (full: budgets (64, 128), 8 windows, 384 steps, 256 positions)
    budgets : the budgets B (tokens per layer, sequence and kv-head: at most 2B stored d-vectors)
    n_windows : validation windows, at evenly spaced even offsets of ``stdlib_text("validation")``
    prefill : bytes fed in one forward first (exact in every cache)
    steps : teacher-forced positions scored (bits/byte, KL)
    agree : greedy positions scored (agreement with the full cache's greedy continuation)
    seed : the seed of every SubGen and uniform cache
    verbose : tqdm progress over the runs
    model : a transformers causal LM over bytes (vocabulary >= 256), full-attention layers; None picks the
        tiny LM (the cached trained checkpoint; in quick mode a 60-step smoke model if none is cached; a full
        run trains it if needed). It is switched to ``"teraml_kv"`` attention for the run and switched back.

    Returns a JSON-serialisable dict: the sizes, ``model`` (checkpoint path, training steps, whether it is the
    smoke model), ``rows`` (one per method and budget: bits/byte, ``dbpb`` = bits/byte - the full cache's,
    KL(full || method) in nats and bits, greedy agreement, ``max_stored_vectors`` with its bound 2B,
    ``memory_bytes`` and ``memory_fraction`` of the full cache, ``seconds``), ``g1_max_abs_diff``, ``M``
    (the unbudgeted ``"llm"`` memory in stored vectors) and ``budget_M`` = ceil(M / 2), ``seconds`` and
    ``checks``: S6g1, S6ex, S6mem, S6fin, and per B S6a (``"llm"`` <= uniform), S6b (<= key_norm), S6c
    (<= sink_window + 0.05, provisional); ``"paper"`` and the ceil(M / 2) comparison are reported only.

    Cost: about (2 + 3 + 6 len(budgets) + 4) decodes of ``prefill + max(steps, agree)`` forwards of a
    batch of 2 ``n_windows`` rows.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import DynamicCache

    from teraml.kvcache.hf import BaselineCache, SubGenCache, enable

    quick = check_bool("quick", quick)
    verbose = check_bool("verbose", verbose)
    d = _DEFAULTS[quick]
    budgets = tuple(d["budgets"] if budgets is None else budgets)
    if not budgets:
        raise ValueError("budgets must be a non-empty sequence of ints >= 1; got ()")
    budgets = tuple(check_int("budgets", b, min_value=1) for b in budgets)
    n_windows = check_int("n_windows", d["n_windows"] if n_windows is None else n_windows, min_value=1)
    prefill = check_int("prefill", prefill, min_value=1)
    steps = check_int("steps", d["steps"] if steps is None else steps, min_value=1)
    agree = check_int("agree", d["agree"] if agree is None else agree, min_value=1)
    seed = check_int("seed", seed, min_value=0)
    T = max(steps, agree)

    t_start = time.perf_counter()
    if model is None:
        model, info = _pick_model(quick, verbose)
    else:
        check_instance("model", model, torch.nn.Module, "a transformers causal LM")
        info = {"checkpoint": None, "steps": None, "smoke": False, "from_cache": None, "val_bpb": None}
    config = model.config
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos is not None and prefill + T > max_pos:
        raise ValueError(f"prefill + max(steps, agree) must be <= the model's max_position_embeddings ({max_pos}); "
                         f"got {prefill + T}")
    windows, offsets = _windows(prefill, T, n_windows)
    windows = windows.to(next(model.parameters()).device)
    kw = _cache_kw(model)
    n_layers = int(config.num_hidden_layers)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    itemsize = next(model.parameters()).element_size()
    rows_in_batch = 2 * n_windows
    folded = prefill + T - 1                    # tokens in a streaming store at the end (the last is pending)
    full_vectors = 2 * folded
    full_bytes = full_vectors * n_layers * kv_heads * head_dim * itemsize * rows_in_batch

    previous = enable(model)
    was_training = model.training
    model.eval()
    bar = tqdm(total=3 + 6 * len(budgets) + 1 + len(BASELINES), desc="kvcache tiny LM", unit="run",
               disable=not verbose, leave=False)
    rows: list[dict] = []
    try:
        # the full cache: reference log-probs and the greedy continuation
        bar.set_postfix_str("full cache")
        ref, greedy = _decode(model, DynamicCache(), windows, prefill=prefill, T=T, greedy=None, keep_logits=True,
                              kw=kw)
        bar.update(1)
        ref_lp = ref.logprobs[:, :steps].double()
        ref_p = ref_lp.exp()
        ref_nll = -ref_lp.gather(-1, windows[:, prefill + 1:prefill + steps + 1, None]).squeeze(-1)
        ref_bpb = float(ref_nll.mean() / _LN2)
        ref_argmax = greedy[:, 1:agree + 1]

        def row_of(method, budget, setting, run):
            lp = run.logprobs[:, :steps].double()
            nll = -lp.gather(-1, windows[:, prefill + 1:prefill + steps + 1, None]).squeeze(-1)
            bpb = float(nll.mean() / _LN2)
            kl = float((ref_p * (ref_lp - lp)).sum(-1).mean())
            agreement = float((run.argmax[:, :agree] == ref_argmax).double().mean())
            bound = None if budget is None else 2 * budget
            mem = full_bytes if run.memory_bytes is None else int(run.memory_bytes)
            row = {"method": method, "budget": budget, "setting": setting, "bpb": bpb, "dbpb": bpb - ref_bpb,
                   "kl_nats": kl, "kl_bits": kl / _LN2, "agreement": agreement,
                   "max_stored_vectors": full_vectors if run.max_stored is None else int(run.max_stored),
                   "bound": bound,
                   "within_bound": None if bound is None or run.max_stored is None else run.max_stored <= bound,
                   "memory_bytes": mem, "full_bytes": full_bytes, "memory_fraction": mem / full_bytes,
                   "seconds": run.seconds}
            if run.stats is not None:
                row.update(run.stats)
            rows.append(row)
            logger.info("%s B=%s: dbpb %.4f, KL %.4f bits, agreement %.3f, memory %.3f, %.1f s", method, budget,
                        row["dbpb"], row["kl_bits"], agreement, row["memory_fraction"], run.seconds)
            return row

        rows.append({"method": "full (DynamicCache)", "budget": None, "setting": "reference", "bpb": ref_bpb,
                     "dbpb": 0.0, "kl_nats": 0.0, "kl_bits": 0.0, "agreement": 1.0,
                     "max_stored_vectors": full_vectors, "bound": None, "within_bound": None,
                     "memory_bytes": full_bytes, "full_bytes": full_bytes, "memory_fraction": 1.0,
                     "seconds": ref.seconds})

        def run_cache(cache, **k):
            return _decode(model, cache, windows, prefill=prefill, T=T, greedy=greedy, kw=kw, **k)[0]

        # sanity: the exact baseline equals the full cache
        bar.set_postfix_str("exact")
        row_of("exact", None, "sanity", run_cache(BaselineCache(model, "exact", budget=1)))
        bar.update(1)

        # G1: SubGen 'llm' with a recent window >= every token is exact (one window, text row only)
        bar.set_postfix_str("G1")
        g1 = SubGenCache(model, preset="llm", recent_window=prefill + T, seed=seed)
        g1_run, _ = _decode(model, g1, windows[:1], prefill=prefill, T=T, greedy=False, keep_logits=True, kw=kw)
        g1_diff = float((g1_run.logits[0] - ref.logits[0]).abs().max())
        bar.update(1)

        def make(method, budget):
            if method in ("paper", "llm"):
                return SubGenCache(model, preset=method, budget=budget, seed=seed)
            return BaselineCache(model, method, budget=budget, seed=seed)

        for B in budgets:
            for method in BUDGETED_METHODS:
                bar.set_postfix_str(f"{method} B={B}")
                row_of(method, B, "budget", run_cache(make(method, B)))
                bar.update(1)

        # unbudgeted SubGen 'llm', then the baselines at B = ceil(M / 2)
        bar.set_postfix_str("llm unbudgeted")
        unb = row_of("llm", None, "unbudgeted", run_cache(SubGenCache(model, preset="llm", seed=seed)))
        bar.update(1)
        M = int(unb["max_stored_vectors"])
        budget_M = max(1, math.ceil(M / 2))
        for method in BASELINES:
            bar.set_postfix_str(f"{method} B=ceil(M/2)={budget_M}")
            row_of(method, budget_M, "M/2", run_cache(make(method, budget_M)))
            bar.update(1)
    finally:
        bar.close()
        model.set_attn_implementation(previous if previous is not None else "sdpa")
        model.train(was_training)

    res: dict[str, Any] = {
        "quick": quick, "budgets": list(budgets), "n_windows": n_windows, "prefill": prefill, "steps": steps,
        "agree": agree, "decode_steps": T, "seed": seed, "offsets": [int(o) for o in offsets],
        "batch_rows": rows_in_batch, "model": info, "n_layers": n_layers, "kv_heads": kv_heads,
        "head_dim": head_dim, "full_vectors": full_vectors, "full_bytes": full_bytes, "ref_bpb": ref_bpb,
        "g1_max_abs_diff": g1_diff, "g1_seconds": g1_run.seconds, "M": M, "budget_M": budget_M, "rows": rows,
    }
    res["checks"] = _checks(res)
    res["seconds"] = time.perf_counter() - t_start
    return res


def _find(rows, method, budget, setting):
    return next(r for r in rows if r["method"] == method and r["budget"] == budget and r["setting"] == setting)


def _checks(res: dict) -> list[dict]:
    rows = res["rows"]
    smoke = res["model"]["smoke"]
    checks = []
    g1 = res["g1_max_abs_diff"]
    checks.append(check("S6g1", "G1: SubGen 'llm' with recent_window >= prefill + steps vs DynamicCache, one window: "
                                "max |logit difference|", g1, None, None, "<= 1e-4", g1 <= 1e-4))
    ex = _find(rows, "exact", None, "sanity")["dbpb"]
    checks.append(check("S6ex", "exact baseline (BaselineCache 'exact') vs DynamicCache: |delta bits/byte|",
                        abs(ex), None, None, "<= 1e-4", abs(ex) <= 1e-4))
    bounded = [r for r in rows if r["within_bound"] is not None]
    worst = max(bounded, key=lambda r: r["max_stored_vectors"] / r["bound"])
    checks.append(check("S6mem", "stored vectors <= 2B for every budgeted method and decode step (worst: "
                                 f"{worst['method']} B={worst['budget']})", worst["max_stored_vectors"], worst["bound"],
                        worst["max_stored_vectors"] / worst["bound"], "<= 2B", all(r["within_bound"] for r in bounded)))
    keys = ("bpb", "dbpb", "kl_nats", "kl_bits", "agreement", "memory_fraction")
    bad = [f"{r['method']} B={r['budget']}" for r in rows if not all(_finite(r[k]) for k in keys)]
    checks.append(check("S6fin", "every row's bits/byte, KL, agreement and memory are finite", len(rows) - len(bad),
                        len(rows), None, "all", not bad, note=", ".join(bad)))
    note = "smoke model: reported only" if smoke else ""
    for B in res["budgets"]:
        llm = _find(rows, "llm", B, "budget")["dbpb"]
        for cid, base, margin, extra in (("S6a", "uniform", 0.0, ""), ("S6b", "key_norm", 0.0, ""),
                                         ("S6c", "sink_window", 0.05, " (provisional)")):
            other = _find(rows, base, B, "budget")["dbpb"]
            thr = f"<= {base}" + (f" + {margin}" if margin else "")
            checks.append(check(cid, f"B={B}: delta bits/byte of SubGen 'llm' <= {base}'s"
                                     + (f" + {margin}" if margin else "") + extra, llm, other, None, thr,
                                None if smoke else llm <= other + margin, note=note))
        paper = _find(rows, "paper", B, "budget")["dbpb"]
        uni = _find(rows, "uniform", B, "budget")["dbpb"]
        checks.append(check("S6p", f"B={B}: delta bits/byte of SubGen 'paper' vs uniform's (reported, not gated)",
                            paper, uni, None, "reported", None))
    unb = _find(rows, "llm", None, "unbudgeted")
    bm = res["budget_M"]
    best = min((_find(rows, m, bm, "M/2") for m in BASELINES), key=lambda r: r["dbpb"])
    checks.append(check("S6M", f"unbudgeted SubGen 'llm' (M = {res['M']} stored vectors) vs the best baseline at "
                               f"B = ceil(M/2) = {bm} ({best['method']}): delta bits/byte (reported)",
                        unb["dbpb"], best["dbpb"], None, "reported", None))
    return checks


# ------------------------------------------------------------------------------------------------ report


def _label(r) -> str:
    if r["setting"] == "unbudgeted":
        return "llm (unbudgeted)"
    return r["method"]


def table(res: dict) -> tuple[str, list[str], list[list[Any]]]:
    """The report table ``(caption, headers, rows)`` (a ``DemoSection.tables`` entry): per method and budget,
    delta bits/byte and KL vs the full cache, greedy agreement, memory fraction, stored vectors, seconds."""
    headers = ["method", "B", "setting", "bits/byte", "delta bits/byte", "KL (bits)", "agreement",
               "memory / full", "max stored vectors (<= 2B)", "seconds"]
    out = []
    for r in res["rows"]:
        out.append([_label(r), r["budget"], r["setting"], r["bpb"], r["dbpb"], r["kl_bits"], r["agreement"],
                    r["memory_fraction"], r["max_stored_vectors"], r["seconds"]])
    m = res["model"]
    what = (f"checkpoint {m['checkpoint']} ({m['steps']} steps{', smoke model' if m['smoke'] else ''})"
            if m["checkpoint"] else "the given model")
    caption = (f"S6 tiny LM, {what}: {res['n_windows']} validation windows, {res['prefill']}-byte prefill, "
               f"{res['steps']} teacher-forced bytes (bits/byte, KL(full || method)), greedy agreement over "
               f"{res['agree']} bytes; memory at the end vs the full cache ({res['full_vectors']} vectors per layer "
               f"and kv-head); baselines rerun at B = ceil(M/2) = {res['budget_M']} (M = {res['M']}, the unbudgeted "
               "'llm' memory); seconds per decode of the whole batch")
    return caption, headers, out


_MARKERS = {"paper": "v", "llm": "o", "llm (unbudgeted)": "*", "sink_window": "s", "h2o": "^", "uniform": "D",
            "key_norm": "P", "exact": "x", "full (DynamicCache)": "X"}


def figure(res: dict):
    """Quality vs memory: delta bits/byte against the full cache (y) over stored vectors as a fraction of the
    full cache (x), one marker series per method (every budget, and the baselines at ceil(M/2))."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    series: dict[str, list] = {}
    for r in res["rows"]:
        if r["setting"] in ("reference", "sanity"):
            continue
        series.setdefault(_label(r), []).append(r)
    for i, (name, rs) in enumerate(series.items()):
        rs = sorted(rs, key=lambda r: r["memory_fraction"])
        ax.plot([r["memory_fraction"] for r in rs], [r["dbpb"] for r in rs], marker=_MARKERS.get(name, "o"),
                ls=":", lw=0.8, color=f"C{i}", label=name, ms=7)
        for r in rs:
            ax.annotate(f"B={r['budget']}" if r["budget"] is not None else "", (r["memory_fraction"], r["dbpb"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)     # the good methods sit near 0, 'paper' near 7
    ys = [r["dbpb"] for rs in series.values() for r in rs] or [0.0]
    ax.set_ylim(min(2 * min(ys), -0.005), max(2 * max(ys), 0.05))
    ax.set_xlabel("stored vectors / full cache's (end of decoding)")
    ax.set_ylabel("delta bits/byte vs full cache (symlog; lower is better)")
    ax.set_title(f"tiny LM: quality vs KV memory ({res['n_windows']} windows, {res['steps']} steps)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

