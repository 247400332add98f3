"""SVRE (variance-reduced extragradient, the ``svre`` scheme of ``deepfound.optim.game``)."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepfound.optim import driver, game
from deepfound.problems.kinds import FiniteGame

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NoisyBilinear:
  """min_x max_y (1/n) sum_i a_i x y + b_i x - c_i y, with mu/2 x^2 - mu/2 y^2 added: a finite
  sum whose samples disagree (so a minibatch gradient is noisy at the equilibrium), strongly
  monotone, with one equilibrium."""

  a: jax.Array
  b: jax.Array
  c: jax.Array
  mu: float = 0.2

  @property
  def num_samples(self):
    return self.a.shape[0]

  def equilibrium(self):
    a, b, c = (float(np.mean(v)) for v in (self.a, self.b, self.c))
    # generator: a y + b + mu x = 0; discriminator (minimizing the negative): -(a x - c) + mu y = 0
    return np.linalg.solve([[self.mu, a], [-a, self.mu]], [-b, -c])

  def init_params(self):
    return jnp.asarray(2.0), {"y": jnp.asarray(-1.0)}

  def sample_batch(self, indices):
    return self.a[indices], self.b[indices], self.c[indices]

  def draw(self, key, batch_size):
    return self.sample_batch(jax.random.randint(key, (batch_size,), 0, self.num_samples))

  def losses(self, params, batch):
    x, y = params[0], params[1]["y"]
    a, b, c = batch
    payoff = jnp.mean(a * x * y + b * x - c * y)
    return payoff + self.mu / 2 * x**2, -payoff + self.mu / 2 * y**2

  def project(self, d):
    return d

  def evaluation_batch(self):
    return self.a, self.b, self.c

  def objective(self, params):
    return self.losses(params, self.evaluation_batch())[0]

  def metrics(self, params):
    return dict(x=params[0], y=params[1]["y"])


def _noisy_bilinear(n=16):
  rng = np.random.default_rng(0)
  return NoisyBilinear(jnp.asarray(1.0 + 0.5 * rng.normal(size=n)), jnp.asarray(rng.normal(size=n)),
                       jnp.asarray(rng.normal(size=n)))


def _distance(problem, scheme, steps=3000, rate=0.1):
  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme=scheme, batch_size=1)
  hyper = game.GameHyper(driver.hyperparameters(rate), driver.hyperparameters(rate))
  _, points = game.run(problem, method, hyper, jax.random.PRNGKey(0), num_steps=steps,
                       log_every=steps // 3)
  last = np.array([points.extras["x"][-1], points.extras["y"][-1]])
  return float(np.linalg.norm(last - problem.equilibrium()))


def test_the_noisy_bilinear_game_is_a_finite_game():
  assert isinstance(_noisy_bilinear(), FiniteGame)


def test_svre_reaches_the_equilibrium_where_stochastic_extragradient_hovers():
  problem = _noisy_bilinear()
  stochastic = _distance(problem, "extragradient")
  reduced = _distance(problem, "svre")
  assert stochastic > 1e-2  # the minibatch noise keeps constant-step extragradient away
  assert reduced < 1e-5, (stochastic, reduced)  # float32: 2e-7 measured


def test_full_gradients_are_the_mean_of_the_sample_gradients():
  problem = _noisy_bilinear(n=11)
  params = (jnp.asarray(0.3), {"y": jnp.asarray(-0.7)})
  full_gradients = jax.jit(game.full_gradients, static_argnames="chunk")
  grads = full_gradients(problem, params, chunk=4)  # two chunks of 4 and a rest of 3
  # Each sample's gradients, one sample a batch (vmapped over the samples: one program).
  each = jax.jit(jax.vmap(lambda i: game.gradients(problem, params,
                                                   problem.sample_batch(i[None]))[0]))(
      jnp.arange(11))
  assert each[0].shape == (11,)
  np.testing.assert_allclose(grads[0], np.mean(each[0]), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(grads[1]["y"], np.mean(each[1]["y"]), rtol=1e-6, atol=1e-7)


def test_the_estimate_is_the_full_gradient_at_the_snapshot():
  problem = _noisy_bilinear()
  params = (jnp.asarray(0.3), {"y": jnp.asarray(-0.7)})
  snapshot = game.Snapshot(params, game.full_gradients(problem, params), jnp.zeros((), jnp.int32))
  estimate = game.variance_reduced_gradients(problem, params, snapshot, jnp.array([3, 5]))
  np.testing.assert_allclose(estimate[0], snapshot.mean[0], atol=1e-6)
  np.testing.assert_allclose(estimate[1]["y"], snapshot.mean[1]["y"], atol=1e-6)
  elsewhere = game.variance_reduced_gradients(
      problem, (jnp.asarray(1.0), {"y": jnp.asarray(1.0)}), snapshot, jnp.array([3, 5]))
  assert abs(float(elsewhere[0]) - float(snapshot.mean[0])) > 1e-3


def test_snapshots_are_taken_every_period():
  problem = _noisy_bilinear()
  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="svre",
                           batch_size=2, svre_frequency=5)
  hyper = game.GameHyper(driver.hyperparameters(0.1), driver.hyperparameters(0.1))
  state = game.init_state(problem, method, hyper, jax.random.PRNGKey(1))
  states = [jax.device_get(state)]
  for _ in range(12):  # one step at a time: the parameters before each step
    state, _ = game.run_chunk_jit(problem, method, hyper, state, num_logs=1, log_every=1)
    states.append(jax.device_get(state))
  # A snapshot is taken at the start of steps 0, 5 and 10 (state after 0, 5 and 10 steps).
  for done in range(1, 13):
    taken = (done - 1) // 5 * 5
    np.testing.assert_array_equal(states[done].snapshot.params[0], states[taken].params[0])
    np.testing.assert_array_equal(states[done].snapshot.params[1]["y"], states[taken].params[1]["y"])
  assert len({float(s.snapshot.params[0]) for s in states[1:]}) == 3
  assert int(state.snapshot.count) == 12
  assert game.svre_period(problem, method) == 5
  assert game.svre_period(problem, game.GameMethod(driver.Method("sgd"), driver.Method("sgd"),
                                                   scheme="svre", batch_size=4)) == 4  # 16 // 4


def test_a_vmapped_run_keeps_the_snapshot_conditional():
  """Under vmap over seeds the step counter stays unbatched, so the full pass over the data stays
  inside a cond instead of becoming a select that would run it every step."""
  problem = _noisy_bilinear()
  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="svre", batch_size=2)
  hyper = game.GameHyper(driver.hyperparameters(0.1), driver.hyperparameters(0.1))
  many = jax.vmap(lambda key: game.run(problem, method, hyper, key, num_steps=8, log_every=4)[1])
  text = str(jax.make_jaxpr(many)(jax.random.split(jax.random.PRNGKey(0), 3)))
  assert " cond[" in text


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["js", "wgan_gp"])
def test_a_packed_gans_full_gradients_are_the_gradient_of_every_pack(loss):
  from configs import gan_2d
  from deepfound.experiment import build

  config = gan_2d.get_config("ring,3")
  config.model.hidden, config.model.discriminator_hidden = (8,), (8,)
  config.data.num_samples, config.problem.loss = 203, loss
  problem = build.build(config).problem
  assert problem.num_samples == 67  # the last 2 rows make no pack
  params = problem.init_params()
  # Compiled, as the runner runs them (op by op, the networks cost seconds of dispatch).
  chunked = jax.jit(game.full_gradients, static_argnames="chunk")(problem, params, chunk=7)
  whole, _ = jax.jit(lambda problem, params: game.gradients(
      problem, params, problem.sample_batch(jnp.arange(67))))(problem, params)
  for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(whole), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_svre_refuses_a_game_that_is_not_a_finite_sum():
  from tests.games.test_games import Bilinear

  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="svre")
  with pytest.raises(TypeError, match="finite-sum game"):
    game.make_step(Bilinear(jnp.array([1.0, 1.0])), method, (None, None))


@pytest.mark.slow
def test_a_gan_sample_batch_is_a_function_of_the_indices():
  from configs import gan_2d
  from deepfound.experiment import build

  config = gan_2d.get_config("ring,2")
  config.model.hidden, config.model.discriminator_hidden = (8,), (8,)
  config.data.num_samples = 200
  problem = build.build(config).problem
  assert problem.num_samples == 100  # packs of two
  one = problem.sample_batch(jnp.array([7, 3]))
  again = problem.sample_batch(jnp.array([3, 7]))
  np.testing.assert_array_equal(one[0][:2], problem.samples[14:16])  # pack 7 = rows 14 and 15
  np.testing.assert_array_equal(one[0][:2], again[0][2:])
  np.testing.assert_array_equal(one[1][:2], again[1][2:])  # the same latents for the same pack
  np.testing.assert_array_equal(one[2][0], again[2][1])


@pytest.mark.slow
def test_svre_through_the_cli(tmp_path):
  command = [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
             f"--config={os.path.join(ROOT, 'configs', 'gan_2d.py')}:ring",
             f"--workdir={tmp_path / 'run'}", "--config.model.hidden=(16,16)",
             "--config.model.discriminator_hidden=(16,)", "--config.data.num_samples=2000",
             "--config.optim.scheme=svre", "--config.optim.svre_frequency=10",
             "--config.num_steps=40", "--config.log_every=20"]
  result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 0, result.stderr
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [0, 20, 40]
  assert np.isfinite(rows[-1]["objective"]) and rows[-1]["generator_loss"] != rows[0]["generator_loss"]
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["config"]["optim"]["svre_frequency"] == 10  # the flag set a key whose default is None


def test_svre_frequency_reaches_the_method(tmp_path):
  from configs import gan_2d
  from deepfound.errors import ConfigError
  from deepfound.experiment import games, run_experiment, validate

  config = gan_2d.get_config("ring")
  config.optim.scheme, config.optim.svre_frequency = "svre", 7
  assert games.build_method(config).option("svre_frequency") == 7
  # A bad frequency is refused before anything is written, in one line: what the CLI prints with
  # exit status 2 (deepfound.cli.run_main; the contract is tested through train.py in
  # test_games.py).
  config.optim.svre_frequency = 0
  with pytest.raises(ConfigError, match="optim.svre_frequency") as refused:
    run_experiment(config, str(tmp_path / "run"), progress=False)
  assert "\n" not in str(refused.value) and not (tmp_path / "run").exists()
  config.optim.svre_frequency = 7
  config.optim.scheme = "extragradient"
  with pytest.raises(ConfigError, match="svre_frequency=7 applies to optim.scheme=svre only"):
    validate(config)
  config.optim.svre_frequency, config.optim.discriminator_steps = None, 5
  with pytest.raises(ConfigError, match="applies to optim.scheme=alternating only"):
    validate(config)
  # svrg's option is not a game's: refused with the name of svre's own.
  config.optim.discriminator_steps, config.optim.svrg_frequency = 1, 7
  with pytest.raises(ConfigError, match="optim.svrg_frequency=7 is an option of the top-level "
                                        "rule.*optim.svre_frequency"):
    validate(config)
