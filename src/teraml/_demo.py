"""The demo and benchmark registry: the one place where components register their demo and benchmark.

A demo is a function ``run(ctx: DemoContext) -> DemoSection``. It runs a quick version of its
component's benchmark on offline data (about a minute) and returns summary rows, tables, figures
and notes; the report layer (``teraml.report``) renders them. Algorithm packages only import this
small module, never ``teraml.report``.

A benchmark is a module ``teraml.<package>._bench`` with ``run(*, quick, verbose, **options) ->
DemoSection`` whose ``results`` hold its acceptance ``checks``, and optionally
``add_arguments(parser)`` for options of its own; ``teraml bench NAME`` imports it, so it runs from
an installed wheel as well as from a checkout.

To register a component, add one line to :data:`REGISTRY` (``("name", "module:function")``) and, for
a benchmark, one entry to :data:`BENCHMARKS` (``"name": "module"``).

Example
-------
>>> [name for name, _ in REGISTRY][:2]
['datasets', 'tinylm']
>>> sorted(BENCHMARKS)
['aggregate', 'anonymize', 'hac', 'hyperattention', 'selection', 'spark', 'sparsity', 'subgen', 'tinylm']
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

__all__ = ["REGISTRY", "BENCHMARKS", "DemoContext", "DemoSection", "SummaryRow", "resolve"]

#: Registered demos, in the order they run: (name, "module:function").
REGISTRY: list[tuple[str, str]] = [
    ("datasets", "teraml.datasets._demo:run"),
    ("tinylm", "teraml.models._demo:run"),
    ("hyperattention", "teraml.attention._bench:demo"),
    ("aggregate", "teraml.aggregate._bench:demo"),
    ("hac", "teraml.hac._bench:demo"),
    ("selection", "teraml.selection._bench:demo"),
    ("spark", "teraml.hac._bench_spark:demo"),
    ("anonymize", "teraml.anonymize._bench:demo"),
    ("sparsity", "teraml.sparsity._bench:demo"),
    ("subgen", "teraml.kvcache._bench:demo"),
]

#: Registered benchmarks: ``teraml bench NAME`` runs ``run()`` of the module (results/NAME.json + report).
BENCHMARKS: dict[str, str] = {
    "hyperattention": "teraml.attention._bench",
    "aggregate": "teraml.aggregate._bench",
    "hac": "teraml.hac._bench",
    "tinylm": "teraml.models._bench",
    "selection": "teraml.selection._bench",
    "spark": "teraml.hac._bench_spark",
    "anonymize": "teraml.anonymize._bench",
    "sparsity": "teraml.sparsity._bench",
    "subgen": "teraml.kvcache._bench",
}


@dataclasses.dataclass
class SummaryRow:
    """One row of the demo's summary table.

    ``ratio`` is ours relative to the baseline in the direction stated by ``what``; ``None`` when a
    ratio makes no sense.
    """

    component: str
    what: str
    ours: str
    baseline: str
    ratio: float | None = None


@dataclasses.dataclass
class DemoContext:
    """What a demo gets: verbosity, an output directory for its files, and flags."""

    out_dir: Any
    verbose: bool = True
    retrain: bool = False
    quick: bool = True


@dataclasses.dataclass
class DemoSection:
    """What a demo returns: rows for the summary, then its own report section.

    ``tables`` is a list of ``(caption, headers, rows)``; ``figures`` a list of
    ``(caption, matplotlib.figure.Figure)``; ``results`` is JSON-serialisable.
    """

    title: str
    summary: list[SummaryRow] = dataclasses.field(default_factory=list)
    text: str = ""
    tables: list[tuple[str, list[str], list[list[Any]]]] = dataclasses.field(default_factory=list)
    figures: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    results: dict = dataclasses.field(default_factory=dict)


def resolve(target: str):
    """Import ``"module:function"`` and return the function."""
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)
