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
  """Class labels as int32 and the number of classes K: the labels must be the integers
  0..K-1, every one of them present in the training set (a label of 255 among ten digits is
  refused, not taken as a 256-class problem)."""
  for name, labels in (("training", train), ("test", test)):
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0))
    if bad.size:
      raise DataError(f"{source}: {name} label {labels[bad[0]].item()!r} in row {bad[0]} is not a class id "
                      "(an integer >= 0)")
  num_classes = int(max(train.max(), test.max())) + 1
  present = np.unique(train)
  if len(present) != num_classes:
    row = int(np.flatnonzero(train == present[-1])[0])
    raise DataError(f"{source}: labels must be the classes 0..K-1, each in the training set; found "
                    f"{len(present)} distinct labels, the largest {present[-1]:g} (row {row})")
  return train.astype(np.int32), test.astype(np.int32), num_classes


def check_dataset(dataset: Dataset, source: str) -> None:
  """As many targets as samples, finite values, and a test split shaped like the training set."""
  parts = [("", dataset.features, dataset.targets)]
  if dataset.test is not None:
    parts.append(("test ", *dataset.test))
  for name, features, targets in parts:
    if len(features) != len(targets):
      raise DataError(f"{source}: {len(features)} {name}samples but {len(targets)} labels")
    if len(features) == 0:
      raise DataError(f"{source}: no {name}samples")
    for what, values in (("feature", features), ("label", targets)):
      bad = np.flatnonzero(~np.isfinite(np.asarray(values, np.float64).reshape(len(values), -1)).all(axis=1))
      if bad.size:
        raise DataError(f"{source}: {name}row {bad[0]} has a NaN or infinite {what}")
  if dataset.test is not None and dataset.test[0].shape[1:] != dataset.features.shape[1:]:
    raise DataError(f"{source}: test samples have shape {dataset.test[0].shape[1:]}, training "
                    f"samples {dataset.features.shape[1:]}")
