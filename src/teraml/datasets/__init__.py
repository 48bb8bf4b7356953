"""Offline datasets: scikit-learn's bundled data, Python's stdlib source text, seeded generators.

Nothing here downloads: :func:`load` refuses names that would need the network with a clear
``ValueError``.

>>> from teraml import datasets
>>> X, y = datasets.load("wine")
>>> X.shape
(178, 13)
"""

from __future__ import annotations

from teraml._validation import check_instance
from teraml.datasets._criteo import make_criteo_like
from teraml.datasets._kvstreams import (
    ClusterableKVStream,
    NeedleKVStream,
    make_clusterable_kv_stream,
    make_needle_kv_stream,
)
from teraml.datasets._sklearn import load_breast_cancer, load_diabetes, load_digits, load_wine
from teraml.datasets._synthetic import (
    make_aggregate_classification,
    make_aggregate_regression,
    make_attention_qkv,
    make_gaussian_mixture,
    make_leverage_regression,
    make_lookalike_regression,
    make_loss_blobs,
    make_planted_partition_graph,
)
from teraml.datasets._text import stdlib_files, stdlib_text, stdlib_text_sha256, unigram_entropy

__all__ = [
    "load",
    "available",
    "load_digits",
    "load_diabetes",
    "load_breast_cancer",
    "load_wine",
    "stdlib_text",
    "stdlib_files",
    "stdlib_text_sha256",
    "unigram_entropy",
    "make_gaussian_mixture",
    "make_planted_partition_graph",
    "make_attention_qkv",
    "make_aggregate_regression",
    "make_aggregate_classification",
    "make_loss_blobs",
    "make_leverage_regression",
    "make_lookalike_regression",
    "make_criteo_like",
    "make_clusterable_kv_stream",
    "make_needle_kv_stream",
    "ClusterableKVStream",
    "NeedleKVStream",
]

_REGISTRY = {
    "digits": load_digits,
    "diabetes": load_diabetes,
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "stdlib_text": stdlib_text,
    "gaussian_mixture": make_gaussian_mixture,
    "planted_partition_graph": make_planted_partition_graph,
    "attention_qkv": make_attention_qkv,
    "aggregate_regression": make_aggregate_regression,
    "aggregate_classification": make_aggregate_classification,
    "loss_blobs": make_loss_blobs,
    "leverage_regression": make_leverage_regression,
    "lookalike_regression": make_lookalike_regression,
    "criteo_like": make_criteo_like,
}

# Well-known datasets that exist only behind a download: named so that asking for one fails fast
# with an explanation instead of hanging on a network call.
_NEEDS_DOWNLOAD = {
    "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet", "california_housing", "covtype",
    "kddcup99", "20newsgroups", "newsgroups", "lfw_people", "lfw_pairs", "olivetti_faces", "rcv1",
    "species_distributions", "openml", "criteo", "wikitext", "wikitext103", "pg19", "openwebtext",
    "the_pile", "c4", "adult", "higgs", "susy",
}


def available() -> list[str]:
    """Names accepted by :func:`load`.

    >>> "digits" in available()
    True
    """
    return sorted(_REGISTRY)


def load(name: str, **kwargs):
    """Load an offline dataset by name; ``kwargs`` go to its loader or generator.

    >>> X, y = load("gaussian_mixture", n_samples=100, random_state=1)
    >>> X.shape
    (100, 2)
    """
    check_instance("name", name, str, f"a str (one of {', '.join(available())})")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    for prefix in ("load_", "make_", "fetch_"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    if key in _REGISTRY:
        return _REGISTRY[key](**kwargs)
    if key in _NEEDS_DOWNLOAD or name.startswith("fetch_"):
        raise ValueError(
            f"name {name!r} is a dataset that needs a download, and teraml never downloads at run time; "
            f"offline datasets are: {', '.join(available())}"
        )
    raise ValueError(f"name must be one of {', '.join(repr(n) for n in available())}; got {name!r}")
