"""``teraml demo`` section: a tour of the offline datasets."""

from __future__ import annotations

import time

import numpy as np

from teraml._demo import DemoContext, DemoSection, SummaryRow


def run(ctx: DemoContext) -> DemoSection:
    import matplotlib.pyplot as plt

    from teraml import datasets as ds

    t0 = time.perf_counter()
    rows = []
    loaded = {}
    for name in ("digits", "diabetes", "breast_cancer", "wine"):
        X, y = ds.load(name)
        loaded[name] = (X, y)
        target = f"{len(np.unique(y))} classes" if name != "diabetes" else f"regression, y in [{y.min():.0f}, {y.max():.0f}]"
        rows.append([name, f"{X.shape[0]} x {X.shape[1]}", target, "scikit-learn bundled copy"])
    Xg, yg = ds.make_gaussian_mixture(1500, 2, 5, cluster_std=1.5, random_state=0)
    rows.append(["gaussian_mixture", f"{Xg.shape[0]} x {Xg.shape[1]}", "5 components", "seeded generator"])
    src, dst, w, labels = ds.make_planted_partition_graph(1000, 20, random_state=0)
    rows.append(["planted_partition_graph", f"{labels.size} nodes, {src.size} edges", "20 planted blocks",
                 "seeded generator"])
    train, val = ds.stdlib_text("train"), ds.stdlib_text("validation")
    n_files = len(ds.stdlib_files())
    h_train = ds.unigram_entropy(train)
    rows.append(["stdlib_text", f"{len(train) / 1e6:.2f} MB train / {len(val) / 1e6:.2f} MB val",
                 f"{n_files} files; unigram {h_train:.3f} bits/byte", "this interpreter's stdlib"])
    seconds = time.perf_counter() - t0

    figs = []
    fig, axes = plt.subplots(2, 8, figsize=(8, 2.3))
    Xd, yd = loaded["digits"]
    for ax, i in zip(axes.ravel(), range(16)):
        ax.imshow(Xd[i].reshape(8, 8), cmap="gray_r")
        ax.set_title(str(yd[i]), fontsize=8)
        ax.axis("off")
    figs.append(("digits: the first 16 images with their labels", fig))

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].scatter(Xg[:, 0], Xg[:, 1], c=yg, s=5, cmap="tab10")
    axes[0].set_title("gaussian_mixture (5 components)")
    order = np.argsort(labels, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    axes[1].scatter(rank[src], rank[dst], s=0.3, c=w, cmap="viridis")
    axes[1].set_title("planted_partition_graph: edges, nodes sorted by block")
    axes[1].set_aspect("equal")
    counts = np.bincount(np.frombuffer(train, dtype=np.uint8), minlength=256)
    axes[2].bar(np.arange(256), counts / counts.sum(), width=1.0)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("byte value")
    axes[2].set_title(f"stdlib_text byte frequencies ({h_train:.2f} bits/byte)")
    fig.tight_layout()
    figs.append(("synthetic generators and the text corpus", fig))

    return DemoSection(
        title="Offline datasets",
        summary=[SummaryRow("datasets", "load every offline dataset (no download)", f"{len(rows)} loaded",
                            "–", None)],
        text=(f"Every dataset teraml uses is offline: scikit-learn's bundled copies, seeded generators and "
              f"Python's own standard-library source ({n_files} files). Loading all took {seconds:.1f} s."),
        tables=[("datasets", ["name", "size", "target", "source"], rows)],
        figures=figs,
        results={"datasets": rows, "seconds": seconds, "stdlib_unigram_bpb_train": h_train},
    )
