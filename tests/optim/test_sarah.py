"""SARAH against a NumPy transcription of its recursion, step for step, and through the driver."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import INDICES, L2, np_full_gradient, np_objective, np_sample_gradient

from deepfound import optim
from deepfound.optim import driver
from deepfound.problems import make_problem, solve_optimum

TAU = 0.3
BATCHES = [[0, 3, 3], [1, 5, 0], [2, 4, 3], [1, 0, 5], [2, 2, 2], [3, 3, 1]]


def np_sarah(x, y, steps, tau, period):
  """v_0 = grad E(w_0) at every outer start; v_t = g_i(w_t) - g_i(w_{t-1}) + v_{t-1}, with g_i the
  mean gradient of step t's samples; w_{t+1} = w_t - tau v_t."""
  b, previous, v, out = np.zeros(x.shape[1]), None, None, []
  for t, batch in enumerate(steps):
    batch = np.atleast_1d(batch)
    if t % period == 0:
      v = np_full_gradient(x, y, b)
    else:
      now = np.mean([np_sample_gradient(x, y, b, i) for i in batch], axis=0)
      before = np.mean([np_sample_gradient(x, y, previous, i) for i in batch], axis=0)
      v = now - before + v
    previous, b = b.copy(), b - tau * v
    out.append(b.copy())
  return np.array(out)


@pytest.mark.slow
@pytest.mark.parametrize("steps, period", [(INDICES, 4), (BATCHES, 3)])
def test_sarah_update_matches_numpy(tiny_data, steps, period):
  """Driven as a user drives an optax optimizer, with the two gradient functions it needs."""
  x, y = tiny_data
  with jax.enable_x64(True):
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def mean_gradient(b, batch):
      scale = -yj[batch] * jax.nn.sigmoid(-yj[batch] * (xj[batch] @ b))
      return jnp.mean(scale[:, None] * xj[batch], axis=0) + L2 * b

    full_gradient = lambda b: mean_gradient(b, jnp.arange(len(y)))  # noqa: E731
    batch_size = len(np.atleast_1d(steps[0]))
    opt = optim.sarah(TAU, len(y), update_frequency=period, batch_size=batch_size)
    params = jnp.zeros(x.shape[1])
    state, got = opt.init(params), []
    for batch in steps:
      index_b = jnp.atleast_1d(jnp.asarray(batch))
      batch_gradient = lambda b, index_b=index_b: mean_gradient(b, index_b)  # noqa: E731
      updates, state = opt.update(batch_gradient(params), state, params,
                                  gradient_fn=batch_gradient, full_gradient_fn=full_gradient)
      params = optax.apply_updates(params, updates)
      got.append(np.asarray(params))
  np.testing.assert_allclose(np.array(got), np_sarah(x, y, steps, TAU, period), rtol=1e-10,
                             atol=1e-12)


@pytest.mark.slow
def test_sarah_through_the_driver_matches_numpy_and_converges(tiny_data):
  x, y = tiny_data
  with jax.enable_x64(True):
    problem = make_problem(x, y, l2=L2, dtype=jnp.float64)
    hyper = driver.hyperparameters(TAU, dtype=jnp.float64)
    method = driver.Method("sarah", batch_size=3, sarah_frequency=3)
    _, points = driver.run_on_indices(problem, method, hyper, np.asarray(BATCHES))
    np.testing.assert_allclose(points.params, np_sarah(x, y, BATCHES, TAU, 3), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(points.objective[-1], np_objective(x, y, points.params[-1]),
                               rtol=1e-12)
    # Strongly convex: linear convergence to float64 precision with the default period n.
    optimum = solve_optimum(problem).value
    rate = 0.5 / problem.max_sample_lipschitz()
    _, run = driver.run(problem, driver.Method("sarah"), driver.hyperparameters(rate, dtype=jnp.float64),
                        jax.random.PRNGKey(0), num_steps=600, log_every=60)
  gap = np.asarray(run.objective) - optimum
  assert gap[-1] < 1e-10 and gap[4] < 1e-4 * gap[0], gap


def test_sarah_epochs_count_full_and_two_point_gradients():
  # n = 100, a full gradient every 100 steps: after 150 steps, 2 full passes and 148 two-point steps.
  assert driver.epochs_done(driver.Method("sarah"), 100, 150) == pytest.approx(2 + 2 * 148 / 100)
  assert driver.epochs_done(driver.Method("sarah", batch_size=5, sarah_frequency=10), 100, 20) == (
      pytest.approx(2 + 2 * 5 * 18 / 100))
