"""Loaders for scikit-learn's bundled sets and LIBSVM-format text files."""

from __future__ import annotations

import os

import numpy as np

from deepfound.data.errors import DataError
from deepfound.data.registry import Dataset, DatasetSpec, binary_labels, register_dataset


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled Wisconsin breast-cancer set (569 x 30), standardized, labels +-1."""
  import sklearn.datasets

  features, labels = sklearn.datasets.load_breast_cancer(return_X_y=True)
  features = (features - features.mean(axis=0)) / features.std(axis=0)
  return features, 2.0 * labels - 1.0


def load_libsvm(path: str, num_features: int | None = None, binary: bool = True):
  """A LIBSVM/SVMlight text file (``label index:value ...``, indices from 1) as dense arrays.

  The format of the standard benchmark sets (covtype, rcv1, a9a, ...). With ``binary`` the two
  label values are mapped to -1 and +1 (0/1, 1/2 and -1/+1 files all appear in the wild).
  """
  import sklearn.datasets

  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  try:
    sparse, labels = sklearn.datasets.load_svmlight_file(path, n_features=num_features)
  except (ValueError, OSError, RuntimeError) as e:
    raise DataError(f"malformed LIBSVM file {path}: {e}") from e
  if sparse.shape[0] == 0:
    raise DataError(f"LIBSVM file {path} holds no samples")
  features = np.asarray(sparse.todense())
  if not (np.all(np.isfinite(features)) and np.all(np.isfinite(labels))):
    raise DataError(f"LIBSVM file {path} holds a NaN or infinite value")
  if binary:
    labels = binary_labels(labels, f"LIBSVM file {path}")
  return features, labels


register_dataset(DatasetSpec(
    name="breast_cancer", load=lambda data: Dataset(*load_breast_cancer()),
    summary="scikit-learn's Wisconsin breast cancer set, 569 x 30, standardized, labels +-1"))
register_dataset(DatasetSpec(
    name="libsvm", load=lambda data: Dataset(*load_libsvm(data.path, binary=False)),
    summary="a LIBSVM/SVMlight text file (data.path), labels as in the file",
    uses=("path",), requires=("path",)))
