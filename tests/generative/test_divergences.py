"""Minibatch divergences of 17.4: the debiased Sinkhorn divergence and the Gaussian-kernel MMD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepfound.problems.divergences import (
  DIVERGENCES,
  epsilon_schedule,
  minibatch_divergence,
  mmd,
  sinkhorn_divergence,
)

EPS = 0.5  # large enough for Sinkhorn to converge to float64 accuracy within a few hundred iterations
N, D = 8, 2  # one shape for every Sinkhorn call, so that the tests share compiles


@pytest.fixture(scope="module")
def clouds():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = (rng.normal(size=(N, D)) + np.array([1.5, -0.5])).astype(np.float32)
  return x, y


@pytest.fixture(scope="module")
def sinkhorn():
  return jax.jit(lambda x, y: sinkhorn_divergence(x, y, EPS))


def test_sinkhorn_is_zero_on_itself_symmetric_and_positive(clouds, sinkhorn):
  x, y = clouds
  assert abs(float(sinkhorn(x, x))) < 1e-4
  assert abs(float(sinkhorn(y, y))) < 1e-4
  s_xy, s_yx = float(sinkhorn(x, y)), float(sinkhorn(y, x))
  assert s_xy > 0.5
  assert s_xy == pytest.approx(s_yx, rel=1e-4)


def test_sinkhorn_of_a_translate_is_the_squared_shift(clouds, sinkhorn):
  # S_eps(x, x + t) = |t|^2 for the cost |x - y|^2 (a cost |x - y|^2 / 2 would give |t|^2 / 2).
  x, _ = clouds
  values = [float(sinkhorn(x, x + np.array(t, np.float32))) for t in ([0.3, 0.0], [0.6, 0.0], [0.6, 0.8])]
  np.testing.assert_allclose(values, [0.09, 0.36, 1.0], rtol=1e-4)
  assert values[0] < values[1] < values[2]


def test_sinkhorn_gradient_moves_generated_points_toward_the_data(clouds):
  x, y = clouds
  value_and_grad = jax.jit(jax.value_and_grad(lambda x, y: sinkhorn_divergence(x, y, EPS)))
  # For a translate y = x + t, grad_{x_i} |t|^2 = -2 t / n at every point (Danskin's gradient is
  # exact at convergence; the default threshold 1e-3 leaves an error of a few 1e-4).
  t = np.array([0.6, 0.8], np.float32)
  _, grad = value_and_grad(x, x + t)
  np.testing.assert_allclose(grad, np.broadcast_to(-2.0 * t / N, (N, D)), atol=1e-3)
  # A general pair: a finite gradient, and one step along it decreases the divergence.
  value, grad = value_and_grad(x, y)
  assert np.all(np.isfinite(grad))
  stepped, _ = value_and_grad(x - 0.5 * grad, y)
  assert float(stepped) < float(value) - 0.1


@pytest.mark.slow
def test_sinkhorn_runs_under_vmap_of_a_scan_of_gradient_steps(clouds, sinkhorn):
  x, y = clouds
  xs = jnp.stack([x, x + 1.0, 2.0 * x])

  def descend(x0):
    def step(x, _):
      value, grad = jax.value_and_grad(sinkhorn_divergence)(x, y, EPS)
      return x - 2.0 * grad, value

    return jax.lax.scan(step, x0, None, length=3)[1]

  values = jax.jit(jax.vmap(descend))(xs)
  assert values.shape == (3, 3)
  assert np.all(np.diff(np.asarray(values), axis=1) < 0)
  np.testing.assert_allclose(values[:, 0], [sinkhorn(xi, y) for xi in xs], rtol=1e-4)


@pytest.mark.slow
def test_sinkhorn_in_float64(clouds):
  x, _ = clouds
  with jax.enable_x64(True):
    x64 = jnp.asarray(x, jnp.float64)
    t = jnp.array([0.6, 0.8], jnp.float64)
    value = sinkhorn_divergence(x64, x64 + t, EPS, threshold=1e-9)
    assert value.dtype == jnp.float64
    assert float(value) == pytest.approx(1.0, abs=1e-10)


def np_mmd(x, y, bandwidths, unbiased):
  """The MMD^2 estimate by direct double loops."""

  def k(u, v):
    return sum(np.exp(-np.sum((u - v) ** 2) / (2.0 * h**2)) for h in bandwidths)

  def within(z):
    pairs = [k(z[i], z[j]) for i in range(len(z)) for j in range(len(z)) if not (unbiased and i == j)]
    return sum(pairs) / len(pairs)

  cross = sum(k(u, v) for u in x for v in y) / (len(x) * len(y))
  return within(x) + within(y) - 2.0 * cross


@pytest.mark.slow
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("bandwidth", [0.7, (0.2, 1.0, 3.0)])
def test_mmd_matches_a_double_loop(unbiased, bandwidth):
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5
  bandwidths = bandwidth if isinstance(bandwidth, tuple) else (bandwidth,)
  expected = np_mmd(x, y, bandwidths, unbiased)
  with jax.enable_x64(True):
    assert float(mmd(x, y, bandwidth, unbiased=unbiased)) == pytest.approx(expected, abs=1e-12)
  got32 = mmd(x.astype(np.float32), y.astype(np.float32), bandwidth, unbiased=unbiased)
  assert got32.dtype == jnp.float32
  assert float(got32) == pytest.approx(expected, abs=1e-6)


def test_mmd_separates_laws():
  rng = np.random.default_rng(2)
  x, x2, z = (rng.normal(size=(200, 2)).astype(np.float32) for _ in range(3))
  assert float(mmd(x, x, 1.0, unbiased=False)) == 0.0
  same = float(mmd(x, x2, 1.0))  # unbiased: about zero for two samples of one law
  different = float(mmd(x, z + 1.0, 1.0))
  assert abs(same) < 0.01
  assert different > 0.1


def test_mmd_under_vmap_and_its_gradient_step():
  rng = np.random.default_rng(3)
  xs = rng.normal(size=(3, 16, 2)).astype(np.float32)
  y = (rng.normal(size=(16, 2)) + 1.0).astype(np.float32)
  bandwidth = (0.5, 1.0, 2.0)
  value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(mmd), in_axes=(0, None, None)))
  values, grads = value_and_grad(xs, y, bandwidth)
  expected = [np_mmd(x.astype(float), y.astype(float), bandwidth, unbiased=True) for x in xs]
  np.testing.assert_allclose(values, expected, rtol=1e-5)
  assert np.all(np.isfinite(grads))
  stepped, _ = value_and_grad(xs - 2.0 * grads, y, bandwidth)
  assert np.all(stepped < values)


def test_minibatch_divergence_dispatches_and_names_the_choices(clouds):
  x, y = clouds
  assert set(DIVERGENCES) == {"sinkhorn", "mmd"}
  assert float(minibatch_divergence("mmd", x, y, bandwidth=1.0)) == pytest.approx(float(mmd(x, y, 1.0)))
  with pytest.raises(ValueError, match=r"\['mmd', 'sinkhorn'\]"):
    minibatch_divergence("wasserstein", x, y, epsilon=EPS)
  with pytest.raises(ValueError, match="needs epsilon"):
    minibatch_divergence("sinkhorn", x, y, bandwidth=1.0)


def test_the_sinkhorn_schedule_reaches_its_final_epsilon(clouds):
  schedule = epsilon_schedule(0.01, 1.0, 0.5)
  # 1.0 * 0.5^t > 0.01 for t < 7 (0.5^7 = 0.0078): the target holds from iteration 7 on.
  assert float(schedule(0)) == pytest.approx(1.0)
  assert float(schedule(3)) == pytest.approx(0.125)
  assert float(schedule(6)) == pytest.approx(1.0 / 64)  # still above the target
  assert [float(schedule(t)) for t in (7, 8, 100)] == pytest.approx([0.01] * 3)
  assert epsilon_schedule(0.01) == 0.01 and epsilon_schedule(0.01, 0.005) == 0.01  # no scaling
  for decay in (1.5, 1.0):  # 1 would never leave the start
    with pytest.raises(ValueError, match="epsilon_decay"):
      epsilon_schedule(0.01, 1.0, decay)
  # A solve scaled down from eps 20 ends where the plain solve at EPS does, not at 20's value.
  x, y = clouds
  plain = float(sinkhorn_divergence(x, y, EPS, threshold=1e-6))
  scaled = float(sinkhorn_divergence(x, y, EPS, threshold=1e-6, epsilon_start=20.0,
                                     epsilon_decay=0.7))
  start = float(sinkhorn_divergence(x, y, 20.0, threshold=1e-6))
  assert scaled == pytest.approx(plain, rel=1e-3)
  assert abs(start - plain) > 0.1


def test_sinkhorn_momentum_keeps_the_value(clouds):
  """Over-relaxation changes the path of the iterations, not their fixed point."""
  x, y = clouds
  plain = float(sinkhorn_divergence(x, y, EPS, threshold=1e-6))
  assert float(sinkhorn_divergence(x, y, EPS, threshold=1e-6, momentum=1.3)) == pytest.approx(
      plain, rel=1e-3)


def test_unbalanced_sinkhorn_stops_dragging_points_across_far_modes():
  # Two modes 4 apart; the generated sample has 6 points in mode A and 2 in B, the data 4 and 4.
  # Balanced transport must move two A points to B (a pull of length ~4 on them); with a penalty
  # rho = 0.1 on the marginals (reach ~0.3) moving mass that far costs more than creating and
  # destroying it, so every point stays where it is and only feels its own mode.
  rng = np.random.default_rng(1)
  a, b = np.zeros(2, np.float32), np.array([4.0, 0.0], np.float32)

  def jitter(n):
    return (0.05 * rng.normal(size=(n, 2))).astype(np.float32)

  x = np.concatenate([a + jitter(6), b + jitter(2)])
  y = np.concatenate([a + jitter(4), b + jitter(4)])

  def grad(**kw):
    return np.asarray(jax.grad(lambda x: sinkhorn_divergence(x, y, 0.01, **kw))(x))

  balanced, unbalanced = grad(), grad(rho=0.1)
  # Balanced: some A point is pulled toward B by about 2 * 4 / 8 (grad = 2 sum_j P_ij (x_i - y_j)).
  assert np.max(-balanced[:6, 0]) > 0.3
  assert np.max(np.abs(unbalanced)) < 0.05
  # Unbalanced transport keeps S(x, x) = 0 and S > 0 between different samples.
  assert abs(float(sinkhorn_divergence(x, x, 0.01, rho=0.1))) < 1e-4
  assert float(sinkhorn_divergence(x, y, 0.01, rho=0.1)) > 1e-3


def test_a_config_whose_scaling_never_reaches_epsilon_is_refused():
  """The run's iterations must outlast the scaling: from 1.0 to 1e-3 at 0.8 takes 31."""
  from configs import pushforward_2d
  from deepfound.errors import ConfigError
  from deepfound.experiment.config import validate
  from deepfound.problems.divergences import scaling_iterations

  assert scaling_iterations(1.0, 1e-3, 0.8) == 31
  assert scaling_iterations(1.0, 0.01, 0.5) == 7  # the schedule test's iteration 7
  with pytest.raises(ValueError, match="needs 7 iterations to reach 0.01; max_iterations = 7"):
    sinkhorn_divergence(np.zeros((N, D)), np.ones((N, D)), 0.01, max_iterations=7,
                        epsilon_start=1.0, epsilon_decay=0.5)  # the Python API refuses it too
  config = pushforward_2d.get_config("ring")
  validate(config)
  config.problem.sinkhorn_iterations = 31
  with pytest.raises(ConfigError, match="needs 31 iterations to reach problem.epsilon"):
    validate(config)
  config.problem.sinkhorn_iterations = 100
  config.problem.epsilon_decay = 1.0
  with pytest.raises(ConfigError, match="epsilon_decay must be in"):
    validate(config)
