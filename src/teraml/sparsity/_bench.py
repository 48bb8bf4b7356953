"""Block-sparse pruning benchmark: SA++ vs ACDC, magnitude, gradual magnitude, PowerProp and the torch.ao peers.

D1: digits MLP (64-256-256-10), the two hidden layers pruned, blocks {4, 8, 16} x sparsity {90, 95, 98 %}, Adam,
30 epochs, preset "imagenet", every method from a copy of one initialized model with one data order; the
torch.ao peers (WeightNormSparsifier, CubicSL) and torch-pruning (channels, optional) in the same loop. D2:
the Criteo-like field-embedding MLP, only its first layer (624 -> 128) pruned, blocks {8, 16}, preset
"criteo", acdc in both modes, plus a long-phase variant. Speed: the exported layers against ``F.linear`` on
the same weights, the digits MLP end to end, and the CPU kernel table; one thread.

Run by ``teraml bench sparsity [--quick]``; ``quick`` (the ``teraml demo`` section) runs 98 % only: D1 at 8x8 with
three seeds, D2 at 16x16 with one, and two speed rows.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from teraml._benchutil import check as _check
from teraml._demo import DemoContext, DemoSection, SummaryRow
from teraml.sparsity import _experiment as ex
from teraml.sparsity._speed import kernel_table, layer_speed, single_thread
from teraml.sparsity.export import export_block_sparse


def _log(verbose, *a):
    if verbose:
        print("[sparsity]", *a, flush=True)


def _key(block, s):
    return f"{block}x{block}@{round(s * 100)}"


# ------------------------------------------------------------------------------------------------ peers


def torch_pruning_run(data: dict, seed: int, target_kept: float) -> dict | None:
    """torch-pruning's channel pruning of the hidden layers to about ``target_kept`` weights of layers 0 and 2.

    Dense training for 85 % of the steps, one ``MetaPruner`` step (group L2 magnitude), fine-tuning for the
    rest (a fresh Adam, as every method's phases start with an empty state). None if not installed.
    """
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    cfg = ex.DIGITS
    model = ex.digits_mlp(seed)
    n = data["train"][0].shape[0]
    total = ex.n_steps(n, cfg["batch"], cfg["epochs"])
    switch = math.floor(0.85 * total + 0.5)
    # kept weights of the two pruned layers with h hidden units: 64 h + h^2
    h = int((-64 + math.sqrt(64**2 + 4 * target_kept)) / 2)
    ratio = 1 - h / 256
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    t0 = time.perf_counter()
    for step, idx in enumerate(ex.batches(n, cfg["batch"], cfg["epochs"], seed)):
        if step == switch:
            pruner = tp.pruner.MetaPruner(model, data["train"][0][:2],
                                          importance=tp.importance.GroupMagnitudeImportance(p=2),
                                          pruning_ratio=ratio, ignored_layers=[model[4]])
            pruner.step()
            opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        loss = nn.functional.cross_entropy(model(data["train"][0][idx]), data["train"][1][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    kept = model[0].weight.numel() + model[2].weight.numel()
    return {**ex.evaluate(model, data), "kept_weights": kept, "hidden": model[0].out_features,
            "seconds": time.perf_counter() - t0, "model": model}


# ------------------------------------------------------------------------------------------------ D1, D2


def digits_grid(blocks, sparsities, methods, seeds, verbose) -> dict:
    data = ex.digits_data()
    out: dict[str, Any] = {"dense": [], "cells": {}, "torch_pruning": {}}
    models = {}
    for seed in seeds:
        out["dense"].append(ex.train(data, ex.digits_mlp(seed), "dense", sparsity=0.0, block=8, seed=seed,
                                     config=ex.DIGITS)["accuracy"])
    _log(verbose, f"D1 dense: {np.round(out['dense'], 4).tolist()}")
    for b in blocks:
        for s in sparsities:
            cell = {}
            for m in methods:
                runs = []
                for seed in seeds:
                    r = ex.train(data, ex.digits_mlp(seed), m, sparsity=s, block=b, seed=seed, config=ex.DIGITS)
                    runs.append(r)
                    if m == "sapp" and b == 8 and seed == seeds[0]:
                        models[s] = r["model"]
                accs = [r["accuracy"] for r in runs]
                rep = runs[0]["report"] or {}
                pruned = {k: v for k, v in rep.items() if v.get("pruned", True)}
                real = [_real_sparsity(r["model"]) for r in runs]
                cell[m] = {"accuracy": accs, "mean": float(np.mean(accs)), "min": float(np.min(accs)),
                           "pruned_layers": sorted(pruned), "nominal_sparsity": s, "real_sparsity": real}
            _log(verbose, f"D1 {_key(b, s)}: " + ", ".join(f"{m} {cell[m]['mean']:.4f}" for m in methods))
            out["cells"][_key(b, s)] = cell
            if b == 8 and "sapp" in methods:
                W0, W2 = models[s][0].weight, models[s][2].weight
                kept = int((W0 != 0).sum() + (W2 != 0).sum())
                tps = [torch_pruning_run(data, seed, kept) for seed in seeds]
                if tps[0] is not None:
                    out["torch_pruning"][_key(b, s)] = {
                        "accuracy": [r["accuracy"] for r in tps], "mean": float(np.mean([r["accuracy"] for r in tps])),
                        "kept_weights": tps[0]["kept_weights"], "sapp_kept_weights": kept, "hidden": tps[0]["hidden"],
                        "latency": _latency_pair(tps[0]["model"], models[s], data)}
    out["sapp_models"] = models
    return out


def _real_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over the weights of every Linear and Conv2d of the model (the output layer and
    the layers left dense for having fewer than min_blocks blocks included): the sparsity the model really has."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / total


def _latency_pair(small_dense: nn.Module, sparse_model: nn.Module, data, batch=512) -> dict:
    """Batch-512 time of the channel-pruned dense MLP and of SA++'s exported model (one thread)."""
    from teraml._benchutil import measure

    x = data["test"][0][:batch].repeat(2, 1)[:batch]
    with single_thread(), torch.no_grad():
        exported = export_block_sparse(sparse_model, 8, min_speedup=1.0)
        t = measure(lambda: small_dense(x), lambda: exported(x), repeats=7, min_total=0.2)
    return {"torch_pruning_s": t.seconds[0], "sapp_export_s": t.seconds[1]}


def criteo_grid(blocks, sparsities, methods, seeds, verbose, config=ex.CRITEO) -> dict:
    data = ex.criteo_data()
    out: dict[str, Any] = {"dense": [], "cells": {}}
    for seed in seeds:
        base = ex.criteo_net(data, seed)
        out["dense"].append(ex.train(data, base, "dense", sparsity=0.0, block=8, seed=seed, config=config)["log_loss"])
    _log(verbose, f"D2 dense: {np.round(out['dense'], 4).tolist()}")
    for b in blocks:
        for s in sparsities:
            cell = {}
            for m in methods:
                meth, pw = ("acdc", "mask") if m == "acdc_mask" else (m, "zero")
                runs = [ex.train(data, ex.criteo_net(data, seed), meth, sparsity=s, block=b, seed=seed, config=config,
                                 pruned_weights=pw) for seed in seeds]
                ll = [r["log_loss"] for r in runs]
                w = [r["model"].mlp[0].weight for r in runs]
                cell[m] = {"log_loss": ll, "mean": float(np.mean(ll)), "max": float(np.max(ll)), "nominal_sparsity": s,
                           "real_sparsity_first_layer": [float((x == 0).float().mean()) for x in w]}
            _log(verbose, f"D2 {_key(b, s)}: " + ", ".join(f"{m} {cell[m]['mean']:.4f}" for m in methods))
            out["cells"][_key(b, s)] = cell
    return out


# ------------------------------------------------------------------------------------------------ speed


def mlp_end_to_end(models: dict, batches=(1, 16, 256, 512)) -> dict:
    """The trained SA++ digits MLPs (8x8) exported, against the same weights dense, at each batch, one thread."""
    from teraml._benchutil import measure

    out = {}
    for s, model in models.items():
        model = copy.deepcopy(model).eval()
        with single_thread(), torch.no_grad():
            exported = export_block_sparse(model, 8, min_speedup=1.0)
            per = {}
            for batch in batches:
                x = torch.rand(batch, 64, generator=torch.Generator().manual_seed(batch))
                t = measure(lambda: model(x), lambda: exported(x), repeats=7, min_total=0.3)
                per[str(batch)] = {"dense_s": t.seconds[0], "export_s": t.seconds[1],
                                   "speedup": t.seconds[0] / t.seconds[1],
                                   "max_abs_err": float((model(x) - exported(x)).abs().max())}
        out[str(s)] = per
    return out


def speed(quick: bool, verbose: bool) -> dict:
    rows = []
    grid = ([(1024, 256, 16, 0.98), (256, 512, 8, 0.90)] if quick else
            [(n, batch, b, s) for n, batch in ((1024, 256), (256, 512)) for b in (8, 16) for s in (0.90, 0.95, 0.98)])
    for n, batch, b, s in grid:
        r = layer_speed(n, n, b, s, batch, repeats=3 if quick else 7, inner=5, min_speedup=1.0)
        rows.append(r)
        _log(verbose, f"speed {n}x{n} batch {batch} {b}x{b} {s:.0%}: {r['speedup']:.2f}x dense")
    kernels = [] if quick else kernel_table(1024, 1024, 8, 0.9, 256)
    return {"layers": rows, "kernels": kernels}


# ------------------------------------------------------------------------------------------------ run


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1; got {text!r}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--seeds", type=_positive_int, default=3, help="seeds per cell (default 3)")


def run(*, quick=False, verbose=True, seeds=3) -> DemoSection:
    """The benchmark (``quick``: a small subset for the demo); one torch thread throughout."""
    from teraml._validation import check_int

    seeds = check_int("seeds", seeds, min_value=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return _section(_run(quick=quick, verbose=verbose, seeds=seeds), quick)
    finally:
        torch.set_num_threads(previous)


def _run(*, quick, verbose, seeds=3) -> dict:
    res: dict[str, Any] = {"quick": quick}
    seed_list = list(range(seeds))      # the thresholds are means over seeds: one seed swings by +-5 points
    d1_methods = ["magnitude", "acdc", "sapp"] if quick else ["magnitude", "gmp", "powerprop", "acdc", "sapp",
                                                               "ao_magnitude", "ao_gmp"]
    d1 = digits_grid([8] if quick else [4, 8, 16], [0.98] if quick else [0.90, 0.95, 0.98], d1_methods,
                     seed_list, verbose)
    models = d1.pop("sapp_models")
    res["d1"] = d1
    d2_methods = ["magnitude", "acdc", "sapp"] if quick else ["magnitude", "gmp", "powerprop", "acdc", "acdc_mask",
                                                               "sapp"]
    res["d2"] = criteo_grid([16] if quick else [8, 16], [0.98] if quick else [0.90, 0.95, 0.98], d2_methods,
                            seed_list[:1] if quick else seed_list, verbose)
    if not quick:
        res["d2_long"] = criteo_grid([16], [0.95, 0.98], ["acdc", "sapp"], seed_list, verbose, config=ex.CRITEO_LONG)
    res["speed"] = speed(quick, verbose)
    res["speed"]["mlp"] = mlp_end_to_end(models)
    res["checks"] = checks(res)
    return res


def checks(res: dict) -> list[dict]:
    """The acceptance checks of a (saved) benchmark result."""
    out: list[dict] = []
    quick = res["quick"]
    d1 = res["d1"]
    cells = d1["cells"]
    n_seeds = len(d1["dense"])
    dense = float(np.mean(d1["dense"]))
    core = [_key(b, s) for b in ((8,) if quick else (4, 8)) for s in ((0.98,) if quick else (0.95, 0.98))]
    gap = float(np.mean([cells[c]["sapp"]["mean"] - cells[c]["acdc"]["mean"] for c in core]))
    out.append(_check("D1a", f"digits: SA++ - ACDC accuracy, mean over {', '.join(core)} ({n_seeds} seeds)",
                      float(np.mean([cells[c]["sapp"]["mean"] for c in core])),
                      float(np.mean([cells[c]["acdc"]["mean"] for c in core])), gap, ">= +0.020", gap >= 0.02))
    for c in [k for k in cells if k.endswith("@98")]:
        g = cells[c]["sapp"]["mean"] - cells[c]["magnitude"]["mean"]
        both = len(cells[c]["sapp"]["pruned_layers"]) == 2
        label = f"digits {c}: SA++ - magnitude accuracy"
        if both:
            out.append(_check("D1m", label, cells[c]["sapp"]["mean"], cells[c]["magnitude"]["mean"], g, ">= +0.10",
                              g >= 0.10))
        else:   # at 16x16 the 64x256 layer has 64 < min_blocks blocks and stays dense: the model is far less sparse
            real = float(np.mean(cells[c]["sapp"]["real_sparsity"]))
            out.append(_check("D1m", label + f" (one layer pruned, real sparsity {real:.2f}: reported)",
                              cells[c]["sapp"]["mean"], cells[c]["magnitude"]["mean"], g, "reported", None))
    for c in [k for k in cells if k.endswith("@90")]:
        g = cells[c]["sapp"]["mean"] - dense
        out.append(_check("D1d", f"digits {c}: SA++ - dense accuracy", cells[c]["sapp"]["mean"], dense, g,
                          ">= -0.03", g >= -0.03))
    worst = min(cells, key=lambda c: cells[c]["sapp"]["mean"] - cells[c]["acdc"]["mean"])
    g = cells[worst]["sapp"]["mean"] - cells[worst]["acdc"]["mean"]
    out.append(_check("D1any", f"digits, every cell: SA++ - ACDC (worst cell {worst})", cells[worst]["sapp"]["mean"],
                      cells[worst]["acdc"]["mean"], g, ">= -0.01", g >= -0.01))
    if "ao_magnitude" in next(iter(cells.values())):
        same = all(cells[c]["magnitude"]["accuracy"] == cells[c]["ao_magnitude"]["accuracy"] for c in cells)
        out.append(_check("D1ao", "digits: magnitude equals torch.ao WeightNormSparsifier in every cell and seed",
                          None, None, None, "equal", same))
        gdiff = max(abs(cells[c]["gmp"]["mean"] - cells[c]["ao_gmp"]["mean"]) for c in cells)
        out.append(_check("D1aog", "digits: gmp vs torch.ao WeightNormSparsifier + CubicSL, largest accuracy gap",
                          gdiff, None, None, "reported", None))
    c2 = res["d2"]["cells"]
    d2_dense = float(np.mean(res["d2"]["dense"]))
    for c in [k for k in c2 if not k.endswith("@90")]:
        base = min(c2[c]["acdc"]["mean"], c2[c]["magnitude"]["mean"])
        out.append(_check("D2", f"criteo-like {c}: SA++ log-loss vs min(ACDC, magnitude)", c2[c]["sapp"]["mean"],
                          base, c2[c]["sapp"]["mean"] - base, "<= -0.005", c2[c]["sapp"]["mean"] <= base - 0.005))
    for c in [k for k in c2 if k.endswith("@90")]:
        out.append(_check("D2d", f"criteo-like {c}: SA++ log-loss vs dense", c2[c]["sapp"]["mean"], d2_dense,
                          c2[c]["sapp"]["mean"] - d2_dense, "<= +0.01", c2[c]["sapp"]["mean"] <= d2_dense + 0.01))
    for c, cell in res.get("d2_long", {}).get("cells", {}).items():
        out.append(_check("D2long", f"criteo-like long phases {c}: SA++ log-loss vs ACDC", cell["sapp"]["mean"],
                          cell["acdc"]["mean"], cell["sapp"]["mean"] - cell["acdc"]["mean"], "<= +0.002",
                          cell["sapp"]["mean"] <= cell["acdc"]["mean"] + 0.002))
    sp = res["speed"]
    bounds = {(1024, 0.90): 2.0, (1024, 0.98): 5.0, (256, 0.90): 1.5, (256, 0.98): 3.0}
    for r in sp["layers"]:
        n, s = r["out_features"], r["sparsity"]
        b = r["block_shape"][0]
        bound = bounds.get((n, s))
        label = f"{n}x{n} layer, batch {r['batch']}, {b}x{b} blocks, {s:.0%}: dense time / exported"
        out.append(_check("S", label, r["ours_s"], r["dense_s"], r["speedup"], f">= {bound}" if bound else "reported",
                          r["speedup"] >= bound if bound else None))
    for s, per in sp["mlp"].items():
        for batch, r in per.items():
            bound = {"0.95": 1.1, "0.98": 1.5}.get(s) if batch == "512" else None
            out.append(_check("S2e", f"digits MLP end to end (SA++ 8x8 at {float(s):.0%}), batch {batch}: dense / "
                                     "exported", r["export_s"], r["dense_s"], r["speedup"],
                              f">= {bound}" if bound else "reported", r["speedup"] >= bound if bound else None))
    worst = min([r["speedup"] for r in sp["layers"]]
                + [r["speedup"] for per in sp["mlp"].values() for b, r in per.items() if int(b) >= 256])
    out.append(_check("S0.9", "every export above at batch >= 256 (each with min_speedup=1.0, timed at batch 256, "
                              "so it falls back to dense where slower there; batches 1 and 16 are reported above): "
                              "slowest speed-up over dense", worst, None, worst, ">= 0.9", worst >= 0.9))
    return out


# ------------------------------------------------------------------------------------------------ report


def _section(res, quick) -> DemoSection:
    import matplotlib.pyplot as plt

    sec = DemoSection(title="Block-sparse pruning with SequentialAttention++ (teraml.sparsity)", results=res,
                      text=("SA++ (Yasuda et al., NeurIPS 2024) learns a softmax weight per weight block inside "
                            "ACDC-style dense / sparsify / sparse phases. D1: digits MLP, both hidden layers pruned "
                            "(accuracy); D2: Criteo-like embeddings MLP, first layer pruned (log-loss); every method "
                            "from the same initial model and data order. Speed: exported block-sparse layers vs "
                            "F.linear on the same weights, one thread."))
    d1 = res["d1"]
    methods = list(next(iter(d1["cells"].values())))
    rows = [[c] + [f"{d1['cells'][c][m]['mean']:.4f}" for m in methods]
            + [f"{d1['torch_pruning'][c]['mean']:.4f}" if c in d1["torch_pruning"] else ""]
            for c in d1["cells"]]
    sec.tables = [(f"D1 digits accuracy (mean over seeds; dense {np.mean(d1['dense']):.4f})",
                   ["blocks@sparsity"] + methods + ["torch-pruning (channels)"], rows)]
    d2 = res["d2"]
    m2 = list(next(iter(d2["cells"].values())))
    sec.tables.append((f"D2 Criteo-like test log-loss (mean over seeds; dense {np.mean(d2['dense']):.4f})",
                       ["blocks@sparsity"] + m2, [[c] + [f"{d2['cells'][c][m]['mean']:.4f}" for m in m2]
                                                  for c in d2["cells"]]))
    sec.tables.append(("speed (one thread): exported layer vs F.linear", ["layer", "batch", "blocks", "sparsity",
                                                                           "dense ms", "exported ms", "speed-up"],
                       [[f"{r['out_features']}x{r['in_features']}", r["batch"], f"{r['block_shape'][0]}",
                         f"{r['sparsity']:.0%}", f"{r['dense_s'] * 1e3:.3f}", f"{r['ours_s'] * 1e3:.3f}",
                         f"{r['speedup']:.2f}"] for r in res["speed"]["layers"]]))
    if res["speed"]["kernels"]:
        sec.tables.append(("CPU kernels, 1024x1024, batch 256, 8x8 blocks, 90 %", ["kernel", "ms", "speed-up"],
                           [[k["kernel"], f"{k['seconds'] * 1e3:.3f}", f"{k['speedup']:.2f}"]
                            for k in res["speed"]["kernels"]]))
    sec.tables.append(("checks", ["id", "criterion", "ours", "baseline", "ratio", "threshold", "result"],
                       [[c["id"], c["criterion"], c["ours"], c["baseline"], c["ratio"], c["threshold"],
                         "----" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")] for c in res["checks"]]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (data, metric, title) in zip(axes, ((d1, "accuracy", "D1 digits, 8x8 blocks"),
                                                 (d2, "log_loss", "D2 Criteo-like, 16x16 blocks"))):
        block = "8x8" if data is d1 else "16x16"
        keys = [c for c in data["cells"] if c.startswith(block + "@")]
        xs = [int(c.split("@")[1]) for c in keys]
        for m in data["cells"][keys[0]]:
            ax.plot(xs, [data["cells"][c][m]["mean"] for c in keys], marker="o", label=m)
        ax.axhline(float(np.mean(data["dense"])), color="gray", ls="--", lw=1, label="dense")
        ax.set_xlabel("block sparsity (%)")
        ax.set_ylabel("test accuracy" if metric == "accuracy" else "test log-loss")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    figs = [("accuracy (log-loss) vs sparsity", fig)]
    fig2, ax2 = plt.subplots(figsize=(6, 4))
    labels = [f"{r['out_features']}²/{r['block_shape'][0]}/{r['sparsity']:.0%}" for r in res["speed"]["layers"]]
    ax2.bar(range(len(labels)), [r["speedup"] for r in res["speed"]["layers"]])
    ax2.axhline(1.0, color="gray", ls="--", lw=1)
    ax2.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
    ax2.set_ylabel("speed-up over dense F.linear")
    ax2.set_title("exported block-sparse layers, one thread")
    fig2.tight_layout()
    figs.append(("speed-up of the export", fig2))
    sec.figures = figs
    return sec


def demo(ctx: DemoContext) -> DemoSection:
    sec = run(quick=True, verbose=ctx.verbose)
    res = sec.results
    c = res["d1"]["cells"]["8x8@98"]
    d = res["d2"]["cells"]["16x16@98"]
    s = res["speed"]["layers"][0]
    sec.summary = [
        SummaryRow("sparsity", "digits MLP, 98 % of 8x8 blocks pruned: accuracy, SA++ vs ACDC",
                   f"{c['sapp']['mean']:.3f}", f"{c['acdc']['mean']:.3f}", c["sapp"]["mean"] / c["acdc"]["mean"]),
        SummaryRow("sparsity", "Criteo-like, 98 % of 16x16 blocks: log-loss, SA++ vs ACDC",
                   f"{d['sapp']['mean']:.4f}", f"{d['acdc']['mean']:.4f}", d["sapp"]["mean"] / d["acdc"]["mean"]),
        SummaryRow("sparsity", f"1024x1024 layer, {s['block_shape'][0]}x{s['block_shape'][0]} blocks at "
                   f"{s['sparsity']:.0%}, batch {s['batch']}: time, exported vs dense",
                   f"{s['ours_s'] * 1e3:.3f} ms", f"{s['dense_s'] * 1e3:.3f} ms", s["ours_s"] / s["dense_s"])]
    return sec
