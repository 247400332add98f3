"""Games (17.4.3): the schemes on the bilinear game, the GAN losses, and GANs through the CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import override

from deepfound.optim import driver, game
from deepfound.problems.gan import gradient_penalty, js_discriminator_loss

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "scripts", "train.py")
GAN_2D = os.path.join(ROOT, "configs", "gan_2d.py")
SMALL = ["--config.model.hidden=(32,32)", "--config.model.discriminator_hidden=(32,)",
         "--config.data.num_samples=5000"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Bilinear:
  """min_x max_y x y; the discriminator also holds a counter that each of its steps raises by
  its rate (its loss is -counter), to count the discriminator's steps."""

  start: jax.Array

  def init_params(self):
    return self.start[0], {"y": self.start[1], "count": jnp.zeros(())}

  def draw(self, key, batch_size):
    return jnp.zeros(())

  def losses(self, params, batch):
    x, d = params
    return x * d["y"], -x * d["y"] - d["count"]

  def project(self, d):
    return d

  def evaluation_batch(self):
    return jnp.zeros(())

  def objective(self, params):
    return params[0] * params[1]["y"]

  def metrics(self, params):
    return dict(distance=jnp.hypot(params[0], params[1]["y"]), count=params[1]["count"])


def _bilinear(scheme, steps=200, discriminator_steps=1):
  options = dict(discriminator_steps=discriminator_steps) if scheme == "alternating" else {}
  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme=scheme, **options)
  hyper = game.GameHyper(driver.hyperparameters(0.1), driver.hyperparameters(0.1))
  _, points = game.run(Bilinear(jnp.array([1.0, 1.0])), method, hyper, jax.random.PRNGKey(0),
                       num_steps=steps, log_every=steps // 4)
  return np.asarray(points.extras["distance"]), np.asarray(points.extras["count"])


def test_simultaneous_steps_spiral_out_extragradient_and_optimistic_converge():
  start = np.sqrt(2.0)
  simultaneous, _ = _bilinear("simultaneous")
  assert np.all(np.diff(simultaneous) > 0) and simultaneous[-1] > 2 * start
  for scheme in ("extragradient", "optimistic"):
    distance, _ = _bilinear(scheme)
    assert np.all(np.diff(distance) < 0) and distance[-1] < 0.5 * start, scheme


@pytest.mark.parametrize("k", [1, 3])
def test_alternating_takes_k_discriminator_steps_per_generator_step(k):
  _, count = _bilinear("alternating", steps=40, discriminator_steps=k)
  np.testing.assert_allclose(count, 0.1 * k * np.array([10, 20, 30, 40]), rtol=1e-5)


def _discriminator_only_step(problem, method, optimizers):
  """A scheme of a test's own: k discriminator steps a step and no generator step."""
  _, opt_d = optimizers

  def step(carry, key):
    (theta, xi), (state_g, state_d) = carry
    for j in range(method.option("test_scheme_steps")):
      batch = problem.draw(jax.random.fold_in(key, j), method.batch_size)
      grad = jax.grad(lambda d, batch=batch: problem.losses((theta, d), batch)[1])(xi)
      updates, state_d = opt_d.update(grad, state_d, xi)
      xi = problem.project(optax.apply_updates(xi, updates))
    return (theta, xi), (state_g, state_d)

  return step


def test_a_users_scheme_through_the_registry():
  from deepfound.errors import ConfigError
  from deepfound.experiment import base_config, validate
  from deepfound.optim.schemes import SchemeSpec, register_scheme
  from deepfound.registry import Option, positive

  register_scheme(SchemeSpec(
      "discriminator_only", "k discriminator steps, the generator left alone (a test's scheme)",
      _discriminator_only_step,
      options=(Option("test_scheme_steps", int, 1, "discriminator_only: its steps", positive),)),
      replace=True)
  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="discriminator_only",
                           test_scheme_steps=2)
  hyper = game.GameHyper(driver.hyperparameters(0.1), driver.hyperparameters(0.1))
  problem = Bilinear(jnp.array([1.0, 1.0]))
  state, points = game.run(problem, method, hyper, jax.random.PRNGKey(0), num_steps=8, log_every=4)
  np.testing.assert_allclose(np.asarray(points.extras["count"]), [0.8, 1.6], rtol=1e-5)
  np.testing.assert_array_equal(state.params[0], problem.init_params()[0])  # the generator stays
  with pytest.raises(ValueError, match="test_scheme_steps must be in"):
    game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="discriminator_only",
                    test_scheme_steps=0)
  # Its option is a config key, validated where the scheme is chosen and refused elsewhere.
  from configs import gan_2d

  config = gan_2d.get_config("ring")
  assert base_config().optim.test_scheme_steps == 1
  config.optim.scheme, config.optim.test_scheme_steps = "discriminator_only", 3
  validate(config)
  config.optim.scheme = "alternating"
  with pytest.raises(ConfigError, match="test_scheme_steps=3 applies to optim.scheme="
                                        "discriminator_only only"):
    validate(config)


@pytest.mark.parametrize("scheme", ["alternating", "optimistic", "extragradient"])
def test_a_players_moving_average_is_reported_and_the_iterates_are_unchanged(scheme):
  """The generator with ``ema``: the game's iterates are those of the run without it, and the
  reported generator is the debiased moving average of its recorded iterates, under a scheme
  that wraps the rule (optimistic) too; the discriminator, on sga, is reported as its last
  iterate (sga's own average would be over other points than the iterates there)."""
  decay, steps = 0.9, 12
  hyper = game.GameHyper(driver.hyperparameters(0.1), driver.hyperparameters(0.1))

  def play(generator):
    method = game.GameMethod(generator, driver.Method("sga"), scheme=scheme)
    return game.run(Bilinear(jnp.array([1.0, 0.5])), method, hyper, jax.random.PRNGKey(0),
                    num_steps=steps, log_every=1, record_params=True)

  plain_state, plain = play(driver.Method("sgd"))
  state, points = play(driver.Method("sgd", ema=decay))
  np.testing.assert_allclose(state.params[0], plain_state.params[0], rtol=1e-6)
  iterates = np.asarray(plain.params[0])
  average = iterates[0]
  for count in range(2, steps + 1):
    average = average + (1 - decay) / (1 - decay ** count) * (iterates[count - 1] - average)
  reported = game.reported_params(state)
  np.testing.assert_allclose(reported[0], average, rtol=1e-5)
  assert abs(float(reported[0]) - float(state.params[0])) > 1e-3  # the average is not the iterate
  np.testing.assert_allclose(reported[1]["y"], state.params[1]["y"])
  np.testing.assert_allclose(points.params[0][-1], average, rtol=1e-5)  # what the log reports


def test_optimistic_wrapper_is_two_u_t_minus_u_t_minus_one():
  import optax

  opt = game.optimistic(optax.sgd(0.5))
  state = opt.init(jnp.zeros(2))
  first, state = opt.update(jnp.array([1.0, 2.0]), state)
  second, state = opt.update(jnp.array([3.0, -1.0]), state)
  np.testing.assert_allclose(first, 2 * -0.5 * np.array([1.0, 2.0]))
  np.testing.assert_allclose(second, 2 * -0.5 * np.array([3.0, -1.0]) + 0.5 * np.array([1.0, 2.0]))


def test_js_loss_at_the_optimal_discriminator_is_two_js_minus_log_four():
  p = np.array([0.5, 0.25, 0.25, 0.0])
  q = np.array([0.125, 0.125, 0.25, 0.5])
  optimal = p / (p + q)  # D* = p / (p + q), as logits
  with np.errstate(divide="ignore"):
    logits = np.log(optimal) - np.log1p(-optimal)
  # Samples in the laws' proportions (8 draws each): expectations are exact means.
  real = np.repeat(logits, (8 * p).astype(int))
  fake = np.repeat(logits, (8 * q).astype(int))
  value = -float(js_discriminator_loss(jnp.asarray(real), jnp.asarray(fake)))
  m = (p + q) / 2
  kl = lambda a, b: np.sum(np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / b), 0.0))  # noqa: E731
  js = 0.5 * kl(p, m) + 0.5 * kl(q, m)
  assert value == pytest.approx(2 * js - np.log(4), abs=1e-6)
  # Any other discriminator does worse (V is the sup over D).
  other = -float(js_discriminator_loss(jnp.asarray(real * 0.5), jnp.asarray(fake * 0.5)))
  assert other < value


def test_gradient_penalty_against_a_direct_computation():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(4, 6)))
  critic = lambda x: jnp.sum(jnp.tanh(x @ w), axis=-1)  # noqa: E731
  real, fake = jnp.asarray(rng.normal(size=(5, 4))), jnp.asarray(rng.normal(size=(5, 4)))
  mix = jnp.asarray(rng.uniform(size=5))
  got = float(gradient_penalty(critic, real, fake, mix))
  expected = []
  for u, a, b in zip(np.asarray(mix), np.asarray(real), np.asarray(fake), strict=True):
    x = u * a + (1 - u) * b
    grad = np.asarray(w) @ (1 - np.tanh(x @ np.asarray(w)) ** 2)  # d/dx sum tanh(x W)
    expected.append((np.linalg.norm(grad) - 1) ** 2)
  assert got == pytest.approx(np.mean(expected), rel=1e-5)


def train(workdir, *args, config="ring"):
  command = [sys.executable, TRAIN, f"--config={GAN_2D}:{config}", f"--workdir={workdir}", *SMALL,
             *args]
  return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


def gan_config(arg="ring", **overrides):
  """gan_2d's config at the size of ``SMALL``, with ``a__b__c=value`` setting config.a.b.c, for
  runs through the Python API (``run_experiment``): the CLI's own plumbing is tested once here
  (``test_a_2d_gan_through_the_cli``, ``test_a_bad_game_setting_exits_2_with_one_line``)."""
  from configs import gan_2d

  config = gan_2d.get_config(arg)
  config.model.hidden, config.model.discriminator_hidden = (32, 32), (32,)
  config.data.num_samples = 5000
  return override(config, **overrides)


def _check_gan_rows(workdir):
  """metrics.jsonl of a 100-step run logged every 50: every game metric finite, the game moved."""
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [0, 50, 100]
  for key in ("generator_loss", "discriminator_loss", "generator_grad_norm",
              "discriminator_grad_norm", "modes_captured", "high_quality_fraction", "objective"):
    assert np.isfinite(rows[-1][key]), key
  assert rows[-1]["generator_loss"] != rows[0]["generator_loss"]


@pytest.mark.slow
def test_a_2d_gan_through_the_cli(tmp_path):
  result = train(tmp_path / "run", "--config.num_steps=100", "--config.log_every=50",
                 "--config.problem.loss=js", "--config.optim.scheme=alternating",
                 config="grid,2")
  assert result.returncode == 0, result.stderr
  _check_gan_rows(tmp_path / "run")


@pytest.mark.slow
def test_a_packed_wgan_gp_by_extragradient_with_a_maxout_critic(tmp_path):
  """The other loss and scheme of the CLI test's packed GAN, through the Python API, with a maxout
  critic (model.maxout_pieces) and PacGAN's batch-normalized generator and N(0, 0.02^2) weights."""
  from deepfound.experiment import run_experiment

  config = gan_config("grid,2", num_steps=100, log_every=50, problem__loss="wgan_gp",
                      optim__scheme="extragradient", model__maxout_pieces=3,
                      model__generator_norm="batch", model__init_stddev=0.02)
  run_experiment(config, str(tmp_path / "run"), progress=False)
  _check_gan_rows(tmp_path / "run")
  params = np.load(tmp_path / "run" / "params.npz")
  # The critic's first layer: packs of 2 points in 2-D (4 inputs) to 32 units x 3 pieces; the
  # generator's layers (2 -> 32 -> 32 -> 2) have no such shape.
  assert any(v.shape == (4, 96) for v in params.values())
  assert not any(v.shape == (4, 32) for v in params.values())
  # The generator's two hidden layers: a gamma and a beta of 32 each, and no biases.
  widths = [k for k, v in params.items() if v.shape == (32,) and k.startswith("params[0]")]
  assert len(widths) == 4 and not any("bias" in k for k in widths), widths


@pytest.mark.slow
def test_a_resumed_game_ends_with_the_same_parameters(tmp_path):
  """A game stopped at a checkpoint and resumed ends with the parameters of the straight run.

  svre: its snapshot (taken at steps 0, 30, 60, 90) travels in the checkpoint of step 50. One
  scheme is enough: the runner saves and restores a game's state as the list of its leaves,
  whatever the scheme, and svre's state holds every other scheme's leaves (both players'
  parameters and adam states, the step, the key, broken_at) and its snapshot besides.

  The stopped run's config.json is also made as it was before model.maxout_pieces existed: such a
  run resumes (the key counts at its default), and a change of that key is still refused.
  """
  from deepfound.experiment import ConfigError, run_experiment

  def config(num_steps, **overrides):
    return gan_config(num_steps=num_steps, log_every=25, checkpoint_every=50, optim__scheme="svre",
                      optim__svre_frequency=30, **overrides)

  run_experiment(config(100), str(tmp_path / "straight"), progress=False)
  run_experiment(config(50), str(tmp_path / "resumed"), progress=False)
  path = tmp_path / "resumed" / "config.json"
  stored = json.loads(path.read_text())
  del stored["config"]["model"]["maxout_pieces"]  # as config.json was before the key was added
  path.write_text(json.dumps(stored))
  summary = run_experiment(config(100), str(tmp_path / "resumed"), progress=False)  # from step 50
  assert summary["resumed_from_step"] == 50 and summary["step"] == 100
  straight = np.load(tmp_path / "straight" / "params.npz")
  resumed = np.load(tmp_path / "resumed" / "params.npz")
  assert sorted(straight) == sorted(resumed) and len(straight) > 4
  for name in straight:
    np.testing.assert_array_equal(straight[name], resumed[name])
  with pytest.raises(ConfigError, match=r"different config \(model.maxout_pieces differ\)"):
    run_experiment(config(150, model__maxout_pieces=3), str(tmp_path / "resumed"), progress=False)


@pytest.mark.slow
def test_a_diverging_game_names_the_player(tmp_path):
  """(The CLI's exit status 1 for a DivergenceError is tested in tests/experiment/test_cli.py.)"""
  from deepfound.experiment import DivergenceError, run_experiment

  config = gan_config(num_steps=100, log_every=50, problem__loss="wgan_gp",
                      optim__discriminator__name="sgd", optim__discriminator__learning_rate=1e12)
  with pytest.raises(DivergenceError, match="the discriminator's parameters are not finite at step"):
    run_experiment(config, str(tmp_path / "run"), progress=False)
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["status"] == "diverged"


@pytest.mark.slow
def test_a_bad_game_setting_exits_2_with_one_line(tmp_path):
  result = train(tmp_path / "run", "--config.optim.scheme=leapfrog")
  assert result.returncode == 2, result.stderr
  assert "optim.scheme" in result.stderr and result.stderr.strip().count("\n") == 0
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides,message", [
    (dict(optim__scheme="leapfrog"), "optim.scheme must be one of"),
    (dict(optim__generator__name="sag"), "optim.generator.name=sag"),
    (dict(problem__pack=0), "problem.pack must be in"),
    (dict(problem__loss="mmd"), "problem.loss must be one of"),
    (dict(model__maxout_pieces=0), "model.maxout_pieces must be in"),
    (dict(optim__generator__ema=1.0), r"optim.generator.ema must be a decay in \(0, 1\)"),
    (dict(optim__discriminator__name="sga", optim__discriminator__ema=0.99),
     "optim.discriminator.ema: optim.discriminator.name=sga reports an average"),
])
def test_bad_game_settings_are_refused_in_one_line_before_anything_is_written(tmp_path, overrides,
                                                                                message):
  """What the CLI prints, on one line, with exit status 2 (deepfound.cli.run_main)."""
  from deepfound.experiment import ConfigError, run_experiment

  with pytest.raises(ConfigError, match=message) as refused:
    run_experiment(gan_config(**overrides), str(tmp_path / "run"), progress=False)
  assert "\n" not in str(refused.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_rate_sweep_is_one_program_of_every_pair_and_seed():
  from configs import gan_2d
  from deepfound.benchmarks.gans import game_rate_sweep

  config = gan_2d.get_config("ring")
  config.model.hidden, config.model.discriminator_hidden = (16,), (16,)
  config.data.num_samples, config.num_steps, config.log_every = 2000, 40, 20
  result = game_rate_sweep(config, [1e-4, 1e-3], [3e-4, 3e-3, 3e-2], num_seeds=2)
  modes = np.asarray(result["last"]["modes_captured"])
  assert modes.shape == (2, 3, 2) and result["runs"] == 12
  assert np.all((modes >= 0) & (modes <= 8))
  assert len(np.unique(np.asarray(result["last"]["high_quality_fraction"]))) > 1  # runs differ


@pytest.mark.slow
def test_seed_runs_are_one_program_with_each_seeds_own_start():
  from configs import gan_2d
  from deepfound.benchmarks.gans import game_seed_runs

  config = gan_2d.get_config("ring")
  config.model.hidden, config.model.discriminator_hidden = (16,), (16,)
  config.data.num_samples, config.num_steps, config.log_every = 2000, 40, 20
  run = game_seed_runs(config, 3, keep_samples=50)
  assert run["samples"].shape == (2, 50, 2) and run["diverged"] == 0
  losses = run["per_seed"]["generator_loss"]
  assert len(losses) == 3 and len(set(losses)) == 3  # three different starts and keys
  assert np.asarray(run["curves"]["modes_captured"]).shape == (3, 2)
  assert run["mean"]["modes_captured"] == pytest.approx(np.mean(run["per_seed"]["modes_captured"]))


def test_the_leaky_relu_of_gan_discriminators_has_slope_0_2():
  from deepfound.models.activations import ACTIVATIONS

  x = jnp.array([-2.0, -0.5, 0.0, 1.5])
  np.testing.assert_allclose(ACTIVATIONS["leaky_relu"](x), [-0.4, -0.1, 0.0, 1.5], rtol=1e-6)


def test_maxout_units_are_the_largest_of_their_pieces():
  from flax import nnx

  from deepfound.models import MLP

  net = MLP([3, 4, 1], pieces=5, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
  first, last = net.layers
  assert first.kernel.shape == (3, 20)  # 4 units x 5 pieces
  pieces = np.asarray(x @ first.kernel[...] + first.bias[...]).reshape(6, 4, 5)
  expected = pieces.max(axis=-1) @ np.asarray(last.kernel[...]) + np.asarray(last.bias[...])
  np.testing.assert_allclose(net(x), expected, rtol=1e-5, atol=1e-6)


def test_a_finite_blow_up_of_a_game_is_a_divergence():
  """Simultaneous steps on min_x max_y x y spiral out by sqrt(1 + tau^2) a step: at tau = 1, V
  is about 1e18 after 60 steps, finite in float32. The engine's check applies the objective
  engine's rule (BLOWUP_FACTOR times max(|V(start)|, 1), on |V|) and refuses non-finite gradient
  norms; sweep rows say diverged by the same rule, at any log point."""
  from deepfound.experiment import base_config
  from deepfound.experiment.outputs import metric_rows
  from deepfound.optim.engine import BLOWUP_FACTOR
  from deepfound.sweep.games import _row

  method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="simultaneous")
  hyper = game.GameHyper(driver.hyperparameters(1.0), driver.hyperparameters(1.0))
  state, points = game.run(Bilinear(jnp.array([1.0, 1.0])), method, hyper, jax.random.PRNGKey(0),
                           num_steps=60, log_every=20)
  rows = metric_rows(points, 0.0, 0.0, lambda step: None, None)
  assert all(np.isfinite(r[k]) for r in rows for k in ("objective", "generator_grad_norm"))
  assert abs(rows[-1]["objective"]) > 1e15 and int(state.broken_at.max()) == -1
  limit = BLOWUP_FACTOR * 1.0  # max(|V(start)|, 1) = 1
  found = game.failure(rows, state, limit)  # |V| ~ 1e6 at step 20, 1e12 at 40
  assert (found.keep, found.step) == (0, 20)
  assert found.what.startswith("the payoff V reached") and "1000 times its size" in found.what
  found = game.failure(rows, state, 1e9)
  assert (found.keep, found.step) == (1, 40)
  assert game.failure(rows[:1], state, 1e9) is None

  norms = dict(rows[0], generator_grad_norm=float("inf"))  # V finite, a norm overflowed
  assert game.bad_point(norms, 1e9) == "the generator's gradient norm is not finite"
  assert game.failure([rows[0], norms], state, 1e9).keep == 1

  config = base_config()
  config.model.name = "gan"
  for player in game.PLAYERS:
    config.optim[player].learning_rate = 1.0
  extras = {name: np.asarray([r[name] for r in rows]) for name in points.extras}
  objective = np.asarray([r["objective"] for r in rows])
  broken = np.asarray([-1, -1])
  assert _row(0, {}, 0, config, objective, extras, broken, limit)["diverged"]
  calm = _row(0, {}, 0, config, objective[:1], {k: v[:1] for k, v in extras.items()}, broken,
              1e9)
  assert not calm["diverged"] and calm["final_objective"] == pytest.approx(objective[0])
