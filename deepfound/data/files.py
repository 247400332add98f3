"""Loaders for scikit-learn's bundled sets and LIBSVM-format text files (kept sparse), and the
per-sample weights of ``data.weights``."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from deepfound.data.errors import DataError
from deepfound.data.registry import Dataset, DatasetSpec, binary_labels, register_dataset


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled Wisconsin breast-cancer set (569 x 30), standardized, labels +-1."""
  import sklearn.datasets

  features, labels = sklearn.datasets.load_breast_cancer(return_X_y=True)
  features = (features - features.mean(axis=0)) / features.std(axis=0)
  return features, 2.0 * labels - 1.0


# scikit-learn's reader keeps indices in int32, and so do the sparse problems (``padded_rows``).
MAX_LIBSVM_INDEX = 2**31 - 1


def load_libsvm(path: str, num_features: int | None = None, binary: bool = True,
                sparse: bool = True):
  """A LIBSVM/SVMlight text file (``label index:value ...``, indices from 1): (features, labels).

  The format of the standard benchmark sets (covtype, rcv1, a9a, ...). Indices are one-based,
  as LIBSVM defines them: an index 0 is refused, never taken as a sign that the whole file is
  zero-based (which would shift every feature). Indices must increase along a line. With
  ``sparse`` the features are a ``scipy.sparse.csr_matrix`` of float64 in canonical form (sorted
  indices, explicit zeros dropped), never densified: rcv1 (20,242 x 47,236) would take 7.6 GB
  dense. Without it they are a dense (n, p) array. ``num_features`` fixes p (a file's highest
  index may be below it). With ``binary`` the two label values are mapped to -1 and +1 (0/1,
  1/2 and -1/+1 files all appear in the wild). Any problem is a one-line ``DataError`` naming
  the file and, for a bad line, its line number.
  """
  import scipy.sparse
  import sklearn.datasets

  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  try:
    matrix, labels = sklearn.datasets.load_svmlight_file(
        path, n_features=num_features, dtype=np.float64, zero_based=False)
  except OSError as e:
    raise DataError(f"LIBSVM file {path} cannot be read: {e.strerror or e}") from e
  except (ValueError, OverflowError, TypeError, RuntimeError) as e:
    # scikit-learn's messages do not say where; our own pass over the file does.
    raise _libsvm_error(path, num_features, e) from e
  if not (np.all(np.isfinite(matrix.data)) and np.all(np.isfinite(labels))):
    raise _libsvm_error(path, num_features, None)
  if matrix.shape[0] == 0:
    raise DataError(f"LIBSVM file {path} holds no samples")
  if matrix.shape[1] == 0 or matrix.nnz == 0:
    raise DataError(f"LIBSVM file {path} holds no features (no index:value pair on any line)")
  matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float64)
  matrix.sum_duplicates()  # sorts the indices too
  matrix.eliminate_zeros()
  if matrix.nnz < 2**31 and max(matrix.shape) < 2**31:
    # load_svmlight_file gives int64 index arrays, which scikit-learn's own SAG refuses.
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int32)
  matrix.sort_indices()
  if binary:
    labels = binary_labels(labels, f"LIBSVM file {path}")
  return (matrix if sparse else matrix.toarray()), labels


def _data_lines(path: str):
  """(line number from 1, its tokens) of each line that holds a sample, as scikit-learn's
  reader sees them: text after ``#`` is a comment, blank lines are skipped."""
  with open(path, "rb") as f:
    for number, line in enumerate(f, 1):
      tokens = line.split(b"#", 1)[0].split()
      if tokens:
        yield number, tokens


def _shown(token: bytes) -> str:
  text = token.decode("utf-8", "backslashreplace")
  return repr(text if len(text) <= 30 else text[:30] + "...")


def _number(token: bytes) -> float | None:
  try:
    return float(token)
  except ValueError:
    return None


def _line_problem(tokens: list[bytes], num_features: int | None) -> str | None:
  """What is wrong with one sample line, or None."""
  label, pairs = tokens[0], tokens[1:]
  value = _number(label)
  if value is None:
    return f"the label {_shown(label)} is not a number"
  if not math.isfinite(value):
    return f"the label {_shown(label)} is NaN or infinite"
  if pairs and pairs[0].startswith(b"qid:"):
    if not re.fullmatch(rb"qid:[+-]?[0-9]+", pairs[0]):
      return f"{_shown(pairs[0])} is not qid:<integer>"
    pairs = pairs[1:]
  previous = 0
  for pair in pairs:
    index_text, colon, value_text = pair.partition(b":")
    if not colon:
      return f"{_shown(pair)} is not an index:value pair"
    if not re.fullmatch(rb"[+-]?[0-9]+", index_text):
      return f"the index {_shown(index_text)} of {_shown(pair)} is not an integer"
    index = int(index_text)
    if index < 1:
      return (f"index {index}: LIBSVM indices start at 1 (a zero-based file needs every index "
              "raised by 1)")
    if index > MAX_LIBSVM_INDEX:
      return f"index {index:,} is above the largest supported index, {MAX_LIBSVM_INDEX:,}"
    if num_features is not None and index > num_features:
      return f"index {index:,} is above the {num_features:,} features asked for"
    if index <= previous:
      return f"index {index} follows index {previous}: indices must increase along a line"
    value = _number(value_text)
    if value is None:
      return f"the value {_shown(value_text)} of index {index} is not a number"
    if not math.isfinite(value):
      return f"the value {_shown(value_text)} of index {index} is NaN or infinite"
    previous = index
  return None


def _libsvm_error(path: str, num_features: int | None, error: Exception | None) -> DataError:
  """The ``DataError`` of an unreadable LIBSVM file, naming its first bad line."""
  try:
    for number, tokens in _data_lines(path):
      problem = _line_problem(tokens, num_features)
      if problem:
        return DataError(f"malformed LIBSVM file {path}, line {number}: {problem}")
  except OSError as e:
    return DataError(f"LIBSVM file {path} cannot be read: {e.strerror or e}")
  reason = " ".join(str(error).split()) if error else "a NaN or infinite value"
  return DataError(f"malformed LIBSVM file {path} (no single line to blame): {reason}")


def libsvm_line_of_row(path: str, row: int) -> int:
  """The line number (from 1) of sample ``row`` (from 0) of a LIBSVM file, for messages."""
  for count, (number, _) in enumerate(_data_lines(path)):
    if count == row:
      return number
  raise IndexError(f"{path} has no sample {row}")


def load_sample_weights(spec: str, num_samples: int, features=None):
  """The per-sample weights of ``data.weights``: ``(weights (n,) float64, features)``.

  ``spec`` is a path to a text file of one number per line (exactly ``num_samples`` lines; blank
  trailing lines are ignored), or ``column:<j>``: the 0-based feature column ``j`` of
  ``features`` (dense or CSR), which is taken out of the returned features. Weights must be
  finite, >= 0 and not all zero; any problem is a one-line ``DataError`` naming the file or
  column.
  """
  spec = str(spec).strip()
  if spec.startswith("column:"):
    return _weights_column(spec, num_samples, features)
  source = f"data.weights file {spec}"
  if not os.path.isfile(spec):
    raise DataError(f"{source} not found")
  try:
    with open(spec, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except UnicodeDecodeError as e:
    raise DataError(f"{source} is not a text file ({e.reason} at byte {e.start})") from e
  except OSError as e:
    raise DataError(f"{source} cannot be read: {e.strerror or e}") from e
  while lines and not lines[-1].strip():
    lines.pop()
  try:
    weights = np.array([line.strip() for line in lines], dtype=str).astype(np.float64)
  except ValueError:
    weights = np.empty(len(lines))
    for number, line in enumerate(lines, 1):
      try:
        weights[number - 1] = float(line)
      except ValueError:
        raise DataError(f"{source}: line {number} is not a number: {line.strip()[:40]!r}") from None
  if len(weights) != num_samples:
    raise DataError(f"{source} has {len(weights)} values for {num_samples} samples")
  _check_weights(weights, source, "line", 1)
  return weights, features


def _weights_column(spec: str, num_samples: int, features):
  """``column:<j>`` of ``load_sample_weights``: column j of the features, and the rest."""
  import scipy.sparse

  source = f"data.weights={spec}"
  text = spec[len("column:"):].strip()
  if not re.fullmatch(r"[0-9]+", text):
    raise DataError(f"{source}: the column must be a 0-based column number, got {text!r}")
  j = int(text)
  if features is None:
    raise DataError(f"{source}: no feature matrix to take the column from")
  if len(features.shape) != 2:
    raise DataError(f"{source}: the features have shape {tuple(features.shape)}, not (n, p)")
  rows, columns = features.shape
  if j >= columns:
    raise DataError(f"{source}: column {j} out of range, the features have {columns} columns "
                    f"(0..{columns - 1})")
  if columns == 1:
    raise DataError(f"{source}: the features have 1 column; taking it as weights leaves none")
  if rows != num_samples:
    raise DataError(f"{source}: the features have {rows} rows for {num_samples} samples")
  if scipy.sparse.issparse(features):
    matrix = scipy.sparse.csr_matrix(features, dtype=np.float64)
    weights = np.asarray(matrix[:, [j]].toarray(), np.float64).ravel()
    keep = matrix.indices != j
    row_of = np.repeat(np.arange(rows), np.diff(matrix.indptr))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=rows))])
    indices = matrix.indices[keep]
    indices = indices - (indices > j).astype(indices.dtype)
    rest = scipy.sparse.csr_matrix((matrix.data[keep], indices, indptr.astype(matrix.indptr.dtype)),
                                   shape=(rows, columns - 1))
  else:
    features = np.asarray(features)
    weights = np.asarray(features[:, j], np.float64).copy()
    rest = np.delete(features, j, axis=1)
  _check_weights(weights, source, "row", 0)
  return weights, rest


def _check_weights(weights: np.ndarray, source: str, where: str, first: int) -> None:
  """Finite, >= 0, not all zero; a problem names the ``where`` (line from 1, row from 0)."""
  bad = np.flatnonzero(~np.isfinite(weights))
  if bad.size:
    raise DataError(f"{source}: {where} {bad[0] + first} holds a NaN or infinite weight "
                    f"({weights[bad[0]]:g})")
  bad = np.flatnonzero(weights < 0)
  if bad.size:
    raise DataError(f"{source}: {where} {bad[0] + first} holds the negative weight "
                    f"{weights[bad[0]]:g}, weights must be >= 0")
  if not np.any(weights > 0):
    raise DataError(f"{source}: all {len(weights)} weights are zero")


register_dataset(DatasetSpec(
    name="breast_cancer", load=lambda data: Dataset(*load_breast_cancer()),
    summary="scikit-learn's Wisconsin breast cancer set, 569 x 30, standardized, labels +-1"))
register_dataset(DatasetSpec(
    name="libsvm", load=lambda data: Dataset(*load_libsvm(data.path, binary=False)),
    summary="a LIBSVM/SVMlight text file (data.path), sparse CSR features, labels as in the file",
    uses=("path",), requires=("path",),
    locate=lambda data, row: f"line {libsvm_line_of_row(data.path, row)}"))
