"""``teraml demo`` section: the tiny byte-level LM, trained once and cached."""

from __future__ import annotations

import math

import numpy as np

from teraml._demo import DemoContext, DemoSection, SummaryRow


def run(ctx: DemoContext) -> DemoSection:
    import matplotlib.pyplot as plt

    from teraml.models import tinylm

    ckpt = tinylm.train_tinylm(retrain=ctx.retrain, verbose=ctx.verbose)
    m = ckpt.manifest
    ctx_len = m["val_context"]
    nll = tinylm.evaluate_nll(ckpt.model, context=ctx_len, n_windows=8, verbose=ctx.verbose)
    bpb = float(nll.mean() / math.log(2))
    unigram = m["unigram_bpb"]

    hist = m["history"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    steps = [h["step"] for h in hist]
    axes[0].plot(steps, [h["train_bpb"] for h in hist], lw=0.6, alpha=0.7, label="train (one batch)")
    vs = [(h["step"], h["val_bpb"]) for h in hist if "val_bpb" in h]
    if vs:
        axes[0].plot(*zip(*vs), "o-", label="validation (4 x 1024 bytes)")
    axes[0].axhline(unigram, color="k", ls="--", lw=1, label=f"unigram entropy {unigram:.2f}")
    switch = [h["step"] for h in hist if h["context"] != hist[0]["context"]]
    if switch:
        axes[0].axvline(switch[0], color="gray", lw=0.8, ls=":", label=f"context {hist[0]['context']} -> {hist[-1]['context']}")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("bits/byte")
    axes[0].set_ylim(0, max(6.0, unigram + 0.5))
    axes[0].legend()
    axes[0].set_title(f"training curve ({m['steps']} steps, {m['train_seconds']:.0f} s)")
    edges = np.unique(np.geomspace(1, ctx_len, 25).astype(int))
    per_pos = nll.mean(axis=0) / math.log(2)
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    vals = [per_pos[a - 1:b - 1].mean() for a, b in zip(edges[:-1], edges[1:])]
    axes[1].semilogx(mids, vals, "o-")
    axes[1].axhline(unigram, color="k", ls="--", lw=1)
    axes[1].set_xlabel("position in the window (bytes of context)")
    axes[1].set_ylabel("bits/byte")
    axes[1].set_title("validation loss by position: the model uses long context")
    fig.tight_layout()

    rows = [
        ["parameters", m["n_parameters"]],
        ["training steps (planned)", f"{m['steps']} ({m['planned_steps']})"],
        ["training time (s)", m["train_seconds"]],
        [f"validation bits/byte (context {ctx_len}, 8 windows)", bpb],
        ["unigram byte entropy (bits/byte)", unigram],
        ["gap below unigram (bits/byte)", unigram - bpb],
        ["perplexity e^NLL", float(math.exp(nll.mean()))],
        ["checkpoint", str(ckpt.path)],
        ["loaded from cache", ckpt.from_cache],
    ]
    return DemoSection(
        title="Tiny byte-level LM (transformers LlamaForCausalLM)",
        summary=[SummaryRow("tinylm", "validation bits/byte vs unigram entropy (lower is better)",
                            f"{bpb:.3f}", f"{unigram:.3f}", bpb / unigram)],
        text=("A 4-layer byte-level Llama (GQA, 4 query and 2 key heads) trained on Python's standard-library "
              "source; the shared real model on which the attention and KV-cache methods are measured."),
        tables=[("tiny LM", ["quantity", "value"], rows)],
        figures=[("tiny-LM training curve and loss by position", fig)],
        results={"val_bpb": bpb, "unigram_bpb": unigram, "train_seconds": m["train_seconds"], "steps": m["steps"],
                 "from_cache": ckpt.from_cache, "path": str(ckpt.path)},
    )
