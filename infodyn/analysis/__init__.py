"""``infodyn.analyze``: checkpoints x layers x measures -> one tidy table.

The package has one module per job:

* :mod:`.measures` -- the measure registry (name, scope, what it needs, rows, defaults);
* :mod:`.plan` -- run folders -> runs -> one unit per checkpoint, with content-keyed jobs;
* :mod:`.execute` -- one unit: load the checkpoint once, one forward pass for every layer, every
  measure;
* :mod:`.cache` -- the per-(checkpoint, layer, measure) row cache;
* :mod:`.cluster` -- in-process, joblib workers or a Dask cluster;
* :mod:`.table` -- the tidy table (:data:`infodyn.tradeoff.COLUMNS`), CSV/Parquet, failures;
* :mod:`.api` -- :func:`analyze`.

The table: ``run`` (the manifest's ``name``, default the folder name), ``config`` and ``seed``
(the manifest's keys, else from the run name, ``tanh-seed3``), ``checkpoint``, ``order``,
``epoch``, ``step``, ``layer``, ``measure``, ``task`` (``source`` or ``target``), ``value`` (MI in
nats, accuracies as fractions), ``ci_low``/``ci_high``, ``method``, ``params`` (JSON), ``n``
(samples measured; for accuracies the samples tested), ``seconds``, ``error`` (empty when the
value is good).
"""
from .api import AnalysisInterrupted, analyze
from .execute import run_unit
from .measures import DEFAULT_MEASURES, available, parse_measures, register
from .plan import Run, Unit, expand_run_dirs, open_runs, plan_units, seed_and_config
from .table import failures, to_frame, write_table

__all__ = ["analyze", "AnalysisInterrupted", "DEFAULT_MEASURES", "available", "parse_measures", "register",
           "open_runs", "expand_run_dirs", "seed_and_config", "plan_units", "run_unit", "to_frame", "write_table",
           "failures", "Run", "Unit"]
