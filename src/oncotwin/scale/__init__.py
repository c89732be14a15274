"""Scale-out backends for cohorts and trials (Dask :mod:`distributed`).

:class:`~oncotwin.scale.dask.DaskExecutor` runs the chunks of a virtual trial
(:func:`oncotwin.trials.run.run_trial`) on a Dask cluster: a ``LocalCluster`` by default or
any running scheduler by address. Results are bit-identical to the in-process run for the same
seed, whatever the number of workers.
"""

from __future__ import annotations

from .dask import DaskExecutor

__all__ = ["DaskExecutor"]
