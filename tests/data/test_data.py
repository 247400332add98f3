"""Data loaders: the shipped quantum set, LIBSVM files, bundled sets, synthetic data."""

import numpy as np
import pytest

from deepfound.data import (
  DataError,
  load_breast_cancer,
  load_libsvm,
  load_quantum,
  make_logistic_data,
)


def test_quantum_preprocessing():
  x, y = load_quantum(seed=0)
  assert x.shape == (10_000, 46)
  assert set(np.unique(y)) == {-1.0, 1.0}
  np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-10)
  np.testing.assert_allclose(x.std(axis=0), 1.0, rtol=1e-10)
  x_other, _ = load_quantum(seed=1)
  assert not np.allclose(x, x_other)  # shuffled by the seed
  np.testing.assert_allclose(np.sort(x[:, 0]), np.sort(x_other[:, 0]))


def test_quantum_bad_file(tmp_path):
  bad = tmp_path / "q.csv"
  bad.write_text("1,2,3\n4,5,6\n")
  with pytest.raises(DataError, match="79 columns"):
    load_quantum(path=str(bad))
  with pytest.raises(DataError, match="not found"):
    load_quantum(path=str(tmp_path / "missing.csv"))


def test_libsvm_loader(tmp_path):
  path = tmp_path / "tiny.svm"
  path.write_text("+1 1:0.5 3:-1.0\n-1 2:2.0\n+1 1:1.5 2:0.25 3:3\n")
  x, y = load_libsvm(str(path))
  np.testing.assert_array_equal(x.toarray(), [[0.5, 0, -1.0], [0, 2.0, 0], [1.5, 0.25, 3.0]])
  np.testing.assert_array_equal(y, [1.0, -1.0, 1.0])
  zero_one = tmp_path / "zo.svm"
  zero_one.write_text("0 1:1\n1 1:2\n")
  assert list(load_libsvm(str(zero_one))[1]) == [-1.0, 1.0]


def test_libsvm_malformed(tmp_path):
  path = tmp_path / "bad.svm"
  path.write_text("+1 1:0.5 oops\n")
  with pytest.raises(DataError, match="malformed"):
    load_libsvm(str(path))
  with pytest.raises(DataError, match="not found"):
    load_libsvm(str(tmp_path / "nope.svm"))
  path.write_text("+1 1:0.5 2:nan\n-1 1:1\n")
  with pytest.raises(DataError, match="NaN or infinite"):
    load_libsvm(str(path))


def test_bundled_and_synthetic():
  x, y = load_breast_cancer()
  assert x.shape == (569, 30) and set(np.unique(y)) == {-1.0, 1.0}
  x, y = make_logistic_data(500, 8, seed=3)
  assert x.shape == (500, 8) and x.dtype == np.float32
  assert 0.2 < np.mean(y > 0) < 0.8
  np.testing.assert_array_equal(make_logistic_data(500, 8, seed=3)[1], y)
