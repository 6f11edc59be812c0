"""Multi-objective, budget-aware architecture search on Optuna.

::

    from edgenas.search import run_search
    result = run_search({
        "space": {"name": "tiny"}, "task": {"num_classes": 10, "in_channels": 1},
        "devices": [{"name": "local-cpu-ort"}],
        "estimator": {"name": "synflow"},
        "search": {"objectives": ["accuracy", "latency_ms"], "budgets": ["latency_ms<=0.1"],
                   "sampler": "frontier", "trials": 50},
    }, "runs/example")
    result.front        # list of dicts: trial, arch, objectives, costs, estimator record

Pieces: :mod:`~edgenas.search.fields` (objectives, budgets), :mod:`~edgenas.search.oracle` (cheap cost
and latency), :mod:`~edgenas.search.cheapest` (impossible-budget check), :mod:`~edgenas.search.samplers`
(registry: Optuna's and ours), :mod:`~edgenas.search.study` (storage, exact trial budgets, resume),
:mod:`~edgenas.search.worker` (the trial objective), :mod:`~edgenas.search.run` (orchestration),
:mod:`~edgenas.search.outputs` (run folder), :mod:`~edgenas.search.owncost` and :mod:`~edgenas.search.meter`
(what the search itself costs: CPU, wall time, energy).
"""

from __future__ import annotations

from edgenas.search.run import SearchResult, run_search

__all__ = ["SearchResult", "run_search"]
