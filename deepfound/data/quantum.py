"""The quantum physics data of the chapter's figures (KDD Cup 2004, 10,000 rows), shipped gzipped."""

from __future__ import annotations

import gzip
import importlib.resources

import numpy as np

from deepfound.data.errors import DataError
from deepfound.data.registry import Dataset, DatasetSpec, register_dataset

NUM_COLUMNS = 79  # 78 features, then the label in {0, 1}


def read_quantum_csv(path: str | None = None) -> np.ndarray:
  """The raw (10000, 79) table; ``path`` overrides the shipped copy (.csv or .csv.gz)."""
  try:
    if path is None:
      source = importlib.resources.files("deepfound.data") / "quantum.csv.gz"
      with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", ndmin=2)
    else:
      opener = gzip.open if path.endswith(".gz") else open
      with opener(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", ndmin=2)
  except FileNotFoundError as e:
    raise DataError(f"data file not found: {path}") from e
  except (ValueError, OSError, EOFError) as e:
    raise DataError(f"malformed quantum data file {path or 'quantum.csv.gz'}: {e}") from e
  if not np.all(np.isfinite(table)):
    raise DataError(f"quantum data file {path or 'quantum.csv.gz'} holds a NaN or infinite value")
  if table.shape[1] != NUM_COLUMNS:
    raise DataError(f"quantum data must have {NUM_COLUMNS} columns, got {table.shape[1]} in {path}")
  if not np.all(np.isin(table[:, -1], (0.0, 1.0))):
    raise DataError(f"quantum data labels (last column) must be 0 or 1 in {path}")
  return table


def load_quantum(seed: int = 0, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Features (10000, 46) and labels in {-1, +1}, preprocessed as the chapter's figures were.

  1. shuffle the rows (``seed``); 2. labels {0, 1} -> {-1, +1}; 3. keep the feature columns whose
  mean absolute value exceeds 0.1; 4. centre each and divide by its (population) std.
  """
  table = read_quantum_csv(path)
  table = table[np.random.default_rng(seed).permutation(table.shape[0])]
  features, labels = table[:, :-1], 2.0 * table[:, -1] - 1.0
  features = features[:, np.mean(np.abs(features), axis=0) > 0.1]
  std = features.std(axis=0)
  if np.any(std == 0):
    raise DataError("quantum data has a constant feature column after selection")
  return (features - features.mean(axis=0)) / std, labels


register_dataset(DatasetSpec(
    name="quantum", load=lambda data: Dataset(*load_quantum(seed=data.seed, path=data.path)),
    summary="the chapter's quantum physics data, 10000 x 46, labels +-1 (shipped; data.path "
            "overrides)", uses=("path", "seed")))
