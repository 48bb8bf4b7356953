"""The data-selection generators: make_loss_blobs (E1) and make_leverage_regression (E3)."""

import numpy as np
import pytest

from teraml import datasets as ds


def test_loss_blobs_shapes_determinism_and_structure():
    X, losses, labels = ds.make_loss_blobs(20_000, 8, 30, random_state=1)
    assert X.shape == (20_000, 8) and X.dtype == np.float64
    assert losses.shape == labels.shape == (20_000,) and labels.dtype == np.int64
    X2, l2, lab2 = ds.load("loss_blobs", n_samples=20_000, n_features=8, n_centers=30, random_state=1)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(losses, l2)
    np.testing.assert_array_equal(labels, lab2)
    sizes = np.bincount(labels, minlength=30)
    assert sizes.min() >= 1 and sizes.max() > 5 * np.median(sizes)        # heavy-tailed sizes
    assert np.all(losses > 0)
    # unit noise around each blob's mean; the loss varies far more between blobs than inside one
    means = np.array([X[labels == c].mean(axis=0) for c in range(30)])
    resid = X - means[labels]
    big = sizes[labels] > 200
    assert resid[big].std() == pytest.approx(1.0, abs=0.02)
    base = np.array([np.median(losses[labels == c]) for c in range(30)])
    within = np.median(np.abs(losses / base[labels] - 1))
    assert within < 0.15 and base.max() / base.min() > 20
    assert not np.array_equal(ds.make_loss_blobs(20_000, 8, 30, random_state=2)[0], X)


def test_loss_blobs_defaults_and_small_sizes():
    X, losses, labels = ds.make_loss_blobs()
    assert X.shape == (100_000, 16) and np.unique(labels).size == 50
    X, losses, labels = ds.make_loss_blobs(7, 2, 10, random_state=0)
    assert X.shape == (7, 2) and labels.max() < 10


def test_leverage_regression_is_the_e3_model():
    A, b, x_star = ds.make_leverage_regression(random_state=0)
    assert A.shape == (20_000, 10) and b.shape == (20_000,) and x_star.shape == (10,)
    A2, b2, x2 = ds.load("leverage_regression", random_state=0)
    np.testing.assert_array_equal(A, A2)
    np.testing.assert_array_equal(b, b2)
    theta = np.linalg.lstsq(np.column_stack([A, np.ones(20_000)]), b, rcond=None)[0]
    np.testing.assert_allclose(theta[:-1], x_star, atol=0.05)
    assert theta[-1] == pytest.approx(3.0, abs=0.1)
    # heavy-tailed rows: a few rows carry a large share of the leverage
    norms = np.linalg.norm(A, axis=1)
    assert norms.max() > 100 * np.median(norms)
    # column scales grow from 1 to 5 (before the common row scaling)
    scale = np.median(np.abs(A), axis=0)
    assert scale[-1] / scale[0] == pytest.approx(5.0, rel=0.15)


def test_selection_generator_validation():
    with pytest.raises(ValueError, match=r"^n_samples must be an int >= 1; got 0$"):
        ds.make_loss_blobs(0)
    with pytest.raises(ValueError, match=r"^n_centers must be an int >= 1; got 0$"):
        ds.make_loss_blobs(10, 2, 0)
    with pytest.raises(TypeError, match=r"^n_features must be an int >= 1; got float 2.0$"):
        ds.make_leverage_regression(10, 2.0)
