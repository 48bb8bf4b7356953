"""select / SensitivitySampler / Selection: the reference, the invariants, the estimator, the pitfalls, bad input."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError

from teraml.selection import Selection, SensitivitySampler, _cluster, select
from teraml.selection._reference import reference_sensitivity


class FixedCenters:
    """A 'fitted clusterer': just cluster_centers_."""

    def __init__(self, centers):
        self.cluster_centers_ = np.asarray(centers, dtype=np.float64)


def _blobs(n=300, d=4, k=6, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(scale=5, size=(k, d))
    lab = rng.integers(0, k, n)
    X = C[lab] + rng.normal(size=(n, d))
    loss = np.abs(X[:, 0]) + 0.5 * rng.random(n)
    return X, loss


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


# ------------------------------------------------------------------------------------------ the reference


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), d=st.integers(1, 8), z=st.sampled_from([1.0, 2.0, 3.0]),
       score=st.sampled_from(["loss", "kmeans"]), normalize=st.sampled_from(["global", "cluster"]),
       mix=st.sampled_from([0.0, 0.1]), lam=st.sampled_from(["balanced", 0.7]), seed=st.integers(0, 10**6))
def test_fast_path_equals_reference(n, d, z, score, normalize, mix, lam, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10)
    k = int(rng.integers(1, max(2, n // 3)))
    centers = X[rng.choice(n, k, replace=False)] + rng.normal(scale=0.1, size=(k, d))
    loss = rng.random(n) + 0.01
    budget = min(n, k + 1 + int(rng.integers(0, n)))
    s = _quiet(SensitivitySampler(budget, score=score, n_clusters=k, z=z, lam=lam, normalize=normalize,
                                  uniform_mix=mix, clusterer=FixedCenters(centers), random_state=0).fit,
               X, (lambda idx: loss[idx]) if score == "loss" else None)
    ref = _quiet(reference_sensitivity, X, centers, losses=lambda idx: loss[idx], score=score, z=z, lam=lam,
                 normalize=normalize, uniform_mix=mix)
    assert np.array_equal(s.labels_, ref["labels"])
    assert np.array_equal(s.representatives_, ref["representatives"])
    np.testing.assert_allclose(s._D, ref["D"], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(s.probabilities_, ref["p"], rtol=1e-10, atol=1e-15)
    assert s.lam_ == pytest.approx(ref["lam"], rel=1e-10, abs=1e-300)
    if score == "loss":
        np.testing.assert_allclose(s._delta, ref["delta"], rtol=1e-10, atol=1e-300)


def test_chunked_pass_equals_one_chunk(monkeypatch):
    X, loss = _blobs(2000, 8, 10)
    a = _quiet(SensitivitySampler(200, random_state=3).fit, X, lambda i: loss[i])
    monkeypatch.setattr(_cluster, "CHUNK_BYTES", 1000)   # chunks of a few rows
    b = _quiet(SensitivitySampler(200, random_state=3).fit, X, lambda i: loss[i])
    assert np.array_equal(a.labels_, b.labels_) and np.array_equal(a.representatives_, b.representatives_)
    np.testing.assert_allclose(a.probabilities_, b.probabilities_, rtol=1e-12)


# ------------------------------------------------------------------------------------------ invariants


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 300), d=st.integers(1, 8), z=st.sampled_from([1.0, 2.0, 3.0]),
       score=st.sampled_from(["loss", "kmeans"]), seed=st.integers(0, 10**6))
def test_probabilities_and_selection_invariants(n, d, z, score, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    loss = rng.random(n)
    k = int(rng.integers(1, max(2, n // 4)))
    budget = int(rng.integers(k + 1, n + 1)) if k + 1 <= n else n
    s = _quiet(SensitivitySampler(budget, score=score, n_clusters=k, z=z, random_state=seed).fit, X,
               lambda i: loss[i])
    p, T = s.probabilities_, s.representatives_
    assert np.all(p >= 0) and np.all(p[T] == 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-9) or (p.sum() == 0 and T.size == n)
    sel = s.sample()
    m = budget - s.representatives_.size
    assert np.all(sel.weights > 0) and np.unique(sel.indices).size == sel.indices.size
    assert sel.indices.min() >= 0 and sel.indices.max() < n and sel.indices.dtype == np.int64
    assert sel.counts[sel.role == "sample"].sum() == m
    assert set(sel.indices[sel.role == "representative"]) == set(T)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-100, 100), lscale=st.floats(1e-3, 1e3),
       z=st.sampled_from([1.0, 2.0, 3.0]), seed=st.integers(0, 1000))
def test_balanced_p_is_invariant_to_scale_translation_and_loss_scale(scale, shift, lscale, z, seed):
    X, loss = _blobs(200, 3, 5, seed)
    C = X[:5] + 0.3
    base = _quiet(SensitivitySampler(60, n_clusters=5, z=z, clusterer=FixedCenters(C)).fit, X, lambda i: loss[i])
    moved = _quiet(SensitivitySampler(60, n_clusters=5, z=z, clusterer=FixedCenters(C * scale + shift)).fit,
                   X * scale + shift, lambda i: lscale * loss[i])
    assert np.array_equal(base.labels_, moved.labels_)
    np.testing.assert_allclose(moved.probabilities_, base.probabilities_, rtol=1e-6, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), d=st.integers(1, 6))
def test_loss_upper_bound_holds_exactly_for_lipschitz_losses(seed, d):
    # pitfall 1: v is measured to a data point (the representative), so l_i <= L_a + lam * delta_i exactly for a
    # 1-Lipschitz loss with z = 1 and lam = 1; measuring to the centroid (which has no loss) would not bound it
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(150, d))
    q = rng.normal(size=d)
    loss = 1 + np.linalg.norm(X - q, axis=1)
    s = _quiet(SensitivitySampler(40, n_clusters=8, z=1.0, lam=1.0, random_state=seed).fit, X, lambda i: loss[i])
    v = s.representative_losses_[s.labels_] + 1.0 * s._delta
    assert np.all(loss <= v + 1e-12)


# ------------------------------------------------------------------------------------------ the estimator


def test_estimate_is_unbiased_over_20000_draws():
    X, loss = _blobs(400, 4, 8, 1)
    s = _quiet(SensitivitySampler(60, n_clusters=8, random_state=0).fit, X, lambda i: loss[i])
    est, reported = np.empty(20000), np.empty(20000)
    for r in range(20000):
        sel = s.sample(random_state=r)
        est[r], reported[r] = sel.estimate_mean(loss[sel.indices])
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - loss.mean()) <= 4 * se
    # the reported standard error matches the spread of the estimates
    assert np.median(reported) == pytest.approx(est.std(ddof=1), rel=0.25)


def test_loss_fn_calls_and_query_count():
    X, loss = _blobs(500, 4, 6, 2)
    calls = []

    def loss_fn(idx):
        calls.append(idx)
        return loss[idx]

    s = _quiet(SensitivitySampler(100, random_state=0).fit, X, loss_fn)
    k = s.n_clusters_
    assert len(calls) == 1 and calls[0].dtype == np.int64 and np.unique(calls[0]).size == calls[0].size == k
    sel = s.sample()
    assert sel.n_loss_queries == k
    mean, _ = sel.estimate_mean(loss_fn)
    assert len(calls) == 2 and set(calls[1]) == set(sel.indices[sel.role == "sample"])
    assert sel.n_loss_queries == k + int(np.sum(sel.role == "sample"))
    assert mean == pytest.approx(sel.estimate_mean(loss[sel.indices])[0])
    sel.estimate_mean(loss_fn)            # everything known now: no further call
    assert len(calls) == 2


def test_loss_score_beats_kmeans_score_and_uniform_on_skewed_losses():
    # pitfall 3: the scores are different algorithms; on losses that depend on position the loss score wins
    X, loss = _blobs(3000, 6, 12, 4)
    loss = np.exp(X[:, 0] / 3)
    truth = loss.mean()
    err = {"loss": [], "kmeans": [], "uniform": []}
    for r in range(60):
        a = _quiet(select, X, 150, loss_fn=lambda i: loss[i], n_clusters=30, random_state=r)
        b = _quiet(select, X, 150, score="kmeans", n_clusters=30, random_state=r)
        u = np.random.default_rng(r).choice(3000, 150, replace=False)
        err["loss"].append(a.estimate_mean(loss[a.indices])[0] - truth)
        err["kmeans"].append(b.estimate_mean(loss[b.indices])[0] - truth)
        err["uniform"].append(loss[u].mean() - truth)
    rmse = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in err.items()}
    assert rmse["loss"] < 0.8 * rmse["uniform"] and rmse["loss"] < rmse["kmeans"], rmse


# ------------------------------------------------------------------------------------------ edge cases


def test_one_cluster_and_reproducibility():
    X, loss = _blobs(200, 3, 4, 5)
    a = select(X, 20, loss_fn=lambda i: loss[i], n_clusters=1, random_state=7)
    b = select(X, 20, loss_fn=lambda i: loss[i], n_clusters=1, random_state=7)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.weights, b.weights)
    assert np.sum(a.role == "representative") == 1
    s = _quiet(SensitivitySampler(60, random_state=7).fit, X, lambda i: loss[i])
    c, d = s.sample(random_state=1), s.sample(random_state=2)
    assert not np.array_equal(c.indices, d.indices)
    assert np.array_equal(c.indices[c.role == "representative"], d.indices[d.role == "representative"])


def test_identical_rows_warn_and_sample_uniformly():
    X = np.ones((100, 3))
    with pytest.warns(UserWarning, match="empty clusters|clustering cost 0"):
        s = SensitivitySampler(30, n_clusters=3, random_state=0).fit(X, lambda i: np.ones(i.size))
    free = s.probabilities_ > 0
    assert np.allclose(s.probabilities_[free], 1 / free.sum())


def test_all_zero_scores_fall_back_to_uniform():
    X = np.vstack([np.zeros((30, 2)), np.ones((30, 2))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = SensitivitySampler(20, n_clusters=2, clusterer=FixedCenters([[0, 0], [1, 1]])).fit(
            X, lambda i: np.zeros(i.size))
    said = [str(w.message) for w in caught]
    assert any("all scores are 0: sampling falls back to uniform" in m for m in said), said
    assert any("all representative losses are 0" in m for m in said), said
    free = s.probabilities_ > 0
    assert free.sum() == 58 and np.allclose(s.probabilities_[free], 1 / 58)


def test_empty_clusters_from_a_custom_clusterer_are_dropped():
    X, loss = _blobs(200, 2, 3, 6)
    C = np.vstack([X[:3], [[1e6, 1e6], [-1e6, 1e6]]])
    with pytest.warns(UserWarning, match="dropped 2 empty clusters of 5"):
        s = SensitivitySampler(40, n_clusters=5, clusterer=FixedCenters(C)).fit(X, lambda i: loss[i])
    assert s.n_clusters_ == 3 and s.labels_.max() == 2 and s.representatives_.size == 3
    sel = s.sample()   # the budget still holds: 3 representatives + 37 draws
    assert sel.counts.sum() == 40 and np.sum(sel.role == "representative") == 3


def test_singletons_under_cluster_normalization():
    X = np.vstack([np.random.default_rng(0).normal(size=(50, 2)), [[100.0, 100.0]]])
    C = np.array([[0.0, 0.0], [100.0, 100.0]])
    s = SensitivitySampler(20, score="kmeans", normalize="cluster", n_clusters=2, clusterer=FixedCenters(C)).fit(X)
    assert np.all(np.isfinite(s.probabilities_)) and s.probabilities_.sum() == pytest.approx(1)
    # the singleton has zero cost: only its size term 1/1, the largest score of all
    assert s.probabilities_[50] == s.probabilities_.max()


def test_z_is_an_exponent_not_a_norm_order():
    # pitfall 5: |e - c|^z with the euclidean norm, not the l_z norm to the power z
    X = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    s = _quiet(SensitivitySampler(3, score="kmeans", n_clusters=1, z=3.0, clusterer=FixedCenters([[0.0, 0.0]])).fit, X)
    np.testing.assert_allclose(s._D, [0.0, 125.0, 1.0])


def test_float32_distances_are_clipped_and_summed_in_float64():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(5000, 16)) * 1e3 + 1e4).astype(np.float32)
    X[1] = X[0]
    s = _quiet(SensitivitySampler(100, score="kmeans", random_state=0).fit, X)
    assert np.all(s._D >= 0) and s._D.dtype == np.float64
    assert s.clustering_cost_ == pytest.approx(float(np.sum(s._D, dtype=np.float64)), rel=1e-12)


def test_warnings_k_vs_m_and_tiny_probabilities():
    X, loss = _blobs(300, 3, 5, 7)
    with pytest.warns(UserWarning, match="n_clusters=40 > m/3"):
        SensitivitySampler(60, n_clusters=40, random_state=0).fit(X, lambda i: loss[i])
    loss2 = loss.copy()
    with pytest.warns(UserWarning, match="all representative losses are 0"):
        SensitivitySampler(60, n_clusters=5, random_state=0).fit(X, lambda i: np.zeros(i.size))
    loss2[:] = 1e-9
    loss2[0] = 1e6
    with pytest.warns(UserWarning, match="consider uniform_mix=0.05"):
        SensitivitySampler(60, n_clusters=5, lam=0.0, random_state=0).fit(X, lambda i: np.where(i == i[0], 1e9, 1e-6))
    s = _quiet(SensitivitySampler(60, n_clusters=5, lam=0.0, uniform_mix=0.05, random_state=0).fit,
               X, lambda i: np.where(i == i[0], 1e9, 1e-6))
    free = s.probabilities_ > 0
    assert s.probabilities_[free].min() * free.sum() >= 0.05 - 1e-12


def test_memmap_and_array_give_one_selection(tmp_path):
    # one rule for 'auto' (by rows, not by storage): the same data as a memmap or in memory select alike
    X, loss = _blobs(3000, 8, 6, 8)
    path = tmp_path / "e.npy"
    np.save(path, X.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    s = _quiet(SensitivitySampler(100, score="kmeans", random_state=0).fit, mm)
    t = _quiet(SensitivitySampler(100, score="kmeans", random_state=0).fit, np.array(mm))
    assert s.backend_ == t.backend_ == "kmeans" and isinstance(mm, np.memmap)
    assert np.array_equal(s.sample().indices, t.sample().indices)


def test_far_from_origin_float32_is_assigned_exactly():
    # the float32 GEMM runs on shifted data: with x = 1e4 + N(0, 1) the plain |x|^2 - 2 x.c + |c|^2 misassigned
    # 97 % of the rows
    base = np.random.default_rng(0).normal(size=(3000, 8))
    X = (base + 1e4).astype(np.float32)
    s = _quiet(SensitivitySampler(250, score="kmeans", random_state=0).fit, X)
    exact = np.argmin(((X.astype(np.float64)[:, None, :] - s.cluster_centers_[None]) ** 2).sum(-1), axis=1)
    assert np.mean(s.labels_ == exact) > 0.999
    shifted = _quiet(SensitivitySampler(250, score="kmeans", random_state=0).fit, base.astype(np.float32))
    assert s.clustering_cost_ < 1.5 * shifted.clustering_cost_


def test_overflowing_distances_are_an_error_not_an_empty_selection():
    X = np.random.default_rng(0).normal(size=(200, 3)) * 1e200
    with pytest.raises(ValueError, match="squared distances overflow float64"):
        _quiet(select, X, 40, loss_fn=lambda i: np.ones(i.size), random_state=0)


def test_another_loss_function_is_asked_for_every_row():
    X, loss = _blobs(400, 3, 4, 12)

    def fa(i):
        return loss[i]

    calls = []

    def fb(i):
        calls.append(i)
        return 100 * loss[i]

    sel = _quiet(select, X, 60, loss_fn=fa, random_state=0)
    a = sel.estimate_mean(fa)[0]
    b = sel.estimate_mean(fb)[0]
    assert b == pytest.approx(100 * a) and calls[0].size == len(sel)
    assert sel.estimate_mean(np.asarray(loss[sel.indices])[:, None])[0] == pytest.approx(a)
    with pytest.raises(ValueError, match="losses must be >= 0"):
        sel.estimate_mean(-loss[sel.indices])
    import pickle

    s = _quiet(SensitivitySampler(60, random_state=0).fit, X, lambda i: loss[i])
    assert pickle.loads(pickle.dumps(s)).sample().indices.tolist() == s.sample().indices.tolist()
    assert pickle.loads(pickle.dumps(s.sample())).n_total == 400


def test_clusterer_without_centres_and_ignored_n_clusters():
    from sklearn.cluster import AgglomerativeClustering

    X, loss = _blobs(200, 3, 4, 13)
    with pytest.raises(ValueError, match="got AgglomerativeClustering, which has no cluster_centers_ after fit"):
        _quiet(select, X, 40, score="kmeans", clusterer=AgglomerativeClustering(4))
    with pytest.warns(UserWarning, match="n_clusters=6 does not apply to a fitted clusterer"):
        SensitivitySampler(40, score="kmeans", n_clusters=6, clusterer=KMeans(4, n_init=1, random_state=0).fit(X)
                           ).fit(X)


def test_lam_zero_warns_about_items_that_can_never_be_drawn():
    X, loss = _blobs(300, 3, 5, 14)
    with pytest.warns(UserWarning, match="items have probability 0"):
        SensitivitySampler(60, n_clusters=5, lam=0.0, random_state=0).fit(X, lambda i: np.where(i == i[0], 0.0, 1.0))


def test_fitted_kmeans_is_used_as_given():
    X, loss = _blobs(500, 4, 5, 9)
    km = KMeans(5, n_init=1, random_state=0).fit(X)
    s = SensitivitySampler(50, n_clusters=5, clusterer=km).fit(X, lambda i: loss[i])
    assert np.array_equal(s.cluster_centers_, km.cluster_centers_) and np.array_equal(s.labels_, km.labels_)


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("call, exc, match", [
    (lambda X: select(X[:, 0], 5, score="kmeans"), ValueError,
     r"X must be 2-D with at least 1 row and 1 column; got shape \(50,\)"),
    (lambda X: select(np.where(np.arange(50)[:, None] == 7, np.nan, X), 5, score="kmeans"), ValueError,
     "X must be finite; found NaN or inf in row 7"),
    (lambda X: select(X.astype(str), 5, score="kmeans"), TypeError, "X must be a numeric array-like; got dtype <U"),
    (lambda X: select(__import__("scipy.sparse").sparse.csr_array(X), 5, score="kmeans"), TypeError,
     "X must be a dense numeric array \\(or memmap\\): sparse input is not supported; got scipy"),
    (lambda X: select(X.astype(complex), 5, score="kmeans"), TypeError,
     "X must be a numeric array-like; got dtype complex128"),
    (lambda X: select(np.array([["a"] * 3] * 50, dtype=object), 5, score="kmeans"), TypeError,
     "X must be a numeric array-like; got dtype object"),
    (lambda X: select(X, 51, score="kmeans"), ValueError, r"budget must be an integer in \[1, 50\]; got 51"),
    (lambda X: select(X, 2.5, score="kmeans"), TypeError, r"budget must be an integer in \[1, 50\]; got float 2.5"),
    (lambda X: select(X, 10, score="kmeans", n_clusters=0), ValueError,
     r"n_clusters must be an integer in \[1, 50\]; got 0"),
    (lambda X: select(X, 10, n_clusters=10, loss_fn=lambda i: i * 0.0), ValueError,
     "budget must be >= n_clusters \\+ 1 = 11 for score='loss'; got 10"),
    (lambda X: select(X, 10, score="margin"), ValueError, "score must be 'loss' or 'kmeans'; got 'margin'"),
    (lambda X: select(X, 10, score="kmeans", normalize="l2"), ValueError,
     "normalize must be 'global' or 'cluster'; got 'l2'"),
    (lambda X: select(X, 10, score="kmeans", z=0.5), ValueError, "z must be a finite float >= 1; got 0.5"),
    (lambda X: select(X, 10, score="kmeans", z=float("inf")), ValueError, "z must be a finite float >= 1; got inf"),
    (lambda X: select(X, 10, score="kmeans", lam="auto"), ValueError,
     "lam must be 'balanced' or a finite float >= 0; got 'auto'"),
    (lambda X: select(X, 10, score="kmeans", lam=-1.0), ValueError,
     "lam must be 'balanced' or a finite float >= 0; got -1"),
    (lambda X: select(X, 10, score="kmeans", uniform_mix=1.0), ValueError,
     r"uniform_mix must be a float in \[0, 1\); got 1"),
    (lambda X: select(X, 10, score="kmeans", clusterer="faiss"), ValueError,
     "clusterer must be 'auto', 'kmeans', 'minibatch', 'torch' or an estimator with cluster_centers_; got 'faiss'"),
    (lambda X: select(X, 10), ValueError,
     "score='loss' needs loss_fn\\(indices\\) -> losses; pass loss_fn or use score='kmeans'"),
    (lambda X: select(X, 10, loss_fn=lambda i: np.ones(3)), ValueError,
     r"loss_fn must return 2 finite losses >= 0; got shape \(3,\), 3 invalid"),
    (lambda X: select(X, 10, loss_fn=lambda i: np.array([1.0, np.nan])), ValueError,
     r"loss_fn must return 2 finite losses >= 0; got shape \(2,\), 1 invalid"),
    (lambda X: select(X, 10, loss_fn=lambda i: -np.ones(2)), ValueError,
     r"loss_fn must return 2 finite losses >= 0; got shape \(2,\), 2 invalid"),
    (lambda X: select(X, 10, score="kmeans", random_state=-1), ValueError,
     "random_state must be None, an int >= 0 or a numpy.random.Generator; got -1"),
    (lambda X: SensitivitySampler(10, score="kmeans").sample(), NotFittedError, "not fitted yet"),
    (lambda X: SensitivitySampler(10, score="kmeans").fit(X).sample(n_samples=-1), ValueError,
     "n_samples must be an int >= 0; got -1"),
    (lambda X: select(X, 10, score="kmeans").estimate_mean(np.ones(3)), ValueError,
     "losses must have one value per selected item"),
])
def test_validation(call, exc, match):
    X = np.random.default_rng(0).normal(size=(50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(exc, match=match):
            call(X)


def test_numbers_held_as_objects_are_accepted():
    X = np.random.default_rng(0).normal(size=(60, 3))
    a = _quiet(select, X.astype(object), 10, score="kmeans", random_state=0)
    b = _quiet(select, X, 10, score="kmeans", random_state=0)
    assert np.array_equal(a.indices, b.indices)


def test_selection_is_a_plain_record():
    sel = _quiet(select, np.random.default_rng(0).normal(size=(100, 2)), 20, score="kmeans", random_state=0)
    assert isinstance(sel, Selection) and len(sel) == sel.n_unique <= 20
    assert 0 < sel.effective_sample_size <= len(sel)
    assert set(sel.to_dict()) == {"index", "weight", "count", "probability", "role", "loss"}


def test_torch_clusterer_on_cpu_matches_sklearn_cost_and_assignment():
    pytest.importorskip("torch")
    from teraml.selection._cluster import assign, assign_torch

    X, loss = _blobs(3000, 8, 10, 11)
    t = _quiet(SensitivitySampler(200, score="kmeans", n_clusters=10, clusterer="torch", random_state=0).fit, X)
    k = _quiet(SensitivitySampler(200, score="kmeans", n_clusters=10, clusterer="kmeans", random_state=0).fit, X)
    assert t.backend_ == "torch" and t.clustering_cost_ <= 1.02 * k.clustering_cost_
    la, da = assign(X, t.cluster_centers_)
    lb, db = assign_torch(X, t.cluster_centers_)
    assert np.mean(la == lb) > 0.999 and np.allclose(da[la == lb], db[la == lb], rtol=1e-9)


def test_torch_clusterer_without_torch_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"clusterer='torch' requires torch: pip install teraml\[torch\]"):
        select(np.random.default_rng(0).normal(size=(50, 2)), 10, score="kmeans", clusterer="torch")
