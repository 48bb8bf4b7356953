"""Seeded synthetic data generators (numpy only)."""

from __future__ import annotations

import numpy as np

from teraml._validation import check_array, check_choice, check_float, check_int, check_random_state

__all__ = [
    "make_gaussian_mixture",
    "make_planted_partition_graph",
    "make_attention_qkv",
    "make_aggregate_regression",
    "make_aggregate_classification",
    "make_loss_blobs",
    "make_leverage_regression",
    "make_lookalike_regression",
]


def make_gaussian_mixture(
    n_samples: int = 1000,
    n_features: int = 2,
    n_components: int = 3,
    *,
    cluster_std: float = 1.0,
    center_box: float = 10.0,
    weights=None,
    random_state=0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw points from a mixture of isotropic Gaussians.

    Centres are uniform in ``[-center_box, center_box]^n_features``; component ``c`` is drawn with
    probability ``weights[c]`` (uniform by default) and has standard deviation ``cluster_std``.

    Returns
    -------
    X : (n_samples, n_features) float64
    y : (n_samples,) int64, the component of each point

    >>> X, y = make_gaussian_mixture(500, 2, 4, random_state=0)
    >>> X.shape, len(set(y.tolist()))
    ((500, 2), 4)
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_features = check_int("n_features", n_features, min_value=1)
    n_components = check_int("n_components", n_components, min_value=1)
    cluster_std = check_float("cluster_std", cluster_std, min_value=0.0)
    center_box = check_float("center_box", center_box, min_value=0.0)
    rng = check_random_state("random_state", random_state)
    if weights is None:
        p = np.full(n_components, 1.0 / n_components)
    else:
        p = check_array("weights", weights, ndim=1)
        if p.shape[0] != n_components or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(
                f"weights must be {n_components} non-negative numbers with a positive sum; got {p.tolist()}"
            )
        p = p / p.sum()
    centers = rng.uniform(-center_box, center_box, size=(n_components, n_features))
    y = rng.choice(n_components, size=n_samples, p=p)
    if n_samples >= n_components and weights is None:
        # every component appears at least once when it can
        y[:n_components] = np.arange(n_components)
        rng.shuffle(y)
    X = centers[y] + cluster_std * rng.standard_normal((n_samples, n_features))
    return X, y.astype(np.int64)


def make_planted_partition_graph(
    n_nodes: int = 1000,
    n_blocks: int = 20,
    *,
    in_neighbors: int = 8,
    out_neighbors: int = 2,
    random_state=0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A weighted similarity graph with planted clusters.

    Nodes are split into ``n_blocks`` blocks of near-equal size. Every node draws ``in_neighbors``
    distinct neighbours in its own block with weight ~ U(0.5, 1) and ``out_neighbors`` uniformly
    random other nodes with weight ~ U(0, 0.5). The graph is symmetrised by keeping the larger
    weight of a pair drawn twice.

    Returns
    -------
    src, dst : (m,) int64 with ``src < dst`` (each undirected edge once, sorted)
    weight : (m,) float64 in (0, 1)
    labels : (n_nodes,) int64, the planted block of each node

    >>> src, dst, w, labels = make_planted_partition_graph(200, 4, random_state=0)
    >>> bool((src < dst).all()), labels.shape
    (True, (200,))
    """
    n_nodes = check_int("n_nodes", n_nodes, min_value=2)
    n_blocks = check_int("n_blocks", n_blocks, min_value=1, max_value=n_nodes)
    in_neighbors = check_int("in_neighbors", in_neighbors, min_value=0)
    out_neighbors = check_int("out_neighbors", out_neighbors, min_value=0)
    smallest = n_nodes // n_blocks
    if in_neighbors > smallest - 1:
        raise ValueError(
            f"in_neighbors must be <= {smallest - 1} (the smallest block has {smallest} nodes); got {in_neighbors}"
        )
    rng = check_random_state("random_state", random_state)
    labels = rng.permutation(np.arange(n_nodes) % n_blocks).astype(np.int64)
    members = [np.flatnonzero(labels == b) for b in range(n_blocks)]
    src_parts, dst_parts, w_parts = [], [], []
    if in_neighbors > 0:
        for block in members:
            size = block.size
            # for each node pick in_neighbors distinct others in its block: random keys, self excluded
            if size <= 4 * in_neighbors + 64:
                picks = np.empty((size, in_neighbors), dtype=np.int64)
                for start in range(0, size, 1024):  # random keys; chunks keep memory at O(1024 * size)
                    rows = np.arange(start, min(start + 1024, size))
                    keys = rng.random((rows.size, size))
                    keys[np.arange(rows.size), rows] = np.inf
                    picks[rows] = np.argpartition(keys, in_neighbors - 1, axis=1)[:, :in_neighbors]
            else:
                # rejection: draw others (self skipped by the shift), redraw the rows with a repeat; O(size * k)
                picks = np.empty((size, in_neighbors), dtype=np.int64)
                todo = np.arange(size)
                while todo.size:
                    r = rng.integers(0, size - 1, size=(todo.size, in_neighbors))
                    r += r >= todo[:, None]
                    srt = np.sort(r, axis=1)
                    ok = (srt[:, 1:] != srt[:, :-1]).all(axis=1)
                    picks[todo[ok]] = r[ok]
                    todo = todo[~ok]
            src_parts.append(np.repeat(block, in_neighbors))
            dst_parts.append(block[picks.ravel()])
            w_parts.append(rng.uniform(0.5, 1.0, size * in_neighbors))
    if out_neighbors > 0:
        s = np.repeat(np.arange(n_nodes), out_neighbors)
        d = rng.integers(0, n_nodes - 1, size=s.size)
        d = d + (d >= s)  # never a self loop
        src_parts.append(s)
        dst_parts.append(d)
        w_parts.append(rng.uniform(0.0, 0.5, s.size))
    if not src_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0), labels
    s = np.concatenate(src_parts)
    d = np.concatenate(dst_parts)
    w = np.concatenate(w_parts)
    lo, hi = np.minimum(s, d), np.maximum(s, d)
    key = lo * n_nodes + hi
    order = np.lexsort((-w, key))  # by key, heaviest first
    key, w = key[order], w[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, w = key[first], w[first]
    return (key // n_nodes).astype(np.int64), (key % n_nodes).astype(np.int64), w, labels


_QKV_KINDS = ("iid", "clustered", "sink", "rope")


def make_attention_qkv(
    kind: str = "iid",
    n: int = 4096,
    d: int = 64,
    heads: int = 2,
    seed: int = 0,
    *,
    cluster_size: int = 64,
    sigma: float = 0.1,
    ell: float = 6.0,
    rank: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic attention inputs ``(q, k, v)``, each float32 of shape ``(1, heads, n, d)``.

    kinds (G1-G4 of the HyperAttention benchmark):

    * ``"iid"``: q, k, v ~ N(0, 1).
    * ``"clustered"``: ``n / cluster_size`` unit centres mu; position i has a cluster z_i and
      ``q_i, k_i = a * mu_{z_i} + sigma * eps`` with ``a = sqrt(ell * sqrt(d))``, so a same-cluster
      logit is about ``ell`` at scale ``d^-1/2``; v ~ N(0, 1).
    * ``"sink"``: clustered plus a shared query direction u (weight 2) and ``k_0 = 12 u``: one key
      heavy for every query (an attention sink).
    * ``"rope"``: rank-``rank`` q, k (scaled to logits of order ``ell``), rotated by RoPE
      (theta 1e4); meant for causal attention.

    >>> q, k, v = make_attention_qkv("clustered", 256, d=16, heads=1, seed=0)
    >>> q.shape, q.dtype
    ((1, 1, 256, 16), dtype('float32'))
    """
    check_choice("kind", kind, _QKV_KINDS)
    n = check_int("n", n, min_value=1)
    d = check_int("d", d, min_value=2)
    heads = check_int("heads", heads, min_value=1)
    cluster_size = check_int("cluster_size", cluster_size, min_value=1)
    rank = check_int("rank", rank, min_value=1, max_value=d)
    sigma = check_float("sigma", sigma, min_value=0.0)
    ell = check_float("ell", ell, min_value=0.0)
    rng = check_random_state("seed", seed)
    shape = (1, heads, n, d)
    v = rng.standard_normal(shape)
    if kind == "iid":
        q, k = rng.standard_normal(shape), rng.standard_normal(shape)
    elif kind in ("clustered", "sink"):
        n_centres = max(1, n // cluster_size)
        mu = rng.standard_normal((heads, n_centres, d))
        mu /= np.linalg.norm(mu, axis=-1, keepdims=True)
        z = rng.integers(0, n_centres, size=(heads, n))
        a = np.sqrt(ell * np.sqrt(d))
        centre = np.take_along_axis(mu, z[..., None], axis=1)[None]  # (1, heads, n, d)
        q = a * centre + sigma * rng.standard_normal(shape)
        k = a * centre + sigma * rng.standard_normal(shape)
        if kind == "sink":
            u = rng.standard_normal((heads, d))
            u /= np.linalg.norm(u, axis=-1, keepdims=True)
            q = q + 2.0 * u[None, :, None, :]
            k[:, :, 0, :] = 12.0 * u[None]
    else:  # rope: a slowly varying rank-`rank` latent (AR(1), rho 0.99), shared by q and k, then RoPE
        basis = np.linalg.qr(rng.standard_normal((heads, d, rank)))[0].transpose(0, 2, 1)  # (heads, rank, d)
        z = np.empty((1, heads, n, rank))
        z[:, :, 0] = rng.standard_normal((1, heads, rank))
        rho = 0.99
        noise = rng.standard_normal((1, heads, n, rank)) * np.sqrt(1 - rho**2)
        for t in range(1, n):
            z[:, :, t] = rho * z[:, :, t - 1] + noise[:, :, t]
        c = np.sqrt(ell * np.sqrt(d) / rank)
        q = c * np.einsum("bhnr,hrd->bhnd", z, basis) + sigma * rng.standard_normal(shape)
        k = c * np.einsum("bhnr,hrd->bhnd", z, basis) + sigma * rng.standard_normal(shape)
        half = d // 2
        inv = 1e4 ** (-np.arange(half) / half)
        ang = np.arange(n)[:, None] * inv[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

        def rot(x):
            x1, x2 = x[..., :half], x[..., half:2 * half]
            out = x.copy()
            out[..., :half] = x1 * cos - x2 * sin
            out[..., half:2 * half] = x1 * sin + x2 * cos
            return out

        q, k = rot(q), rot(k)
    return q.astype(np.float32), k.astype(np.float32), v.astype(np.float32)


def make_aggregate_regression(n_samples, n_features, *, snr=1.0, noise=1.0, random_state=None):
    """Linear regression data for learning from aggregates: ``(X, y, coef)``.

    ``x ~ N(0, I)``, ``coef`` a random direction with ``||coef||^2 = snr * noise^2``, and
    ``y = X coef + noise * N(0, 1)``.

    >>> X, y, coef = make_aggregate_regression(500, 5, snr=4.0, random_state=0)
    >>> X.shape, round(float(coef @ coef), 6)
    ((500, 5), 4.0)
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_features = check_int("n_features", n_features, min_value=1)
    snr = check_float("snr", snr, min_value=0.0)
    noise = check_float("noise", noise, min_value=0.0)
    rng = check_random_state("random_state", random_state)
    direction = rng.standard_normal(n_features)
    direction /= np.linalg.norm(direction)
    coef = direction * np.sqrt(snr) * noise
    X = rng.standard_normal((n_samples, n_features))
    y = X @ coef + noise * rng.standard_normal(n_samples)
    return X, y, coef


def make_aggregate_classification(n_samples, n_features, *, coef_norm=3.0, random_state=None):
    """Logistic-model binary data: ``(X, y, coef)`` with ``y ~ Bernoulli(sigmoid(X coef))``, ``||coef|| = coef_norm``.

    >>> X, y, coef = make_aggregate_classification(400, 3, random_state=0)
    >>> sorted(set(y.tolist()))
    [0.0, 1.0]
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_features = check_int("n_features", n_features, min_value=1)
    coef_norm = check_float("coef_norm", coef_norm, min_value=0.0)
    rng = check_random_state("random_state", random_state)
    direction = rng.standard_normal(n_features)
    coef = direction / np.linalg.norm(direction) * coef_norm
    X = rng.standard_normal((n_samples, n_features))
    p = 1.0 / (1.0 + np.exp(-(X @ coef)))
    y = (rng.random(n_samples) < p).astype(np.float64)
    return X, y, coef


def make_loss_blobs(n_samples=100_000, n_features=16, n_centers=50, *, random_state=0):
    """Embeddings in Gaussian blobs of heavy-tailed sizes, with a per-item loss that is smooth within a blob.

    The data of loss estimation by sensitivity sampling (its E1 "blobs" benchmark). Centres mu_c ~ N(0, 25 I);
    blob sizes proportional to ``Pareto(1.2) + 1`` draws (largest-remainder rounding, every blob at least one
    row when ``n_samples >= n_centers``); rows ``e_i = mu_c(i) + N(0, I)``, shuffled. Each blob has a base loss
    ``beta_c ~ LogNormal(0, 1.5)``, and ``loss_i = beta_c(i) * (1 + 0.3 * mean_j |e_ij - mu_c(i),j|) +
    0.05 * U(0, 1)``: losses vary a lot between blobs and little inside one.

    Returns
    -------
    X : (n_samples, n_features) float64
    losses : (n_samples,) float64 > 0
    labels : (n_samples,) int64, the blob of each row

    >>> X, losses, labels = make_loss_blobs(1000, 4, 5, random_state=0)
    >>> X.shape, bool((losses > 0).all()), sorted(set(labels.tolist()))
    ((1000, 4), True, [0, 1, 2, 3, 4])
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_features = check_int("n_features", n_features, min_value=1)
    n_centers = check_int("n_centers", n_centers, min_value=1)
    rng = check_random_state("random_state", random_state)
    centers = 5.0 * rng.standard_normal((n_centers, n_features))
    share = rng.pareto(1.2, n_centers) + 1.0
    share /= share.sum()
    floor = min(1, n_samples // n_centers)          # one row per blob when there are enough rows
    spare = n_samples - floor * n_centers
    sizes = np.floor(share * spare).astype(np.int64)
    rest = np.argsort(-(share * spare - sizes), kind="stable")[: spare - int(sizes.sum())]
    sizes[rest] += 1
    sizes += floor
    labels = rng.permutation(np.repeat(np.arange(n_centers, dtype=np.int64), sizes))
    noise = rng.standard_normal((n_samples, n_features))
    X = centers[labels] + noise
    base = rng.lognormal(0.0, 1.5, n_centers)
    losses = base[labels] * (1.0 + 0.3 * np.abs(noise).mean(axis=1)) + 0.05 * rng.random(n_samples)
    return X, losses, labels


def make_leverage_regression(n_samples=20_000, n_features=10, *, random_state=0):
    """A least-squares problem with heavy-tailed rows and noise: leverage and uniform sampling differ a lot.

    The data of subsampled regression (its E3 benchmark): ``A = N(0, I) diag(linspace(1, 5, d))`` with each row
    scaled by ``|t_1.5| + 0.1`` (Student t, 1.5 degrees of freedom: a few rows of very high leverage),
    ``x_star ~ N(0, I)`` and ``b = A x_star + 3 + N(0, 1) (1 + 0.5 |t_2|)`` (intercept 3, heteroscedastic
    heavy-tailed noise).

    Returns
    -------
    A : (n_samples, n_features) float64
    b : (n_samples,) float64
    x_star : (n_features,) float64, the coefficients without the intercept

    >>> A, b, x_star = make_leverage_regression(500, 3, random_state=0)
    >>> A.shape, b.shape, x_star.shape
    ((500, 3), (500,), (3,))
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_features = check_int("n_features", n_features, min_value=1)
    rng = check_random_state("random_state", random_state)
    A = rng.standard_normal((n_samples, n_features)) * np.linspace(1.0, 5.0, n_features)
    A *= (np.abs(rng.standard_t(1.5, n_samples)) + 0.1)[:, None]
    x_star = rng.standard_normal(n_features)
    noise = rng.standard_normal(n_samples) * (1.0 + 0.5 * np.abs(rng.standard_t(2.0, n_samples)))
    b = A @ x_star + 3.0 + noise
    return A, b, x_star


def make_lookalike_regression(n_samples=400, n_features=400, *, frac_sensitive=0.5, n_clusters=4, within_signal=1.0,
                              nonsensitive_signal=1.0, noise=1.0, center_scale=1.0, random_state=None):
    """Linear regression with clustered sensitive features: the model of look-alike clustering's risk theory.

    The first ``d_s = round(frac_sensitive * n_features)`` columns (clamped to ``[1, n_features - 1]``) are
    the sensitive block S, the others the non-sensitive block N:

    * centres ``mu_l ~ N(0, center_scale^2 I_{d_s})`` for ``l < J = n_clusters``, clusters ``c_i`` uniform
      over the ``J`` centres, ``x_s = mu_c + z`` with ``z ~ N(0, I)``; ``x_ns ~ N(0, I)``;
    * ``theta_s ~ N(0, within_signal / d_s I)`` and ``theta_ns ~ N(0, nonsensitive_signal / d_ns I)``,
      so that ``E ||theta_s||^2 = within_signal`` and ``E ||theta_ns||^2 = nonsensitive_signal``;
    * ``y = <x, theta> + sqrt(noise) eps`` with ``eps ~ N(0, 1)``: ``noise`` is the noise variance.

    Returns
    -------
    X : (n_samples, n_features) float64
    y : (n_samples,) float64
    info : dict with

        * ``"labels"``: (n_samples,) int64, the cluster of each row;
        * ``"coef"``: (n_features,) the true ``theta``; ``"centers"``: (J, d_s) the ``mu_l``;
        * ``"sensitive"``: int64 indices of S (``arange(d_s)``);
        * ``"w"``, ``"r"``, ``"beta"``: the realized ``||theta_s||^2``, ``||theta_ns||^2`` and
          ``(1/J) sum_l <mu_l, theta_s>^2``;
        * ``"population_risk"``: a function of ``coef_hat`` (shape ``(n_features,)``) giving the exact test
          risk ``E (y - <x, coef_hat>)^2`` at a fresh raw point,
          ``noise + (1/J) sum_l <mu_l, D_s>^2 + ||D||^2`` with ``D = theta - coef_hat``.

    >>> X, y, info = make_lookalike_regression(200, 50, frac_sensitive=0.2, random_state=0)
    >>> X.shape, info["sensitive"].tolist() == list(range(10)), info["centers"].shape
    ((200, 50), True, (4, 10))
    >>> float(info["population_risk"](info["coef"]))  # the noise variance
    1.0
    """
    n_samples = check_int("n_samples", n_samples, min_value=1)
    n_features = check_int("n_features", n_features, min_value=2)
    frac_sensitive = check_float("frac_sensitive", frac_sensitive, min_value=0.0, max_value=1.0,
                                 min_inclusive=False, max_inclusive=False)
    n_clusters = check_int("n_clusters", n_clusters, min_value=1)
    within_signal = check_float("within_signal", within_signal, min_value=0.0)
    nonsensitive_signal = check_float("nonsensitive_signal", nonsensitive_signal, min_value=0.0)
    noise = check_float("noise", noise, min_value=0.0)
    center_scale = check_float("center_scale", center_scale, min_value=0.0)
    rng = check_random_state("random_state", random_state)
    d_s = min(max(round(frac_sensitive * n_features), 1), n_features - 1)
    d_ns = n_features - d_s
    centers = center_scale * rng.standard_normal((n_clusters, d_s))
    labels = rng.integers(0, n_clusters, size=n_samples).astype(np.int64)
    X = np.empty((n_samples, n_features))
    X[:, :d_s] = centers[labels] + rng.standard_normal((n_samples, d_s))
    X[:, d_s:] = rng.standard_normal((n_samples, d_ns))
    coef = np.concatenate([rng.standard_normal(d_s) * np.sqrt(within_signal / d_s),
                           rng.standard_normal(d_ns) * np.sqrt(nonsensitive_signal / d_ns)])
    y = X @ coef + np.sqrt(noise) * rng.standard_normal(n_samples)
    theta_s = coef[:d_s]

    def population_risk(coef_hat):
        """``E (y - <x, coef_hat>)^2`` at a fresh raw point (exact, no sampling)."""
        c = check_array("coef_hat", coef_hat, ndim=1)
        if c.shape[0] != n_features:
            raise ValueError(f"coef_hat must have {n_features} entries; got {c.shape[0]}")
        delta = coef - c
        return float(noise + np.mean((centers @ delta[:d_s]) ** 2) + delta @ delta)

    info = {
        "labels": labels,
        "coef": coef,
        "centers": centers,
        "sensitive": np.arange(d_s, dtype=np.int64),
        "w": float(theta_s @ theta_s),
        "r": float(coef[d_s:] @ coef[d_s:]),
        "beta": float(np.mean((centers @ theta_s) ** 2)),
        "population_risk": population_risk,
    }
    return X, y, info
