"""Shared tiny problems and NumPy references of the chapter's formulas, and run helpers."""

import importlib
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)  # the configs live beside the package, not in it

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


def config_of(module: str, arg=None, **overrides):
  """``configs/<module>.py``'s config (with ``arg``), ``overrides`` set as in ``override``."""
  config = importlib.import_module(f"configs.{module}").get_config(*([arg] if arg else []))
  return override(config, **overrides)


def metric_rows(workdir) -> list[dict]:
  """The rows of a run's metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


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


def assert_chunks_give_one_run(problem, method, num_steps: int = 8):
  """Runs ``num_steps`` steps of ``method`` at rate 1e-3 on ``problem`` straight and in two
  chunks, and asserts the same parameters: what resuming a run relies on (a stochastic finite
  sum's noise and pairing are functions of the run's key and the step)."""
  import jax

  from deepfound.optim import driver

  hyper = driver.hyperparameters(1e-3)
  key = jax.random.PRNGKey(3)
  half = num_steps // 2
  whole, _ = driver.run(problem, method, hyper, key, num_steps=num_steps, log_every=half)
  state = driver.init_state(problem, method, hyper, key)
  for _ in range(2):
    state, _ = driver.run_chunk_jit(problem, method, hyper, state, num_logs=1, log_every=half)
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(a, b)
