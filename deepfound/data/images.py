"""Image and 2-D classification sets for the networks of 17.3: scikit-learn's bundled digits,
MNIST / Fashion-MNIST from local IDX files or a .npz, and synthetic two moons and spirals."""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib

import numpy as np

from deepfound.data.errors import DataError
from deepfound.data.registry import Dataset, DatasetSpec, register_dataset

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32,
              0x0E: np.float64}


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled 8x8 digits: images (1797, 8, 8, 1) in [0, 1], labels 0..9."""
  import sklearn.datasets

  images, labels = sklearn.datasets.load_digits(return_X_y=True)
  return (images / 16.0).reshape(-1, 8, 8, 1), labels.astype(np.int32)


def read_idx(path: str) -> np.ndarray:
  """An IDX file (the MNIST format, optionally gzipped): magic 0x0000TTDD, D big-endian uint32
  sizes, then the data in type T, big-endian."""
  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"cannot read IDX file {path}: {e}") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
    raise DataError(f"{path} is not an IDX file (bad magic number)")
  dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]).newbyteorder(">"), raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"IDX file {path} is truncated in its header")
  shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise DataError(f"IDX file {path} holds {len(raw) - header} data bytes, its header says "
                    f"{expected}")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  """MNIST-style IDX images (n, H, W) and labels (n,): images (n, H, W, 1) in [0, 1]."""
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise DataError(f"IDX pair {images_path}, {labels_path}: expected images (n, H, W) and "
                    f"labels (n,), got {images.shape} and {labels.shape}")
  return images[..., None].astype(np.float32) / 255.0, labels.astype(np.int32)


_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def load_idx_directory(directory: str):
  """The four MNIST IDX files (optionally gzipped) of ``directory``:
  ((x_train, y_train), (x_test, y_test)) as ``load_idx`` reads them."""
  paths = []
  for name in _IDX_NAMES:
    found = [p for p in (os.path.join(directory, name + suffix) for suffix in ("", ".gz"))
             if os.path.isfile(p)]
    if not found:
      raise DataError(f"{directory} has no {name}[.gz] (the MNIST IDX file names)")
    paths.append(found[0])
  return load_idx(*paths[:2]), load_idx(*paths[2:])


def load_npz(path: str):
  """A .npz with x_train, y_train, x_test, y_test (the layout of keras' mnist.npz):
  ((x_train, y_train), (x_test, y_test)), images (n, H, W, 1) in [0, 1]."""
  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  try:
    with np.load(path) as archive:
      arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
  except KeyError as e:
    raise DataError(f"{path} lacks the array {e}; expected x_train, y_train, x_test, y_test") from e
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    # A truncated or corrupted archive: zipfile, zlib and numpy's header reader each say so
    # in their own way.
    kind = type(e).__name__
    kind = kind if type(e).__module__ == "builtins" else f"{type(e).__module__}.{kind}"
    raise DataError(f"cannot read {path} as .npz (truncated or corrupted?): {kind}: "
                    f"{' '.join(str(e).split())}") from e

  def images(name):
    try:
      x = np.asarray(arrays[name], np.float32)
    except (TypeError, ValueError) as e:
      raise DataError(f"{path}: {name} does not hold numbers ({e})") from e
    x = x / 255.0 if x.size and np.nanmax(x) > 1.0 else x
    return x[..., None] if x.ndim == 3 else x

  # Labels stay as stored: the model decides how they become classes (and refuses bad ones).
  return ((images("x_train"), np.asarray(arrays["y_train"])),
          (images("x_test"), np.asarray(arrays["y_test"])))


def make_moons(num_samples: int, noise: float = 0.15, seed: int = 0):
  """Two interleaved half circles (scikit-learn's generator), labels 0/1."""
  import sklearn.datasets

  x, y = sklearn.datasets.make_moons(num_samples, noise=noise, random_state=seed)
  return x.astype(np.float32), y.astype(np.int32)


def make_spirals(num_samples: int, turns: float = 1.5, noise: float = 0.1, seed: int = 0):
  """Two interleaved spirals, labels 0/1: not separable by any linear model."""
  rng = np.random.default_rng(seed)
  labels = np.arange(num_samples) % 2
  t = np.sqrt(rng.random(num_samples)) * turns * 2 * np.pi
  angle = t + np.pi * labels
  points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (turns * 2 * np.pi)
  points += noise * rng.normal(size=points.shape) / (turns * 2)
  return points.astype(np.float32), labels.astype(np.int32)


def split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
  """A seeded train/test split: ((x, y), (x_test, y_test)), round(test_fraction n) test rows."""
  order = np.random.default_rng(seed).permutation(len(y))
  num_test = int(round(test_fraction * len(y)))
  test, train = order[:num_test], order[num_test:]
  return (x[train], y[train]), (x[test], y[test])


def split_and_standardize(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
  """A seeded train/test split; features centred and scaled by the training set's statistics."""
  return standardize(*split(x, y, test_fraction, seed))


def standardize(train, test):
  mean = train[0].mean(axis=0)
  std = train[0].std(axis=0)
  std = np.where(std > 0, std, 1.0)  # constant pixels (digits' borders) stay at zero
  return ((train[0] - mean) / std, train[1]), ((test[0] - mean) / std, test[1])


register_dataset(DatasetSpec(
    name="digits", load=lambda data: Dataset(*load_digits()),
    summary="scikit-learn's 8x8 digits, 1797 images, 10 classes", uses=("seed", "test_fraction")))
register_dataset(DatasetSpec(
    name="moons", load=lambda data: Dataset(*make_moons(data.num_samples, seed=data.seed)),
    summary="two interleaved half circles (2-D points, 2 classes)",
    uses=("num_samples", "seed", "test_fraction")))
register_dataset(DatasetSpec(
    name="spirals", load=lambda data: Dataset(*make_spirals(data.num_samples, seed=data.seed)),
    summary="two interleaved spirals (2-D points, 2 classes)",
    uses=("num_samples", "seed", "test_fraction")))
def _with_test(split) -> Dataset:
  (x, y), test = split
  return Dataset(x, y, test=test)


register_dataset(DatasetSpec(
    name="npz", load=lambda data: _with_test(load_npz(data.path)),
    summary="a .npz with x_train, y_train, x_test, y_test (keras' mnist.npz layout)",
    uses=("path",), requires=("path",)))
register_dataset(DatasetSpec(
    name="mnist_idx",
    load=lambda data: _with_test(load_idx_directory(data.path)),
    summary="a directory with MNIST's four IDX files (data.path)", uses=("path",),
    requires=("path",)))
