"""The registry of data sets: name -> loader, the config keys it reads, what it returns.

A loader takes the config's ``data`` group and returns a ``Dataset`` of host arrays. Each
loader file registers its sets with ``register_dataset``; a user's module can do the same, and
``data.name=<name>`` then works in ``scripts/train.py`` and ``scripts/sweep.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from deepfound.data.errors import DataError
from deepfound.registry import Option, Registry

# data.<key>s shared by the built-in sets (``base_config`` defines them; a set may add its own
# through ``DatasetSpec.options``).
SHARED_KEYS = ("path", "num_samples", "num_features", "seed", "test_fraction")


class Dataset(NamedTuple):
  """A finite data set on the host."""

  features: np.ndarray  # (n, p), or images (n, H, W, C)
  targets: np.ndarray  # (n,): +-1, class ids or reals, as the set has them
  test: tuple[np.ndarray, np.ndarray] | None = None  # its own test split; None: one is drawn


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A data set as the rest of the package sees it.

  ``load(data_config) -> Dataset``. A stream (``stream=True``: fresh samples every step, 17.2)
  has no arrays to load (``load`` is None): the problem draws its samples.
  """

  name: str
  load: Callable[[Any], Dataset] | None
  summary: str  # one line for --help
  uses: tuple[str, ...] = ()  # the shared data.<key>s it reads
  requires: tuple[str, ...] = ()  # those of them that must be set (e.g. "path")
  options: tuple[Option, ...] = ()  # keys of its own, data.<name>
  stream: bool = False


DATASETS: Registry[DatasetSpec] = Registry("data set")


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
  """Makes ``data.name=<spec.name>`` available; call it at import time of the loader's module."""
  unknown = set(spec.uses) - set(SHARED_KEYS)
  if unknown or not set(spec.requires) <= set(spec.uses):
    raise ValueError(f"data set {spec.name!r}: uses {sorted(unknown)} are not shared keys "
                     f"({', '.join(SHARED_KEYS)}), or requires keys it does not use")
  return DATASETS.register(spec, replace=replace)


def get_dataset(name: str) -> DatasetSpec:
  return DATASETS.get(name)


def binary_labels(labels: np.ndarray, source: str) -> np.ndarray:
  """Two label values (0/1, 1/2, -1/+1 all occur) as -1 (the smaller) and +1 (the larger)."""
  values = np.unique(labels)
  if values.size != 2:
    raise DataError(f"{source}: a binary model needs 2 label values, found {values.size}")
  return np.where(labels == values[1], 1.0, -1.0)


def class_ids(train: np.ndarray, test: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, int]:
  """Labels as class ids 0..K-1 and K: kept when they already are non-negative integers (K =
  the largest + 1), else the sorted distinct values numbered."""
  both = np.concatenate([np.ravel(train), np.ravel(test)])
  if both.size and np.all(both == np.round(both)) and both.min() >= 0:
    return train.astype(np.int32), test.astype(np.int32), int(both.max()) + 1
  classes = np.unique(train)
  if not np.all(np.isin(test, classes)):
    raise DataError(f"{source}: the test set has labels that the training set lacks")
  return (np.searchsorted(classes, train).astype(np.int32),
          np.searchsorted(classes, test).astype(np.int32), len(classes))
