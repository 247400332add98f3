"""A rule, a data set, a model and a problem kind defined here, outside the package, registered
through the public calls, run through driver.run, driver.run_on_indices, run_experiment,
scripts/train.py and scripts/sweep.py.

The subprocesses import this module from their config file, as a user's config would import
the user's own module.
"""

import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
from typing import NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from deepfound.data import Dataset, DatasetSpec, register_dataset
from deepfound.errors import ConfigError
from deepfound.experiment import KindSpec, ModelSpec, register_kind, register_model
from deepfound.experiment.build import Setup, fingerprint
from deepfound.optim import RuleSpec, driver, register_rule
from deepfound.optim.engine import Failure, LogPoint, engine_for, register_engine
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


@pytest.mark.slow
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


# A problem kind of the user's own: least squares on a stream whose samples come from a user
# function. It is neither a finite sum (no n, no batch by index) nor an expectation of the
# driver's protocol (no per-sample gradients), nor a game: its own engine runs it.


@runtime_checkable
class SampledLeastSquares(Protocol):
  """min_w E_(x, y) (x.w - y)^2 / 2 over samples drawn by ``sample(key, size)``."""

  def init_params(self) -> jax.Array: ...
  def sample(self, key: jax.Array, size: int) -> tuple[jax.Array, jax.Array]: ...
  def objective(self, params: jax.Array) -> jax.Array: ...


class NoisyLinearStream(NamedTuple):
  """y = x.w_true + noise_sd * eps, x a row of ``pool`` plus standard Gaussian noise."""

  pool: jax.Array  # (m, p) rows of the data set
  w_true: jax.Array  # (p,)
  noise_sd: jax.Array
  x_test: jax.Array  # a fixed held-out sample for the objective
  y_test: jax.Array

  def init_params(self):
    return jnp.zeros_like(self.w_true)

  def sample(self, key, size):
    pick, jitter, eps = jax.random.split(key, 3)
    rows = self.pool[jax.random.randint(pick, (size,), 0, self.pool.shape[0])]
    x = rows + jax.random.normal(jitter, rows.shape)
    return x, x @ self.w_true + self.noise_sd * jax.random.normal(eps, (size,))

  def objective(self, params):
    return 0.5 * jnp.mean((self.x_test @ params - self.y_test) ** 2)


@dataclasses.dataclass(frozen=True)
class AveragedSGD:
  """The engine's static method: minibatch SGD with Polyak-Ruppert averaging of the iterates."""

  batch_size: int


class AveragedState(NamedTuple):
  params: jax.Array
  average: jax.Array
  step: jax.Array
  key: jax.Array
  stopped_at: jax.Array


class AveragedSGDEngine:
  """The user's engine (``deepfound.optim.engine.Engine``) for ``SampledLeastSquares``."""

  def init_state(self, problem, method, hyper, key, params=None):
    params = problem.init_params() if params is None else params
    return AveragedState(params, params, jnp.zeros((), jnp.int32), key, jnp.full((), -1, jnp.int32))

  def _point(self, problem, hyper, state, record_params):
    return LogPoint(state.step, problem.objective(state.average), hyper,
                    state.average if record_params else None,
                    dict(last_iterate_objective=problem.objective(state.params)))

  def _chunk(self, problem, method, hyper, state, *, num_logs, log_every, record_params=False):
    def one_step(state, _):
      x, y = problem.sample(jax.random.fold_in(state.key, state.step), method.batch_size)
      grad = x.T @ (x @ state.params - y) / method.batch_size
      params = state.params - hyper * grad
      count = (state.step + 1).astype(params.dtype)
      average = state.average + (params - state.average) / count
      return state._replace(params=params, average=average, step=state.step + 1), None

    def block(state, _):
      state = jax.lax.scan(one_step, state, None, length=log_every)[0]
      return state, self._point(problem, hyper, state, record_params)

    return jax.lax.scan(block, state, None, length=num_logs)

  @functools.cached_property
  def run_chunk_jit(self):
    return jax.jit(self._chunk, static_argnames=("method", "num_logs", "log_every",
                                                 "record_params"))

  def initial_log_point(self, problem, method, hyper, state, record_params=False):
    return self._point(problem, hyper, state, record_params)

  def run(self, problem, method, hyper, key, params=None, *, num_steps, log_every,
          record_params=False):
    state = self.init_state(problem, method, hyper, key, params)
    return self.run_chunk_jit(problem, method, hyper, state, num_logs=num_steps // log_every,
                              log_every=log_every, record_params=record_params)

  def reported_params(self, state):
    return state.average

  def final_params(self, state):
    return state.average

  def epochs(self, problem, method, steps):
    return None

  def failure(self, rows, state, limit):
    bad = next((k for k, r in enumerate(rows) if not math.isfinite(r["objective"])), None)
    return None if bad is None else Failure(bad, rows[bad]["step"], "the objective is not finite")

  def final_facts(self, problem, method, state):
    return dict(final_distance=float(jnp.linalg.norm(state.params - state.average)))


register_engine(SampledLeastSquares, AveragedSGDEngine())


def add_stream_keys(config: ml_collections.ConfigDict) -> None:
  config.stream = ml_collections.ConfigDict(dict(learning_rate=0.05, batch_size=8))


def validate_stream(config: ml_collections.ConfigDict) -> None:
  if not (isinstance(config.stream.learning_rate, float) and config.stream.learning_rate > 0):
    raise ConfigError(f"stream.learning_rate must be a float > 0, got {config.stream.learning_rate!r}")
  if not (isinstance(config.stream.batch_size, int) and config.stream.batch_size > 0):
    raise ConfigError(f"stream.batch_size must be a positive integer, got {config.stream.batch_size!r}")


def build_stream_setup(config, problem, notes) -> Setup:
  rate = config.stream.learning_rate
  return Setup(problem=problem, method=AveragedSGD(config.stream.batch_size),
               hyper=jnp.asarray(rate, jnp.float32),
               resolved=dict(learning_rate=rate, notes=list(notes)),
               constants=dict(lipschitz=None, max_sample_lipschitz=None, optimum=None),
               gradient_memory_mb=None, fingerprint=fingerprint(problem), label="averaged_sgd",
               divergence_note=f"(stream.learning_rate = {rate:.4g}); lower it")


register_kind(KindSpec("sampled_least_squares", "least squares on a user's sampler (a test's kind)",
                       add_keys=add_stream_keys, validate=validate_stream,
                       build=build_stream_setup), replace=True)


def build_noisy_stream(config, dataset) -> NoisyLinearStream:
  pool = jnp.asarray(dataset.features, jnp.float32)
  w_true = jnp.linspace(-1.0, 1.0, pool.shape[1])
  x_test = pool + jax.random.normal(jax.random.PRNGKey(config.model.seed), pool.shape)
  return NoisyLinearStream(pool, w_true, jnp.asarray(0.1, jnp.float32), x_test, x_test @ w_true)


register_model(ModelSpec(
    name="noisy_linear_stream", build=build_noisy_stream, losses=("squared",), finite_sum=False,
    summary="least squares on noisy rows of the data (a test's own kind)",
    kind="sampled_least_squares"), replace=True)


KIND_CONFIG = '''
import os, sys
sys.path.insert(0, {root!r})
from tests import test_extension  # registers the kind, its engine and its model
from deepfound.experiment import base_config


def get_config():
  config = base_config()
  config.data.name, config.data.num_samples = "two_blobs", 50
  config.model.name, config.problem.loss = "noisy_linear_stream", "squared"
  config.num_steps, config.log_every, config.checkpoint_every = 400, 100, 100
  return config
'''


@pytest.mark.slow
def test_user_problem_kind_through_train_with_checkpoints_and_resume(tmp_path):
  config_file = tmp_path / "kind_config.py"
  config_file.write_text(KIND_CONFIG.format(root=ROOT))

  def train(workdir, *args):
    command = [sys.executable, os.path.join(ROOT, "scripts", "train.py"), f"--config={config_file}",
               f"--workdir={tmp_path / workdir}", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)

  straight = train("straight")
  assert straight.returncode == 0, straight.stderr
  assert train("resumed", "--config.num_steps=200").returncode == 0
  resumed = train("resumed")  # the same workdir, extended: starts from the checkpoint of step 200
  assert resumed.returncode == 0, resumed.stderr
  summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
  assert summary["resumed_from_step"] == 200 and summary["method"] == "averaged_sgd"
  assert "final_distance" in summary  # the engine's final facts
  first, second = (np.load(tmp_path / w / "params.npz") for w in ("straight", "resumed"))
  assert set(first.files) == set(second.files)
  for name in first.files:
    np.testing.assert_array_equal(first[name], second[name])
  rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").open()]
  assert [r["step"] for r in rows] == [0, 100, 200, 300, 400]
  assert rows[-1]["objective"] < 0.1 * rows[0]["objective"]  # it learned w_true
  assert rows[-1]["epoch"] is None and "last_iterate_objective" in rows[-1]

  bad = train("bad", "--config.stream.learning_rate=-1.0")
  assert bad.returncode == 2 and "stream.learning_rate must be a float > 0" in bad.stderr
  assert not (tmp_path / "bad").exists()
  diverged = train("diverged", "--config.stream.learning_rate=100.0")
  assert diverged.returncode == 1 and "stream.learning_rate = 100" in diverged.stderr


def test_user_problem_kind_has_its_engine():
  from deepfound.experiment import base_config
  from deepfound.experiment.build import build

  config = base_config()
  config.data.name, config.data.num_samples = "two_blobs", 20
  config.model.name, config.problem.loss = "noisy_linear_stream", "squared"
  setup = build(config)
  assert isinstance(engine_for(setup.problem), AveragedSGDEngine)
  with pytest.raises(TypeError, match="no engine runs object"):
    engine_for(object())
