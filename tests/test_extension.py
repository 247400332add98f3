"""A rule, a data set and a model defined here, outside the package, registered through the public
calls, run through driver.run, driver.run_on_indices, run_experiment, scripts/train.py and
scripts/sweep.py.

The subprocesses import this module from their config file, as a user's config would import
the user's own module.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepfound.data import Dataset, DatasetSpec, register_dataset
from deepfound.experiment import ModelSpec, register_model
from deepfound.optim import RuleSpec, driver, register_rule
from deepfound.problems import make_problem
from deepfound.problems.generative import LossFiniteSum
from deepfound.registry import Option

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def heavy_ball(learning_rate, momentum: float) -> optax.GradientTransformation:
  """Polyak's heavy ball: v <- momentum v + g, b <- b - tau v."""
  return optax.chain(optax.trace(decay=momentum), optax.scale_by_learning_rate(learning_rate))


def load_two_blobs(data) -> Dataset:
  """Two Gaussian blobs in R^3, labels +-1, data.num_samples of them."""
  rng = np.random.default_rng(data.seed)
  labels = np.where(np.arange(data.num_samples) % 2 == 0, 1.0, -1.0)
  features = rng.normal(size=(data.num_samples, 3)) + 0.8 * labels[:, None]
  return Dataset(features, labels)


register_rule(RuleSpec(
    name="heavy_ball", build=lambda c: heavy_ball(c.learning_rate, c.options["momentum"]),
    summary="Polyak's heavy ball (a test's own rule)", oracle="minibatch",
    options=(Option("momentum", float, 0.9, "heavy_ball: the momentum",
                    lambda m: None if 0 <= m < 1 else "must be in [0, 1)"),),
), replace=True)
register_dataset(DatasetSpec(
    name="two_blobs", load=load_two_blobs, summary="two Gaussian blobs (a test's own data set)",
    uses=("num_samples", "seed")), replace=True)


def build_diagonal_gaussian(config, dataset) -> LossFiniteSum:
  """MLE of N(mu, diag(sigma^2)) on the features: E_i = -log N(x_i; mu, sigma^2), the
  parameters (mu, log sigma) starting at (0, log model.initial_sd)."""
  x = jnp.asarray(dataset.features, jnp.float32)
  dim = x.shape[1]
  params = dict(mean=jnp.zeros(dim), log_sd=jnp.full(dim, np.log(config.model.initial_sd)))

  def sample_loss(p, sample):
    z = (sample - p["mean"]) * jnp.exp(-p["log_sd"])
    return jnp.sum(0.5 * z**2 + p["log_sd"] + 0.5 * np.log(2 * np.pi))

  return LossFiniteSum(x, x[:10], params, jnp.asarray(0.0), sample_loss)


register_model(ModelSpec(
    name="diagonal_gaussian", build=build_diagonal_gaussian, losses=("nll",),
    summary="a Gaussian with diagonal covariance by MLE (a test's own model)",
    options=(Option("initial_sd", float, 1.0, "diagonal_gaussian: the starting sd",
                    lambda v: None if v > 0 else "must be > 0"),)), replace=True)


def test_user_model_through_the_runner(tmp_path):
  """The registered model, its option, the registered data set and rule, run by the runner:
  MLE reaches the sample mean and standard deviation (the finite sum's minimizer)."""
  from deepfound.experiment import base_config, run_experiment

  config = base_config()
  config.data.name, config.data.num_samples = "two_blobs", 200
  config.model.name, config.model.initial_sd, config.problem.loss = "diagonal_gaussian", 2.0, "nll"
  config.optim.name, config.optim.learning_rate, config.optim.batch_size = "heavy_ball", 0.02, 200
  config.optim.sampling = "shuffle"  # every step the whole set: no sampling noise at the end
  config.num_steps, config.log_every = 1000, 500
  run_experiment(config, str(tmp_path), progress=False)
  params = np.load(tmp_path / "params.npz")
  x = load_two_blobs(config.data).features
  np.testing.assert_allclose(params["params['mean']"], x.mean(axis=0), atol=1e-4)
  np.testing.assert_allclose(np.exp(params["params['log_sd']"]), x.std(axis=0), atol=1e-4)
  assert json.loads((tmp_path / "config.json").read_text())["config"]["model"]["initial_sd"] == 2.0
  config.model.initial_sd = -1.0
  with pytest.raises(Exception, match="model.initial_sd must be > 0"):
    run_experiment(config, str(tmp_path / "bad"), progress=False)


def np_heavy_ball(x, y, indices, tau, momentum):
  b, velocity, out = np.zeros(x.shape[1]), np.zeros(x.shape[1]), []
  for i in indices:
    gradient = -y[i] * x[i] / (1.0 + np.exp(y[i] * (x[i] @ b)))
    velocity = momentum * velocity + gradient
    b = b - tau * velocity
    out.append(b.copy())
  return np.array(out)


def test_user_rule_and_data_set_through_the_driver():
  from ml_collections import ConfigDict

  x, y = load_two_blobs(ConfigDict(dict(num_samples=40, seed=3)))[:2]
  indices = np.random.default_rng(0).integers(0, 40, size=30)
  method = driver.Method("heavy_ball", momentum=0.5)
  with jax.enable_x64(True):
    problem = make_problem(x, y, dtype=jnp.float64)
    hyper = driver.hyperparameters(0.2, dtype=jnp.float64)
    _, points = driver.run_on_indices(problem, method, hyper, indices)
    np.testing.assert_allclose(points.params, np_heavy_ball(x, y, indices, 0.2, 0.5), rtol=1e-12)
    _, run = driver.run(problem, method, hyper, jax.random.PRNGKey(0), num_steps=400,
                        log_every=200)
  assert float(run.objective[-1]) < 0.5 * np.log(2.0)
  assert driver.epochs_done(method, 40, 400) == 10.0


CONFIG = '''
import os, sys
sys.path.insert(0, {root!r})
from tests import test_extension  # registers heavy_ball and two_blobs, as a user's module would
from deepfound.experiment import base_config


def get_config():
  config = base_config()
  config.data.name, config.data.num_samples = "two_blobs", 200
  config.optim.name, config.optim.learning_rate, config.optim.momentum = "heavy_ball", 0.05, 0.5
  config.num_steps, config.log_every = 400, 100
  return config
'''


def _script(name, tmp_path, *args):
  config = tmp_path / "user_config.py"
  config.write_text(CONFIG.format(root=ROOT))
  command = [sys.executable, os.path.join(ROOT, "scripts", name), f"--config={config}", *args]
  return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_user_rule_and_data_set_through_train_and_sweep(tmp_path):
  result = _script("train.py", tmp_path, f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 0, result.stderr
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["config"]["optim"]["momentum"] == 0.5
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  assert [r["step"] for r in rows] == [0, 100, 200, 300, 400]
  assert rows[-1]["objective"] < rows[0]["objective"] - 0.2 and rows[-1]["epoch"] == 2.0
  assert rows[-1]["suboptimality"] > 0  # E* of the user's data set was computed

  bad = _script("train.py", tmp_path, f"--workdir={tmp_path / 'bad'}", "--config.optim.momentum=1.5")
  assert bad.returncode == 2 and "optim.momentum must be in [0, 1), got 1.5" in bad.stderr
  assert not (tmp_path / "bad").exists()

  sweep = _script("sweep.py", tmp_path, f"--workdir={tmp_path / 'sweep'}",
                  "--sweep=optim.learning_rate=[0.01, 0.05]; optim.momentum=[0.0, 0.5]")
  assert sweep.returncode == 0, sweep.stderr
  runs = [json.loads(line) for line in (tmp_path / "sweep" / "sweep.jsonl").open()]
  assert len(runs) == 4 and len({r["final_objective"] for r in runs}) == 4
  summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
  assert summary["num_programs"] == 2  # momentum is compiled in: one program per value


@pytest.mark.parametrize("name", ["heavy_ball", "two_blobs", "diagonal_gaussian"])
def test_help_lists_registered_entries(name):
  from deepfound.experiment import describe

  assert name in describe()
