"""Model quality on a release: the real-data splits shared by the tests and ``teraml bench anonymize``.

Every release of one split is scored the same way: the train part (standardized on itself) is
released, a model is fitted on it, and the loss is measured on the raw test part. A release is a
function ``(X_train, y_train, sensitive, seed) -> (X_train_released, how)``, where ``how`` says what
happens to the test rows: ``None`` (kept raw), ``("columns", keep)`` (the same columns dropped) or
``("transform", fitted_anonymizer)`` (mapped by its ``transform``, e.g. ``new_rows="centroid"``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np

from teraml.anonymize._anonymizer import LookAlikeAnonymizer
from teraml.anonymize._simulation import least_squares
from teraml.datasets import load_breast_cancer, load_diabetes

#: The real data of the benchmark: the sensitive columns and the task of each.
DATASETS = {
    # load_diabetes columns: age, sex, bmi, bp, s1..s6
    "diabetes": {"loader": load_diabetes, "sensitive": [0, 1, 2, 3], "task": "regression"},
    # load_breast_cancer columns 20..29 are the ten "worst" measurements
    "breast_cancer": {"loader": load_breast_cancer, "sensitive": list(range(20, 30)), "task": "classification"},
}

RIDGE_ALPHAS = np.logspace(-4, 3, 30)


def split(name: str, seed: int, *, test_size: float = 0.3):
    """One seeded split of a bundled dataset, standardized with the train part's mean and std."""
    from sklearn.model_selection import train_test_split

    X, y = DATASETS[name]["loader"]()
    strat = y if DATASETS[name]["task"] == "classification" else None
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=strat)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    sd[sd == 0] = 1.0
    return (Xtr - mu) / sd, (Xte - mu) / sd, ytr, yte


def score(task: str, Xtr, ytr, Xte, yte) -> dict:
    """Fit RidgeCV (regression) or LogisticRegression(C=1) on the release; loss on the test rows."""
    if task == "regression":
        from sklearn.linear_model import RidgeCV

        pred = RidgeCV(alphas=RIDGE_ALPHAS).fit(Xtr, ytr).predict(Xte)
        return {"loss": float(np.mean((yte - pred) ** 2))}
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    model = LogisticRegression(C=1.0, max_iter=5000).fit(Xtr, ytr)
    proba = model.predict_proba(Xte)
    return {"loss": float(log_loss(yte, proba, labels=model.classes_)),
            "accuracy": float(np.mean(model.classes_[proba.argmax(axis=1)] == yte))}


def full_release(Xtr, ytr, S, seed):
    return Xtr, None


def drop_release(Xtr, ytr, S, seed):
    keep = np.setdiff1d(np.arange(Xtr.shape[1]), S)
    return Xtr[:, keep], ("columns", keep)


def lookalike_release(k: int, *, method: str = "mdav", new_rows: str = "raw", n_clusters=None) -> Callable:
    """A release by :class:`LookAlikeAnonymizer` (``"centroid"`` also maps the test rows)."""
    def release(Xtr, ytr, S, seed):
        anon = LookAlikeAnonymizer(S, k=k, method=method, new_rows=new_rows, n_clusters=n_clusters,
                                   random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            Xrel = anon.fit_transform(Xtr)
        return Xrel, (("transform", anon) if new_rows == "centroid" else None)
    return release


def _test_rows(Xte, how):
    if how is None:
        return Xte
    kind, obj = how
    return Xte[:, obj] if kind == "columns" else obj.transform(Xte)


def run_splits(name: str, releases: dict[str, Callable], *, n_splits: int, first_seed: int = 0) -> dict:
    """Score every release on ``n_splits`` seeded splits of dataset ``name``.

    Returns ``{release: {"loss": array, "accuracy": array (classification), "seconds": array,
    "first": the released train rows of the first split}}``; a release may also return an extra ``dict``
    as a third item (e.g. its k on S), kept per split.
    """
    spec = DATASETS[name]
    out: dict[str, dict] = {r: {"loss": [], "accuracy": [], "seconds": [], "extra": []} for r in releases}
    for seed in range(first_seed, first_seed + n_splits):
        Xtr, Xte, ytr, yte = split(name, seed)
        for rname, fn in releases.items():
            t0 = time.perf_counter()
            res = fn(Xtr, ytr, spec["sensitive"], seed)
            seconds = time.perf_counter() - t0
            Xrel, how = res[0], res[1]
            s = score(spec["task"], Xrel, ytr, _test_rows(Xte, how), yte)
            out[rname]["loss"].append(s["loss"])
            out[rname]["accuracy"].append(s.get("accuracy", np.nan))
            out[rname]["seconds"].append(seconds)
            out[rname]["extra"].append(res[2] if len(res) > 2 else {})
            if seed == first_seed:
                out[rname]["first"] = Xrel
    for r in out.values():
        for key in ("loss", "accuracy", "seconds"):
            r[key] = np.asarray(r[key], dtype=np.float64)
    return out


def small_n_losses(*, n_splits: int = 200, n_train: int = 14, k: int = 5, first_seed: int = 0) -> dict:
    """Diabetes with 14 training rows, S = s1..s6, min-norm least squares with an intercept column.

    Returns the per-split test MSE of the full and the look-alike (MDAV, ``k``) training data.
    """
    X, y = load_diabetes()
    S = list(range(4, 10))
    full, look = [], []
    for seed in range(first_seed, first_seed + n_splits):
        rng = np.random.default_rng(seed)
        perm = rng.permutation(X.shape[0])
        tr, te = perm[:n_train], perm[n_train:]
        mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
        sd[sd == 0] = 1.0
        Xtr, Xte = (X[tr] - mu) / sd, (X[te] - mu) / sd
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            Xrel = LookAlikeAnonymizer(S, k=k, method="mdav").fit_transform(Xtr)
        ones_tr, ones_te = np.ones((n_train, 1)), np.ones((te.shape[0], 1))
        for train, sink in ((Xtr, full), (Xrel, look)):
            coef = least_squares(np.hstack([ones_tr, train]), y[tr])
            sink.append(float(np.mean((y[te] - np.hstack([ones_te, Xte]) @ coef) ** 2)))
    return {"full": np.asarray(full), "lookalike": np.asarray(look)}
