"""Shared tiny problems and NumPy references of the chapter's formulas."""

import numpy as np
import pytest

NUM_SAMPLES, NUM_FEATURES, L2 = 6, 3, 0.1
# Fixed sample indices, with repeats, so that memory reads of earlier writes are exercised.
INDICES = [0, 3, 3, 1, 5, 0, 2, 4, 3, 1, 0, 5]


@pytest.fixture(scope="session")
def tiny_data():
  rng = np.random.default_rng(42)
  x = rng.normal(size=(NUM_SAMPLES, NUM_FEATURES))
  y = np.where(rng.random(NUM_SAMPLES) < 0.5, -1.0, 1.0)
  return x, y


def np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def np_sample_scale(x, y, b, i):
  """L'(<x_i, b>, y_i) for the logistic loss: -y e^{-sy} / (1 + e^{-sy})."""
  return -y[i] * np_sigmoid(-y[i] * (x[i] @ b))


def np_sample_gradient(x, y, b, i, l2=L2):
  return np_sample_scale(x, y, b, i) * x[i] + l2 * b


def np_full_gradient(x, y, b, l2=L2):
  return np.mean([np_sample_gradient(x, y, b, i, l2) for i in range(len(y))], axis=0)


def np_objective(x, y, b, l2=L2):
  return np.mean(np.log1p(np.exp(-y * (x @ b)))) + 0.5 * l2 * b @ b


def override(config, **changes):
  """``config`` with ``changes`` set in place and returned: ``optim__learning_rate=0.1`` sets
  ``config.optim.learning_rate``."""
  for key, value in changes.items():
    *groups, leaf = key.split("__")
    node = config
    for group in groups:
      node = node[group]
    node[leaf] = value
  return config
