"""Data: built-in data sets, preprocessing fitted on train only, in-memory batching, augmentation."""

from babysit.data import readers  # noqa: F401  (importing registers the local-file data sets)
from babysit.data.datasets import Dataset, Split, load_dataset, select_classes

__all__ = ["Dataset", "Split", "load_dataset", "select_classes"]
