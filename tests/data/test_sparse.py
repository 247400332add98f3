"""Sparse features: LIBSVM files kept as CSR, check_dataset on CSR, data.weights, density."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse
import sklearn.datasets

from deepfound.data import (
  DataError,
  Dataset,
  check_dataset,
  density,
  get_dataset,
  is_sparse,
  load_libsvm,
  load_sample_weights,
)


def _random_csr(rows, columns, nnz_density, seed):
  rng = np.random.default_rng(seed)
  def values(k):
    return np.round(rng.uniform(0.1, 3.0, k) * rng.choice([-1, 1], k), 6)

  matrix = scipy.sparse.random(rows, columns, density=nnz_density, format="csr", random_state=rng,
                               data_rvs=values)
  # (6 decimals: dump_svmlight_file writes %.16g, which does not round-trip every double)
  matrix.sum_duplicates()
  return scipy.sparse.csr_matrix(matrix)


def _is_canonical_csr(matrix):
  return (type(matrix) is scipy.sparse.csr_matrix and matrix.dtype == np.float64
          and matrix.has_canonical_format and not np.any(matrix.data == 0))


def test_libsvm_round_trip_is_sparse_and_canonical(tmp_path):
  original = _random_csr(40, 25, 0.2, seed=0)
  labels = np.where(np.random.default_rng(1).random(40) < 0.5, -1.0, 1.0)
  path = tmp_path / "round.svm"
  sklearn.datasets.dump_svmlight_file(original, labels, str(path), zero_based=False)
  x, y = load_libsvm(str(path), num_features=25, binary=False)
  assert _is_canonical_csr(x) and is_sparse(x)
  assert x.shape == original.shape and x.nnz == original.nnz
  assert (x != original).nnz == 0
  np.testing.assert_allclose(x.toarray(), original.toarray(), rtol=0, atol=0)
  np.testing.assert_array_equal(y, labels)
  dense, _ = load_libsvm(str(path), num_features=25, binary=False, sparse=False)
  assert isinstance(dense, np.ndarray) and not is_sparse(dense)
  np.testing.assert_array_equal(dense, original.toarray())


def test_libsvm_explicit_zeros_are_dropped(tmp_path):
  path = tmp_path / "zeros.svm"
  path.write_text("+1 1:0 3:2.5\n-1 2:0.0\n+1 1:-1 2:4\n")
  x, y = load_libsvm(str(path))
  assert _is_canonical_csr(x) and x.nnz == 3
  np.testing.assert_array_equal(x.toarray(), [[0, 0, 2.5], [0, 0, 0], [-1, 4, 0]])
  np.testing.assert_array_equal(y, [1.0, -1.0, 1.0])


@pytest.mark.parametrize("by_index", [True, False])
def test_libsvm_million_features_loads_without_densifying(tmp_path, by_index):
  rows, columns = 100, 1_000_000
  rng = np.random.default_rng(2)
  lines, written = [], 0
  for row in range(rows):
    indices = np.sort(rng.choice(np.arange(1, columns + 1), size=5, replace=False))
    if by_index and row == 7:
      indices[-1] = columns  # the file itself reaches index 1,000,000
    written += len(indices)
    pairs = " ".join(f"{i}:{rng.uniform(0.5, 2.0):.4f}" for i in indices)
    lines.append(f"{1 if row % 2 else -1} {pairs}")
  path = tmp_path / "wide.svm"
  path.write_text("\n".join(lines) + "\n")
  tracemalloc.start()
  try:
    x, y = load_libsvm(str(path), num_features=None if by_index else columns)
    check_dataset(Dataset(x, y), "wide")
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert type(x) is scipy.sparse.csr_matrix
  assert x.shape == (rows, columns) and x.nnz == written
  assert peak < 50_000_000, f"peak {peak / 1e6:.0f} MB: a dense 100 x 1e6 array is 800 MB"
  assert density(x) == pytest.approx(written / (rows * columns))


def test_libsvm_errors(tmp_path):
  with pytest.raises(DataError, match="not found"):
    load_libsvm(str(tmp_path / "nope.svm"))
  path = tmp_path / "bad.svm"
  path.write_text("+1 1:0.5 oops\n")
  with pytest.raises(DataError, match=r"malformed LIBSVM file .*bad\.svm"):
    load_libsvm(str(path))
  path.write_text("+1 1:0.5 2:inf\n-1 1:1\n")
  with pytest.raises(DataError, match="NaN or infinite"):
    load_libsvm(str(path))
  path.write_text("")
  with pytest.raises(DataError, match="no samples"):
    load_libsvm(str(path))
  path.write_text("+1\n-1\n+1\n")
  with pytest.raises(DataError, match=r"bad\.svm holds no features"):
    load_libsvm(str(path))


def test_registered_libsvm_set_is_sparse(tmp_path):
  path = tmp_path / "set.svm"
  path.write_text("2 1:0.5 3:-1.0\n1 2:2.0\n2 1:1.5 2:0.25 3:3\n")

  class Data:
    pass

  data = Data()
  data.path = str(path)
  dataset = get_dataset("libsvm").load(data)
  assert isinstance(dataset, Dataset) and type(dataset.features) is scipy.sparse.csr_matrix
  np.testing.assert_array_equal(dataset.targets, [2.0, 1.0, 2.0])
  check_dataset(dataset, "set")


def _csr_with_nan_in_row(bad_row, rows=5, columns=4):
  dense = np.arange(rows * columns, dtype=np.float64).reshape(rows, columns) % 3
  dense[1] = 0.0  # an empty row before the bad one
  dense[bad_row, 0] = np.nan  # the first stored value of its row
  return scipy.sparse.csr_matrix(dense)


@pytest.mark.parametrize("bad_row", [2, 4])
def test_check_dataset_names_the_sparse_row_with_a_nan(bad_row):
  features = _csr_with_nan_in_row(bad_row)
  targets = np.ones(5)
  with pytest.raises(DataError, match=rf"^src: row {bad_row} has a NaN or infinite feature$"):
    check_dataset(Dataset(features, targets), "src")
  good = _csr_with_nan_in_row(bad_row)
  good.data[~np.isfinite(good.data)] = 1.0
  with pytest.raises(DataError, match=rf"^src: test row {bad_row} has a NaN"):
    check_dataset(Dataset(good, targets, (features.tocsc(), targets)), "src")
  check_dataset(Dataset(good, targets, (good, targets)), "src")


def test_check_dataset_sparse_shapes_without_densifying():
  huge = scipy.sparse.csr_matrix(
      (np.array([1.0, np.inf]), np.array([3, 9_999_999]), np.array([0, 1, 1, 2])),
      shape=(3, 10_000_000))  # 240 MB if densified
  tracemalloc.start()
  try:
    with pytest.raises(DataError, match="row 2 has a NaN or infinite feature"):
      check_dataset(Dataset(huge, np.ones(3)), "huge")
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < 20_000_000
  x = scipy.sparse.csr_matrix(np.eye(3))
  with pytest.raises(DataError, match="3 samples but 2 labels"):
    check_dataset(Dataset(x, np.ones(2)), "s")
  with pytest.raises(DataError, match="no samples"):
    check_dataset(Dataset(scipy.sparse.csr_matrix((0, 3)), np.ones(0)), "s")
  with pytest.raises(DataError, match=r"test samples have shape \(4,\), training samples \(3,\)"):
    check_dataset(Dataset(x, np.ones(3), (scipy.sparse.csr_matrix(np.ones((2, 4))), np.ones(2))), "s")
  check_dataset(Dataset(x, np.ones(3), (np.ones((2, 3)), np.ones(2))), "s")  # dense test split


def test_density_and_is_sparse():
  dense = np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
  assert density(dense) == 3 / 8 and not is_sparse(dense)
  matrix = scipy.sparse.csr_matrix(dense)
  matrix.data[0] = 0.0  # an explicit zero does not count
  assert is_sparse(matrix) and density(matrix) == 2 / 8
  assert density(np.zeros((0, 3))) == 0.0
  assert is_sparse(matrix.tocoo()) and not is_sparse([[1.0]])


def _weights_file(tmp_path, text, name="w.txt"):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_sample_weights_file(tmp_path):
  path = _weights_file(tmp_path, "1\n0.5\n0\n2e-1\n\n\n")
  features = np.ones((4, 2))
  weights, same = load_sample_weights(path, 4, features)
  assert weights.dtype == np.float64 and weights.shape == (4,)
  np.testing.assert_array_equal(weights, [1.0, 0.5, 0.0, 0.2])
  assert same is features
  weights, none = load_sample_weights(path, 4)
  assert none is None


@pytest.mark.parametrize("text, count, message", [
  ("1\n" * 99, 100, r"^data.weights file \S+w\.txt has 99 values for 100 samples$"),
  ("1\n" * 101, 100, r"has 101 values for 100 samples$"),
  ("", 3, r"has 0 values for 3 samples$"),
  ("1\n-0.5\n1\n", 3, r"w\.txt: line 2 holds the negative weight -0.5"),
  ("1\n1\nnan\n", 3, r"w\.txt: line 3 holds a NaN or infinite weight"),
  ("inf\n1\n1\n", 3, r"w\.txt: line 1 holds a NaN or infinite weight"),
  ("1\nabc\n1\n", 3, r"w\.txt: line 2 is not a number: 'abc'$"),
  ("1\n\n1\n", 3, r"w\.txt: line 2 is not a number: ''$"),
  ("1 2\n1\n1\n", 3, r"w\.txt: line 1 is not a number"),
  ("0\n0.0\n-0\n", 3, r"w\.txt: all 3 weights are zero$"),
])
def test_sample_weights_file_errors(tmp_path, text, count, message):
  path = _weights_file(tmp_path, text)
  with pytest.raises(DataError, match=message) as error:
    load_sample_weights(path, count)
  assert "\n" not in str(error.value) and path in str(error.value)


def test_sample_weights_missing_file(tmp_path):
  missing = str(tmp_path / "missing.txt")
  with pytest.raises(DataError, match=r"^data.weights file \S+missing\.txt not found$"):
    load_sample_weights(missing, 3)
  binary = tmp_path / "b.bin"
  binary.write_bytes(b"\xff\xfe\x00\x81")
  with pytest.raises(DataError, match=r"b\.bin is not a text file"):
    load_sample_weights(str(binary), 1)


@pytest.mark.parametrize("to_sparse", [False, True])
def test_sample_weights_column_is_removed(to_sparse):
  dense = np.array([[1.0, 0.0, 5.0, 0.0],
                    [0.0, 2.0, 0.5, 7.0],
                    [3.0, 0.0, 0.0, 0.0],
                    [0.0, 4.0, 1.0, 8.0]])
  features = scipy.sparse.csr_matrix(dense) if to_sparse else dense
  weights, rest = load_sample_weights("column:2", 4, features)
  assert weights.dtype == np.float64
  np.testing.assert_array_equal(weights, [5.0, 0.5, 0.0, 1.0])
  assert is_sparse(rest) == to_sparse and rest.shape == (4, 3)
  if to_sparse:
    assert _is_canonical_csr(rest)
    rest = rest.toarray()
  np.testing.assert_array_equal(rest, np.delete(dense, 2, axis=1))
  weights, rest = load_sample_weights("column:0", 4, features)
  np.testing.assert_array_equal(weights, [1.0, 0.0, 3.0, 0.0])
  rest = rest.toarray() if to_sparse else rest
  np.testing.assert_array_equal(rest, dense[:, 1:])
  np.testing.assert_array_equal(features.toarray() if to_sparse else features, dense)  # untouched


@pytest.mark.parametrize("to_sparse", [False, True])
@pytest.mark.parametrize("spec, column, message", [
  ("column:4", None, r"^data.weights=column:4: column 4 out of range, the features have 4 columns"),
  ("column:-1", None, r"^data.weights=column:-1: the column must be a 0-based column number"),
  ("column:x", None, r"column must be a 0-based column number, got 'x'"),
  ("column:1", [1.0, -2.0, 1.0], r"^data.weights=column:1: row 1 holds the negative weight -2"),
  ("column:1", [1.0, 1.0, np.nan], r"^data.weights=column:1: row 2 holds a NaN or infinite weight"),
  ("column:1", [0.0, 0.0, 0.0], r"^data.weights=column:1: all 3 weights are zero"),
])
def test_sample_weights_column_errors(to_sparse, spec, column, message):
  dense = np.ones((3, 4))
  if column is not None:
    dense[:, 1] = column
  features = scipy.sparse.csr_matrix(dense) if to_sparse else dense
  with pytest.raises(DataError, match=message) as error:
    load_sample_weights(spec, 3, features)
  assert "\n" not in str(error.value)


def test_sample_weights_column_needs_features():
  with pytest.raises(DataError, match=r"^data.weights=column:0: no feature matrix"):
    load_sample_weights("column:0", 3)
  with pytest.raises(DataError, match=r"features have 3 rows for 4 samples"):
    load_sample_weights("column:0", 4, np.ones((3, 2)))
  with pytest.raises(DataError, match=r"the features have 1 column"):
    load_sample_weights("column:0", 3, np.ones((3, 1)))
