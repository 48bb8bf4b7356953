"""The warm-start active protocol: a uniform start, then rounds of loss-aware sensitivity sampling with the
current model's losses (and, optionally, its embeddings), retraining on everything selected after each round.
"""

from __future__ import annotations

import numpy as np

from teraml._validation import Interval, Options, check_param, type_name
from teraml.selection._selection import Selection
from teraml.selection.sensitivity import SensitivitySampler, check_X, split_random_state

__all__ = ["active_select"]


def active_select(X, budget, *, train_fn, loss_fn, embed_fn=None, initial_fraction=0.2, n_rounds=1,
                  train_weights="none", random_state=None, **select_params) -> tuple[Selection, object]:
    """Select ``budget`` items in rounds, training as it goes; returns (the selection, the last model).

    1. ``k' = round(initial_fraction * budget)`` items are drawn uniformly and taken whole;
       ``model = train_fn(indices, weights)``.
    2. The rest of the budget is split equally over ``n_rounds`` rounds. Each round embeds the data with
       ``embed_fn(model)`` (or uses ``X``), runs the loss score (:class:`SensitivitySampler`, ``select_params``
       passed on) on the items not selected yet with ``loss_fn(model, indices)`` (global row indices), and
       retrains on everything selected.

    With ``initial_fraction * budget < 0.5`` there is no warm start: the first round calls ``loss_fn(None, idx)``
    and ``embed_fn(None)`` (a pre-trained model captured by the functions, say). Bad ``select_params`` and rounds
    too small for their clusters (each needs n_clusters + 1 items) are errors before any training.

    Rows selected before the last round count as taken whole ("warm_start", weight 1), so
    ``sum(weights * loss)`` stays unbiased given them. ``train_weights="none"`` (default) trains on weights 1:
    inverse-probability weights make the training loss unbiased but, measured on digits, hurt accuracy;
    ``"selection"`` passes the selection's weights.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.random.default_rng(0).normal(size=(600, 5)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> def train(idx, w):
    ...     return LogisticRegression().fit(X[idx], y[idx], sample_weight=w)
    >>> def loss(model, idx):
    ...     p = model.predict_proba(X[idx])[np.arange(idx.size), y[idx]]
    ...     return -np.log(np.clip(p, 1e-12, None))
    >>> sel, model = active_select(X, 60, train_fn=train, loss_fn=loss, n_clusters=10, random_state=0)
    >>> len(sel) <= 60, sorted(set(sel.role.tolist()))
    (True, ['representative', 'sample', 'warm_start'])
    """
    X = check_X(X)
    n = X.shape[0]
    budget = check_param("budget", budget, [Interval("int", 1, n), f"an integer in [1, {n}]"])
    initial_fraction = check_param("initial_fraction", initial_fraction, [Interval("float", 0, 1, closed="left")])
    n_rounds = check_param("n_rounds", n_rounds, [Interval("int", 1, budget), f"an integer in [1, {budget}]"])
    train_weights = check_param("train_weights", train_weights, [Options("none", "selection", phrase="or")])
    for name, fn in (("train_fn", train_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be a callable; got {type_name(fn)}")
    if embed_fn is not None and not callable(embed_fn):
        raise TypeError(f"embed_fn must be a callable or None; got {type_name(embed_fn)}")
    for bad in ("score", "budget", "loss_fn"):
        if bad in select_params:
            raise TypeError(f"active_select sets {bad} itself; got {bad}={select_params[bad]!r}")
    k0 = int(round(initial_fraction * budget))
    rest = budget - k0
    shares = [rest // n_rounds + (1 if r < rest % n_rounds else 0) for r in range(n_rounds)]
    smallest = min(sh for sh in shares if sh > 0) if rest else 0
    if smallest:   # bad select_params, or a round too small for its clusters, fail now, not after training
        try:
            SensitivitySampler(smallest, score="loss", **select_params)._check(n - budget + smallest)
        except ValueError as exc:
            raise ValueError(f"the smallest of the {n_rounds} rounds selects {smallest} items "
                             f"(budget {budget}, initial_fraction {initial_fraction}): {exc}") from None
    _, seq = split_random_state(random_state)
    seeds = seq.spawn(n_rounds + 1)
    rng = np.random.default_rng(seeds[0])
    chosen = np.sort(rng.choice(n, size=k0, replace=False)).astype(np.int64) if k0 else np.empty(0, np.int64)
    known = np.full(chosen.size, np.nan)
    weights = np.ones(chosen.size)

    def train(idx, w):
        return train_fn(idx.copy(), np.ones(idx.size) if train_weights == "none" else w.copy())

    model = train(chosen, weights) if chosen.size else None
    queries = 0
    last = None   # (global indices, Selection) of the latest round
    for r, share in enumerate(shares):
        if share == 0:
            continue
        if last is not None:   # the previous round is now taken whole
            chosen = np.concatenate([chosen, last[0]])
            known = np.concatenate([known, last[1].losses])
            weights = np.concatenate([weights, np.ones(last[0].size)])
        free = np.setdiff1d(np.arange(n, dtype=np.int64), chosen)
        E = check_X(embed_fn(model)) if embed_fn is not None else X
        if E.shape[0] != n:
            raise ValueError(f"embed_fn must return one row per item ({n}); got shape {E.shape}")

        def round_loss(idx, free=free, current=model):
            return loss_fn(current, free[idx])

        sampler = SensitivitySampler(share, score="loss", random_state=np.random.default_rng(seeds[r + 1]),
                                     **select_params)
        sel = sampler.fit(E[free] if free.size < n else E, round_loss).sample()
        queries += sel.n_loss_queries
        last = (free[sel.indices], sel)
        model = train(np.concatenate([chosen, last[0]]), np.concatenate([weights, sel.weights]))
    return _merge(chosen, known, last, n, queries), model


def _merge(chosen, known, last, n, queries) -> Selection:
    """The warm-start rows (weight 1) and the last round's selection, ordered by row."""
    k = chosen.size
    if last is None:
        idx, w, c, p, role, loss = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64), np.empty(0),
                                    np.empty(0, str), np.empty(0))
    else:
        idx, sel = last
        w, c, p, role, loss = sel.weights, sel.counts, sel.probabilities, sel.role, sel.losses
    indices = np.concatenate([chosen, idx])
    order = np.argsort(indices, kind="stable")
    return Selection(indices[order], np.concatenate([np.ones(k), w])[order],
                     np.concatenate([np.ones(k, np.int64), c])[order], np.concatenate([np.ones(k), p])[order],
                     np.concatenate([np.full(k, "warm_start"), role]).astype(str)[order],
                     np.concatenate([known, loss])[order], n_total=n, n_loss_queries=queries)
