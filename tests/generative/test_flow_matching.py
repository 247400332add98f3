"""Flow matching and score matching: exact targets, couplings, ODE likelihoods, samplers, runs."""

import itertools
import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, assert_chunks_give_one_run, config_of, metric_rows
from scipy.linalg import expm

from deepfound.experiment import ConfigError, run_experiment, validate
from deepfound.experiment.build import build_method, build_problem
from deepfound.models import flow_matching as fm
from deepfound.problems.generative import NoisyFiniteSum

MEANS = jnp.array([[1.0, 0.0], [-0.5, 0.8], [0.2, -1.2]])
SD = 0.3


def _mixture_draws(key, num, means=MEANS, sd=SD):
  ids = jax.random.randint(key, (num,), 0, means.shape[0])
  return means[ids] + sd * jax.random.normal(jax.random.fold_in(key, 1), (num, means.shape[1]))


@pytest.mark.slow
def test_noised_mixture_score_is_the_gradient_of_the_convolved_density():
  # p_t(y) = E_x N(y; a x, s^2 I) estimated by quadrature over 400,000 draws of the mixture (no
  # use of the closed form): its log-gradient against the closed form.
  a, s = 0.8, 0.5
  x = _mixture_draws(jax.random.PRNGKey(0), 400_000)

  def log_density(y):
    return jax.nn.logsumexp(-jnp.sum(jnp.square(y - a * x), -1) / (2 * s**2))

  points = jnp.array([[0.3, 0.1], [-0.9, 0.4], [1.2, -1.0], [0.0, 0.0]])
  numeric = jax.vmap(jax.grad(log_density))(points)
  exact = fm.noised_mixture_score(points, a, s, MEANS, SD)
  np.testing.assert_allclose(exact, numeric, atol=0.02)
  # and at a = 1, s -> 0 it is the mixture's own score
  own = jax.vmap(jax.grad(lambda y: jax.nn.logsumexp(
      -jnp.sum(jnp.square(y - MEANS), -1) / (2 * SD**2))))(points)
  np.testing.assert_allclose(fm.noised_mixture_score(points, 1.0, 0.0, MEANS, SD), own, rtol=1e-5)


def test_mixture_velocity_is_the_conditional_mean_of_the_path():
  # E[y1 - y0 | y_t] by kernel regression over many simulated pairs near the query point
  # (about 7,000 effective points: a standard error near 0.01).
  t = 0.6
  with jax.enable_x64(True):
    y1 = _mixture_draws(jax.random.PRNGKey(1), 4_000_000).astype(jnp.float64)
    y0 = jax.random.normal(jax.random.PRNGKey(2), y1.shape, jnp.float64)
    y_t = (1 - t) * y0 + t * y1
    query = jnp.array([0.4, -0.3])
    weights = jnp.exp(-jnp.sum(jnp.square(y_t - query), -1) / (2 * 0.02**2))
    estimate = jnp.sum(weights[:, None] * (y1 - y0), 0) / jnp.sum(weights)
    exact = fm.mixture_velocity(query, t, MEANS, SD)
  np.testing.assert_allclose(exact, estimate, atol=0.03)
  assert float(jnp.max(jnp.abs(exact - fm.mixture_velocity(query, 0.5, MEANS, SD)))) > 0.1


def test_flow_matching_loss_at_the_exact_velocity_is_its_known_minimum():
  # Gaussian to Gaussian: y1 ~ N(m, sd^2 I), y0 ~ N(0, I), d = 2. The minimum of the regression is
  # E_t tr Var(y1 - y0 | y_t) = d E_t [(sd^2 + 1) - (t sd^2 - (1 - t))^2 / (t^2 sd^2 + (1 - t)^2)].
  mean, sd, num = jnp.array([[1.5, -0.5]]), 0.4, 400_000
  t = np.linspace(0, 1, 200_001)
  minimum = 2 * np.trapezoid((sd**2 + 1) - (t * sd**2 - (1 - t))**2 / (t**2 * sd**2 + (1 - t)**2), t)
  data = mean + sd * jax.random.normal(jax.random.PRNGKey(3), (num, 2))
  noise = jax.random.normal(jax.random.PRNGKey(4), (num, 2))
  keys = jax.random.split(jax.random.PRNGKey(5), num)

  def mean_loss(shift):
    velocity = lambda y, t: fm.mixture_velocity(y, t, mean, sd) + shift  # noqa: E731
    return jnp.mean(jax.vmap(lambda d, z, k: fm.flow_matching_loss(velocity, d, z, k))(
        data, noise, keys))

  assert float(mean_loss(0.0)) == pytest.approx(minimum, rel=0.01)
  assert float(mean_loss(0.1)) == pytest.approx(minimum + 2 * 0.1**2, rel=0.01)


@pytest.mark.slow
def test_ot_coupling_is_the_brute_force_assignment():
  data = jax.random.normal(jax.random.PRNGKey(6), (6, 2)) * 2 + 1
  key = jax.random.PRNGKey(7)
  paired = fm.couple(data, key, "ot")
  noise = fm.couple(data, key, "independent")  # the same draws, unpaired
  # a permutation of the noise points
  order = [int(np.argmin(np.sum((np.asarray(noise) - np.asarray(p))**2, -1))) for p in paired]
  assert sorted(order) == list(range(6))
  cost = lambda perm: float(np.sum((np.asarray(data) - np.asarray(noise)[list(perm)])**2))  # noqa: E731
  best = min(itertools.permutations(range(6)), key=cost)
  assert cost(order) == pytest.approx(cost(best), rel=1e-6)
  assert cost(order) < cost(range(6))
  # sinkhorn pairs each point with one of the noise points, mostly its OT partner
  drawn = fm.couple(data, key, "sinkhorn", epsilon=0.01)
  assert all(np.any(np.all(np.isclose(np.asarray(noise), p), -1)) for p in np.asarray(drawn))


@pytest.mark.slow
def test_ode_likelihood_of_an_affine_flow_is_the_change_of_variables():
  # dy/dt = A y + c from y0 ~ N(0, I): y(1) = e^A y0 + A^{-1} (e^A - I) c and
  # log p1(y(1)) = log N(y0) - tr A.
  with jax.enable_x64(True):
    a = jnp.array([[-0.5, 1.0], [-0.3, 0.8]])
    c = jnp.array([0.4, -1.0])
    y0 = jax.random.normal(jax.random.PRNGKey(8), (5, 2), jnp.float64)
    e = expm(np.asarray(a))
    y1 = y0 @ e.T + np.linalg.solve(np.asarray(a), (e - np.eye(2)) @ np.asarray(c))
    expected = -0.5 * np.sum(np.asarray(y0)**2, -1) - math.log(2 * math.pi) - np.trace(a)
    field = lambda y, t: y @ a.T + c  # noqa: E731
    solver = fm.Solver("tsit5", tolerance=1e-10)
    log_p, steps, failed = fm.ode_log_likelihood(field, jnp.asarray(y1), 1.0, 0.0, 1.0, solver)
    np.testing.assert_allclose(log_p, expected, rtol=1e-8)
    assert not failed and steps > 0
    # Hutchinson's estimate is unbiased: on average over many points, the same trace
    many = jax.random.normal(jax.random.PRNGKey(9), (4000, 2), jnp.float64)
    exact, _, _ = fm.ode_log_likelihood(field, many, 1.0, 0.0, 1.0, solver)
    estimate, _, _ = fm.ode_log_likelihood(field, many, 1.0, 0.0, 1.0, solver,
                                           jax.random.PRNGKey(10))
    assert float(jnp.mean(estimate - exact)) == pytest.approx(0.0, abs=0.05)
    assert float(jnp.std(estimate - exact)) > 0.1  # it is an estimate, not the trace


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_samplers_with_the_exact_score_recover_a_gaussian(kind):
  # VE's prior N(0, (s_max^2 + 1) I) assumes centred data (the models standardize theirs): a mean
  # of 0.7 at t = 1 is an offset of 0.7 s_data / s_max at the end.
  mean = jnp.array([[0.7, -0.4]]) if kind == "vp" else jnp.array([[0.05, -0.03]])
  sd = 0.5
  schedule = fm.Schedule(kind)
  score = lambda y, t: fm.noised_mixture_score(y, *schedule.mean_sd(t), mean, sd)  # noqa: E731
  key = jax.random.PRNGKey(11)
  sde = fm.reverse_sde_sample(score, schedule, key, 4000, 2, 500)
  ode, _, failed = fm.ode_sample(fm.probability_flow(score, schedule), key, 4000, 2, 1.0,
                                 schedule.t_min, schedule.prior_variance, fm.Solver(tolerance=1e-5))
  assert not failed
  for samples in (sde, ode):
    np.testing.assert_allclose(jnp.mean(samples, 0), mean[0], atol=0.05)
    np.testing.assert_allclose(jnp.std(samples, 0), [sd, sd], rtol=0.06)
  # and the flow velocity of a Gaussian target carries N(0, I) to it (Euler, 200 steps)
  velocity = lambda y, t: fm.mixture_velocity(y, t, mean, sd)  # noqa: E731
  flow, _, _ = fm.ode_sample(velocity, key, 4000, 2, 0.0, 1.0, 1.0, fm.Solver("euler", steps=200))
  np.testing.assert_allclose(jnp.mean(flow, 0), mean[0], atol=0.05)
  np.testing.assert_allclose(jnp.std(flow, 0), [sd, sd], rtol=0.06)


TINY = dict(data__num_samples=2_000, model__hidden=(16, 16), num_steps=40, log_every=20,
            checkpoint_every=20, optim__batch_size=32, problem__nll_test_samples=50,
            problem__sample_steps=4, problem__ode_tolerance=1e-3)


@pytest.mark.slow
def test_ot_coupled_run_cut_in_chunks_gives_the_straight_run():
  """What a resumed run relies on: the pairing and the noise of each step are functions of the
  run's key and the step, so two chunks give the parameters of one run."""
  config = config_of("flow_matching_2d", "ring,ot", **TINY)
  problem = build_problem(config)
  assert isinstance(problem, NoisyFiniteSum) and problem.couple_size == 32
  assert_chunks_give_one_run(problem, build_method(config))
  # A batch is paired with its noise: data points first, then their OT partners.
  samples, _ = problem.noisy_batch(jnp.arange(32), jax.random.PRNGKey(0))
  assert samples.shape == (32, 4)
  np.testing.assert_array_equal(samples[:, :2], problem.samples[:32])
  # the full-data objective pairs in chunks of the batch size (and a smaller last chunk)
  assert problem.paired(problem.samples[:70], jax.random.PRNGKey(1)).shape == (70, 4)


@pytest.mark.slow
def test_score_matching_and_sag_on_its_finite_sum(tmp_path):
  config = config_of("score_matching_2d", "ring", **dict(
      TINY, data__num_samples=300, optim__name="saga", optim__learning_rate=1e-3,
      optim__schedule="constant", optim__batch_size=4, problem__sde_steps=20))
  summary = run_experiment(config, str(tmp_path), progress=False)
  rows = metric_rows(tmp_path)
  assert rows[-1]["score_error"] < rows[0]["score_error"]
  assert summary["gradient_memory_mb"] > 0
  for key in ("test_nll", "sde_modes_captured", "w2", "w2_reference"):
    assert math.isfinite(summary[key]), key
  assert summary["ode_failures"] == 0 and 0 <= summary["sde_high_quality_fraction"] <= 1
  # the ring's entropy is known: -4.29 nats
  assert summary["kl_gap"] == pytest.approx(summary["test_nll"] + 4.293, abs=0.01)


@pytest.mark.parametrize("module, overrides, message", [
    ("flow_matching_2d", dict(problem__coupling="greedy"), "problem.coupling"),
    ("flow_matching_2d", dict(problem__coupling="ot", optim__batch_size=2048), "O(b^3)"),
    ("score_matching_2d", dict(problem__schedule="sub-vp"), "problem.schedule"),
    ("score_matching_2d", dict(problem__coupling="ot"), "problem.coupling"),
    ("flow_matching_2d", dict(problem__ode_tolerance=0.0), "problem.ode_tolerance"),
    ("score_matching_2d", dict(problem__ode_tolerance=1e-9), "10 machine epsilons"),
    ("flow_matching_2d", dict(problem__sample_steps=0), "problem.sample_steps"),
])
def test_bad_configs_are_refused(module, overrides, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                     .replace("^", r"\^")):
    validate(config_of(module, "ring", **overrides))


@pytest.mark.slow
@pytest.mark.parametrize("i, config", enumerate(["flow_matching_2d.py:moons,sinkhorn",
                                                 "flow_matching_digits.py"]))
def test_cli_runs_each_config_for_a_few_steps(tmp_path, i, config):
  flags = [f"--config.{k.replace('__', '.')}={v}" for k, v in TINY.items()
           if not (config.startswith("flow_matching_digits") and k == "data__num_samples")]
  command = [sys.executable, "scripts/train.py", f"--config=configs/{config}",
             f"--workdir={tmp_path / str(i)}", *flags]
  result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((tmp_path / str(i) / "summary.json").read_text())
  assert summary["status"] == "complete" and summary["ode_failures"] == 0
  assert math.isfinite(summary["test_nll"]) and summary["nll_ode_steps"] > 0
  rows = metric_rows(tmp_path / str(i))
  assert [r["step"] for r in rows] == [0, 20, 40] and rows[-1]["test_loss"] < rows[0]["test_loss"]
  if i == 0:  # moons: no known law, so no kl_gap; a flow's straightness and w2
    assert "kl_gap" not in summary and summary["straightness"] > 0 and summary["w2"] > 0
  if i == 1:  # digits: bits per dimension and the classifier's verdict on the samples
    assert summary["test_bits_per_dim"] == pytest.approx(
        (summary["test_nll"] + 64 * math.log(17)) / (64 * math.log(2)), rel=1e-5)
    assert 1 <= summary["classes_covered"] <= 10 and summary["frechet_distance"] > 0
