"""Synthetic dense logistic data, the set the benchmarks scale."""

from __future__ import annotations

import numpy as np

from deepfound.data.registry import Dataset, DatasetSpec, register_dataset


def make_logistic_data(
    num_samples: int, num_features: int, seed: int = 0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
  """x_i ~ N(0, I_p) and P(y_i = +1 | x_i) = sigmoid(<x_i, b_true>), b_true ~ N(0, 4/p I_p).

  The labels are noisy, so the unregularized problem has a finite minimizer.
  """
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((num_samples, num_features), dtype=np.float32).astype(dtype)
  true_params = rng.standard_normal(num_features) * (2.0 / np.sqrt(num_features))
  probability = 1.0 / (1.0 + np.exp(-(features @ true_params)))
  labels = np.where(rng.random(num_samples) < probability, 1.0, -1.0).astype(dtype)
  return features, labels


register_dataset(DatasetSpec(
    name="synthetic",
    load=lambda data: Dataset(*make_logistic_data(data.num_samples, data.num_features, data.seed)),
    summary="dense logistic data, x ~ N(0, I_p), noisy +-1 labels",
    uses=("num_samples", "num_features", "seed")))
register_dataset(DatasetSpec(
    name="stream", load=None, stream=True, uses=("num_features", "seed"),
    summary="an infinite stream of fresh logistic samples (17.2): n = infinity, sgd and sga"))
