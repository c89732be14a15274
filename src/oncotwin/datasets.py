"""Shipped real datasets: ``from oncotwin import datasets; datasets.load("vaghi2020-lung")``.

An alias of :mod:`oncotwin.data.datasets`.
"""

from .data.datasets import DATASETS, DatasetInfo, list_datasets, load, provenance

__all__ = ["DATASETS", "DatasetInfo", "list_datasets", "load", "provenance"]
