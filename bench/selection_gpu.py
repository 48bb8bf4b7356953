"""GPU check of sensitivity sampling with the torch clusterer (spec selection §6(d)): one script, <= 4 minutes.

    python bench/selection_gpu.py [--smoke] [--out DIR]

1. 10^7 x 64 float32 blobs; ``select(..., clusterer="torch", score="kmeans", budget=10^4, n_clusters=1000)``:
   seconds per Lloyd iteration, total seconds and cost/n (expected: total < 60 s);
2. on a 10^6-row subsample: the torch k-means on the CPU, on the GPU, and scikit-learn's ``KMeans(n_init=1)``:
   cost/n (expected: GPU within 2 % of scikit-learn) and the GPU/CPU throughput ratio.

Writes ``selection_gpu.json`` to ``--out`` ($OUT on the device machine). ``--smoke`` runs the same code on the
CPU at small sizes (to test the script before spending GPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from teraml.selection import SensitivitySampler  # noqa: E402
from teraml.selection._cluster import _torch_kmeans, assign  # noqa: E402


def blobs(n, d, centers, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(scale=4, size=(centers, d)).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 1_000_000):
        e = min(n, s + 1_000_000)
        X[s:e] = C[rng.integers(0, centers, e - s)] + rng.standard_normal((e - s, d), dtype=np.float32)
    return X


def cost_per_row(X, centers):
    _, sq = assign(X, centers)
    return float(sq.mean())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / "results")))
    args, _ = ap.parse_known_args()
    smoke = args.smoke or not torch.cuda.is_available()
    n, sub, k, budget = (200_000, 50_000, 100, 1000) if smoke else (10_000_000, 1_000_000, 1000, 10_000)
    res = {"device": "cpu (smoke)" if smoke else torch.cuda.get_device_name(), "torch": torch.__version__,
           "n": n, "d": 64, "k": k, "budget": budget}
    X = blobs(n, 64, 2000 if not smoke else 200)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = SensitivitySampler(budget, score="kmeans", n_clusters=k, clusterer="torch", random_state=0).fit(X)
        sel = s.sample()
    if not smoke:
        torch.cuda.synchronize()
    res["full"] = {"seconds": time.perf_counter() - t0, "stages": s.timings_, "cost_per_row": s.clustering_cost_ / n,
                   "unique": len(sel), "pass_under_60s": time.perf_counter() - t0 < 60}
    print(json.dumps(res["full"]), flush=True)
    Xs = X[np.random.default_rng(1).choice(n, sub, replace=False)]
    cmp = {}
    for name in (["cpu"] if smoke else ["cpu", "cuda"]):
        t0 = time.perf_counter()
        C = _torch_kmeans(Xs, k, 0, device=name)
        if name == "cuda":
            torch.cuda.synchronize()
        cmp[f"torch_{name}"] = {"seconds": time.perf_counter() - t0, "cost_per_row": cost_per_row(Xs, C)}
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    km = KMeans(k, n_init=1, random_state=0).fit(Xs)
    cmp["sklearn"] = {"seconds": time.perf_counter() - t0, "cost_per_row": float(km.inertia_ / sub)}
    if "torch_cuda" in cmp:
        cmp["gpu_cost_vs_sklearn"] = cmp["torch_cuda"]["cost_per_row"] / cmp["sklearn"]["cost_per_row"]
        cmp["gpu_over_cpu_throughput"] = cmp["torch_cpu"]["seconds"] / cmp["torch_cuda"]["seconds"]
        cmp["pass_within_2pct"] = cmp["gpu_cost_vs_sklearn"] <= 1.02
    res["subsample"] = cmp
    print(json.dumps(cmp), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection_gpu.json").write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
