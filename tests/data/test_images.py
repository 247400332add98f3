"""Image loaders in their real file formats, written by the test: IDX (MNIST) and .npz."""

import gzip
import struct

import numpy as np
import pytest

from deepfound.data import DataError, load_idx, load_npz, make_spirals, read_idx, split_and_standardize


def write_idx(path, array, type_code):
  header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + b"".join(
      struct.pack(">I", size) for size in array.shape)
  data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(data)


def test_idx_images_and_labels(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
  labels = np.array([3, 1, 4, 1, 5], np.uint8)
  write_idx(tmp_path / "images.gz", images, 0x08)
  write_idx(tmp_path / "labels", labels, 0x08)
  x, y = load_idx(str(tmp_path / "images.gz"), str(tmp_path / "labels"))
  assert x.shape == (5, 4, 3, 1) and x.dtype == np.float32
  np.testing.assert_allclose(x[..., 0], images / 255.0)
  np.testing.assert_array_equal(y, labels)
  floats = np.arange(6, dtype=np.float32).reshape(2, 3)
  write_idx(tmp_path / "f", floats, 0x0D)
  np.testing.assert_array_equal(read_idx(str(tmp_path / "f")), floats)


def test_idx_errors(tmp_path):
  (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
  with pytest.raises(DataError, match="bad magic"):
    read_idx(str(tmp_path / "bad"))
  write_idx(tmp_path / "short", np.zeros(4, np.uint8), 0x08)
  (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
  with pytest.raises(DataError, match="header says"):
    read_idx(str(tmp_path / "short"))
  with pytest.raises(DataError, match="not found"):
    read_idx(str(tmp_path / "missing"))


def test_npz(tmp_path):
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.integers(0, 256, (6, 4, 4)), y_train=np.arange(6),
                x_test=rng.integers(0, 256, (2, 4, 4)), y_test=np.arange(2))
  np.savez(tmp_path / "mnist.npz", **arrays)
  (x, y), (xt, yt) = load_npz(str(tmp_path / "mnist.npz"))
  assert x.shape == (6, 4, 4, 1) and xt.shape == (2, 4, 4, 1) and x.max() <= 1.0
  np.testing.assert_array_equal(yt, [0, 1])
  np.savez(tmp_path / "partial.npz", x_train=arrays["x_train"])
  with pytest.raises(DataError, match="lacks the array"):
    load_npz(str(tmp_path / "partial.npz"))


def test_split_and_spirals():
  x, y = make_spirals(400, seed=1)
  assert x.shape == (400, 2) and set(np.unique(y)) == {0, 1}
  (xtr, ytr), (xte, yte) = split_and_standardize(x, y, 0.25, seed=0)
  assert len(yte) == 100 and len(ytr) == 300
  np.testing.assert_allclose(xtr.mean(axis=0), 0.0, atol=1e-6)
  assert abs(float(xte.mean())) < 0.3  # standardized with the training statistics
