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
import scipy.sparse

from deepfound.data.errors import DataError
from deepfound.registry import Option, Registry

# data.<key>s shared by the built-in sets (``base_config`` defines them; a set may add its own
# through ``DatasetSpec.options``).
SHARED_KEYS = ("path", "num_samples", "num_features", "seed", "test_fraction")


class Dataset(NamedTuple):
  """A finite data set on the host.

  ``features`` may be a ``scipy.sparse`` CSR matrix (n, p) (the ``libsvm`` set: rcv1 is
  20,242 x 47,236 at 0.16% density); the model decides whether to densify it. Use
  ``features.shape[0]``, not ``len(features)`` (undefined for sparse matrices), and
  ``is_sparse``.
  """

  features: np.ndarray  # (n, p) dense or scipy.sparse CSR, or images (n, H, W, C)
  targets: np.ndarray  # (n,): +-1, class ids or reals, as the set has them
  test: tuple[np.ndarray, np.ndarray] | None = None  # its own test split; None: one is drawn
  # (its features sparse or dense like the training features')


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
  # Where training row i of a loaded set comes from, for messages (a file's "line 17");
  # None: "row i".
  locate: Callable[[Any, int], str] | None = None


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
  """Class labels as int32 ids 0..K-1 and K.

  Labels that already are 0..K-1 (each present in the training set) are kept. Two label values
  (-1/+1, 1/2), or a run of consecutive integers (LIBSVM's 1..K), are numbered in sorted order.
  Anything else is refused: a label of 255 among ten digits is an error in the file, not a
  256-class problem.
  """
  for name, labels in (("training", train), ("test", test)):
    bad = np.flatnonzero(labels != np.round(labels))
    if bad.size:
      raise DataError(f"{source}: {name} label {labels[bad[0]].item()!r} in row {bad[0]} of the "
                      "split is not an integer class label")
  classes = np.unique(train)
  consecutive = classes.size and classes[0] in (0, 1) and (
      classes[-1] - classes[0] + 1 == len(classes))
  if not (consecutive or len(classes) == 2):
    odd = 0 if not classes.size or classes[0] not in (0, 1) else int(
        np.flatnonzero(np.diff(classes) > 1)[0]) + 1
    row = int(np.flatnonzero(train == classes[odd])[0]) if classes.size else 0
    raise DataError(f"{source}: labels must be the classes 0..K-1 or 1..K (or two values); found "
                    f"{len(classes)} distinct labels from {classes[0]:g} to {classes[-1]:g}, label "
                    f"{classes[odd]:g} in row {row} does not fit")
  unknown = np.flatnonzero(~np.isin(test, classes))
  if unknown.size:
    raise DataError(f"{source}: test label {test[unknown[0]].item()!r} in row {unknown[0]} of the "
                    f"split is not among the training labels {classes[0]:g}..{classes[-1]:g}")
  return (np.searchsorted(classes, train).astype(np.int32),
          np.searchsorted(classes, test).astype(np.int32), len(classes))


def is_sparse(features) -> bool:
  """Whether ``features`` is a ``scipy.sparse`` matrix or array (CSR, CSC, COO, ...)."""
  return scipy.sparse.issparse(features)


def density(features) -> float:
  """The fraction of non-zero entries: non-zeros / (n p); for a dense array, of all entries.

  Explicit zeros stored in a sparse matrix do not count. An empty array has density 0.
  """
  if is_sparse(features):
    size = int(np.prod(features.shape, dtype=np.int64))
    return float(features.count_nonzero()) / size if size else 0.0
  features = np.asarray(features)
  return float(np.count_nonzero(features)) / features.size if features.size else 0.0


def _num_rows(values) -> int:
  return values.shape[0] if is_sparse(values) else len(values)


def _first_bad_row(values, what: str, source: str, name: str) -> int | None:
  """The row of the first NaN or infinite value, or None; a sparse matrix is not densified."""
  try:
    if is_sparse(values):
      matrix = values.tocsr()
      bad = np.flatnonzero(~np.isfinite(np.asarray(matrix.data, np.float64)))
      if not bad.size:
        return None
      return int(np.searchsorted(matrix.indptr, bad[0], side="right")) - 1
    values = np.asarray(values, np.float64).reshape(len(values), -1)
  except (TypeError, ValueError) as e:
    raise DataError(f"{source}: the {name}{what}s are not numbers ({e})") from e
  bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
  return int(bad[0]) if bad.size else None


def check_dataset(dataset: Dataset, source: str) -> None:
  """As many targets as samples, finite values, and a test split shaped like the training set.

  Features may be dense or ``scipy.sparse``; sparse ones are checked through their stored
  values, never densified.
  """
  parts = [("", dataset.features, dataset.targets)]
  if dataset.test is not None:
    parts.append(("test ", *dataset.test))
  for name, features, targets in parts:
    rows = _num_rows(features)
    if rows != len(targets):
      raise DataError(f"{source}: {rows} {name}samples but {len(targets)} labels")
    if rows == 0:
      raise DataError(f"{source}: no {name}samples")
    for what, values in (("feature", features), ("label", targets)):
      bad = _first_bad_row(values, what, source, name)
      if bad is not None:
        raise DataError(f"{source}: {name}row {bad} has a NaN or infinite {what}")
  if dataset.test is not None and dataset.test[0].shape[1:] != dataset.features.shape[1:]:
    raise DataError(f"{source}: test samples have shape {dataset.test[0].shape[1:]}, training "
                    f"samples {dataset.features.shape[1:]}")


def check_range(dataset: Dataset, precision: str, source: str,
                where: Callable[[int], str] | None = None) -> None:
  """Features and targets that a linear model can use in ``precision`` (float32, float64).

  Every value must be finite in ``precision`` (1e39 overflows float32), and every row's squared
  norm finite in float64, in which the step sizes (1/L_max) and E* are computed. ``where(i)``
  names training row i in messages (default "row i"); a problem is a one-line ``DataError``.
  Sparse features are not densified.
  """
  largest = float(np.finfo(precision).max)
  parts = [("", dataset.features, dataset.targets)]
  if dataset.test is not None:
    parts.append(("test ", *dataset.test))
  for name, features, targets in parts:
    def place(row, name=name):
      return where(row) if where is not None and not name else f"{name}row {row}"

    targets = np.asarray(targets)
    if targets.dtype.kind == "f":
      bad = np.flatnonzero(np.abs(targets.astype(np.float64)) > largest)
      if bad.size:
        raise DataError(f"{source}: {place(int(bad[0]))}: the label {targets[bad[0]]:g} overflows "
                        f"{precision} (largest {largest:.3g}); use precision=float64 or rescale "
                        "the labels")
    over, squares = _overflows(features, largest)
    if over is not None:
      row, value = over
      raise DataError(f"{source}: {place(row)}: the value {value:g} overflows {precision} "
                      f"(largest {largest:.3g}); use precision=float64 or rescale the features")
    bad = np.flatnonzero(~np.isfinite(squares))
    if bad.size:
      raise DataError(f"{source}: {place(int(bad[0]))}: its squared norm overflows float64, in "
                      "which the step sizes and E* are computed; rescale the features")


def _overflows(features, largest: float) -> tuple[tuple[int, float] | None, np.ndarray]:
  """(row, value) of the first value above ``largest`` (or None), and each row's squared norm in
  float64 (inf where it overflows); a sparse matrix is not densified."""
  if is_sparse(features):
    matrix = scipy.sparse.csr_matrix(features, dtype=np.float64)
    values, counts = matrix.data, np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    with np.errstate(over="ignore"):
      squares = np.bincount(rows, values * values, minlength=matrix.shape[0])
    bad = np.flatnonzero(np.abs(values) > largest)
    return ((int(rows[bad[0]]), float(values[bad[0]])) if bad.size else None), squares
  values = np.asarray(features, np.float64).reshape(len(features), -1)
  with np.errstate(over="ignore"):
    squares = np.einsum("ij,ij->i", values, values)
  bad = np.argwhere(np.abs(values) > largest)
  return ((int(bad[0][0]), float(values[tuple(bad[0])])) if len(bad) else None), squares


# A sparse set is refused when its columns exceed both numbers: far more columns than values is
# a stray index (one 1e8 in a 300-line file), not data; every step and evaluation of a linear
# model costs memory and time in all p columns. Hashed features (2^24 buckets) stay below.
MAX_EMPTY_COLUMNS = 2**24
COLUMNS_PER_VALUE = 1000


def check_columns(dataset: Dataset, source: str, where: Callable[[int], str] | None = None) -> None:
  """Refuses sparse features with absurdly more columns than stored values (see
  ``MAX_EMPTY_COLUMNS``), naming the row (``where(i)``) that holds the highest column."""
  features = dataset.features
  if not is_sparse(features):
    return
  matrix = scipy.sparse.csr_matrix(features)
  columns = matrix.shape[1]
  if columns <= max(MAX_EMPTY_COLUMNS, COLUMNS_PER_VALUE * matrix.nnz) or not matrix.nnz:
    return
  top = int(np.argmax(matrix.indices))
  row = int(np.searchsorted(matrix.indptr, top, side="right")) - 1
  place = where(row) if where is not None else f"row {row}"
  used = np.unique(matrix.indices).size
  raise DataError(f"{source}: {columns:,} feature columns for {matrix.nnz:,} non-zero values "
                  f"({used:,} columns used); the highest index, {int(matrix.indices[top]) + 1:,}, "
                  f"is on {place}: a stray index makes every step cost all {columns:,} columns; "
                  "fix that line")
