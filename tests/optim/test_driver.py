"""The on-device driver: convergence, purity (vmap), no retracing, sampling."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepfound import optim as optim_lib
from deepfound.data import make_logistic_data
from deepfound.optim import driver
from deepfound.optim.memory import flushed_table
from deepfound.problems import make_logistic_stream, make_problem, solve_optimum


@pytest.fixture(scope="module")
def small_data():
  return make_logistic_data(200, 5, seed=1, dtype=np.float64)


@pytest.mark.parametrize("name, epochs", [("sag", 60), ("bgd", 150)])
def test_linear_convergence_float64(small_data, name, epochs):
  """Strongly convex (l2 = 0.1): SAG at 1/L_max and BGD at 1/L reach E - E* < 1e-10."""
  x, y = small_data
  with jax.enable_x64(True):
    problem = make_problem(x, y, l2=0.1, dtype=jnp.float64)
    optimum = solve_optimum(problem)
    assert optimum.converged and optimum.gradient_norm < 1e-10
    if name == "sag":
      rate, steps, log_every = 1.0 / problem.max_sample_lipschitz(), epochs * 200, 200
    else:
      rate, steps, log_every = 1.0 / problem.lipschitz(), epochs, 1
    hyper = driver.hyperparameters(rate, dtype=jnp.float64)
    _, points = driver.run(problem, driver.Method(name), hyper, jax.random.PRNGKey(0),
                           num_steps=steps, log_every=log_every)
    gap = np.asarray(points.objective) - optimum.value
  assert gap[-1] < 1e-10, gap[-1]
  # Linear rate: the log-gap falls steadily, not just at the end.
  third = len(gap) // 3
  assert gap[third] < 1e-3 * gap[0] and gap[2 * third] < 1e-3 * gap[third] + 1e-12


def test_chunks_never_retrace(small_data):
  x, y = small_data
  problem = make_problem(x, y, l2=0.01)
  method = driver.Method("sag")
  hyper = driver.hyperparameters(0.05)
  chunk = jax.jit(chex.assert_max_traces(driver.run_chunk, n=1),
                  static_argnames=("method", "num_logs", "log_every"))
  state = driver.init_state(problem, method, hyper, jax.random.PRNGKey(0))
  for _ in range(4):
    state, points = chunk(problem, method, hyper, state, num_logs=2, log_every=25)
  assert int(state.step) == 200 and points.objective.shape == (2,)


@pytest.mark.slow
def test_chunking_does_not_change_the_run(small_data):
  """Indices are a function of (key, step): the same run whatever the log/chunk blocking."""
  x, y = small_data
  problem = make_problem(x, y, l2=0.01)
  method = driver.Method("saga")
  hyper = driver.hyperparameters(0.05)
  key = jax.random.PRNGKey(3)
  final_a, _ = driver.run(problem, method, hyper, key, num_steps=300, log_every=300)
  state = driver.init_state(problem, method, hyper, key)
  for _ in range(3):
    state, _ = driver.run_chunk_jit(problem, method, hyper, state, num_logs=2, log_every=50)
  np.testing.assert_allclose(final_a.params, state.params, rtol=1e-6)


@pytest.mark.slow
def test_vmap_over_hyperparameters_and_seeds_equals_single_runs(small_data):
  x, y = small_data
  problem = make_problem(x, y, l2=0.01)
  method = driver.Method("sgd", schedule="inverse_time")
  rates = jnp.array([0.01, 0.1, 0.5])
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
  run = functools.partial(driver.run, problem, method, num_steps=100, log_every=50)
  hypers = jax.vmap(lambda r: driver.hyperparameters(r, 20.0))(rates)
  batched_state, batched_points = jax.vmap(run)(hypers, keys)
  for k in range(3):
    state, points = run(driver.hyperparameters(rates[k], 20.0), keys[k])
    np.testing.assert_allclose(batched_state.params[k], state.params, rtol=1e-5, atol=1e-7)
    # 1e-6 holds on CPU; on a GPU the batched objective's float32 reductions run in another
    # order (measured 5e-5 on an H200).
    np.testing.assert_allclose(batched_points.objective[k], points.objective, rtol=2e-4)
  assert len({float(o) for o in batched_points.objective[:, -1]}) == 3


def test_same_seed_same_run_and_different_seed_differs(small_data):
  x, y = small_data
  problem = make_problem(x, y)
  method = driver.Method("sgd", schedule="inverse_time")
  hyper = driver.hyperparameters(0.1, 10.0)
  run = functools.partial(driver.run, problem, method, hyper, num_steps=50, log_every=50)
  a, b, c = run(jax.random.PRNGKey(0)), run(jax.random.PRNGKey(0)), run(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(a[0].params, b[0].params)
  assert not np.allclose(a[0].params, c[0].params)


@pytest.mark.slow
def test_shuffled_epochs_visit_every_sample_once(small_data):
  x, y = small_data
  problem = make_problem(x[:40], y[:40])
  method = driver.Method("sag", sampling="shuffle", memory="pytree")
  hyper = driver.hyperparameters(0.01)
  state, _ = driver.run(problem, method, hyper, jax.random.PRNGKey(0), num_steps=40, log_every=40)
  table = np.asarray(flushed_table(state.opt_state[0]))
  assert np.all(np.abs(table).sum(axis=1) > 0)  # all 40 rows written in 40 steps
  uniform = driver.Method("sag", memory="pytree")
  state, _ = driver.run(problem, uniform, hyper, jax.random.PRNGKey(0), num_steps=40, log_every=40)
  table = np.asarray(flushed_table(state.opt_state[0]))
  assert np.sum(np.abs(table).sum(axis=1) == 0) > 5  # with replacement: ~40/e rows missed


def test_minibatch_sag_converges(small_data):
  x, y = small_data
  problem = make_problem(x, y, l2=0.1)
  optimum = solve_optimum(problem).value
  hyper = driver.hyperparameters(1.0 / problem.max_sample_lipschitz())
  method = driver.Method("sag", batch_size=8, average_over_seen=True)
  _, points = driver.run(problem, method, hyper, jax.random.PRNGKey(0), num_steps=500,
                         log_every=250)
  assert float(points.objective[-1]) - optimum < 1e-5


@pytest.mark.slow
def test_stream_runs_sgd_and_refuses_sag():
  stream = make_logistic_stream(num_features=4, seed=0, num_eval=2000)
  method = driver.Method("sga", schedule="inverse_sqrt")
  hyper = driver.hyperparameters(0.5, 10.0)
  _, points = driver.run(stream, method, hyper, jax.random.PRNGKey(0), num_steps=2000,
                         log_every=1000)
  start = float(stream.objective(stream.init_params()))
  assert float(points.objective[-1]) < start - 0.05
  with pytest.raises(ValueError, match="finite"):
    driver.init_state(stream, driver.Method("sag"), hyper, jax.random.PRNGKey(0))


def test_sga_reports_the_cesaro_average(small_data):
  x, y = small_data
  problem = make_problem(x, y)
  method = driver.Method("sga", schedule="inverse_sqrt")
  state, points = driver.run(problem, method, driver.hyperparameters(0.5, 10.0),
                             jax.random.PRNGKey(0), num_steps=200, log_every=200)
  average = optim_lib.averaged_params(state.opt_state)
  assert float(points.objective[-1]) == pytest.approx(float(problem.objective(average)), rel=1e-6)
  assert not np.allclose(average, state.params)  # the average is not the last iterate


def test_svrg_epochs_count_the_snapshot_passes():
  method = driver.Method("svrg")
  # n = 100, one snapshot per 100 steps: after 150 steps, 150 sampled gradients + 2 full passes.
  assert driver.epochs_done(method, 100, 150) == pytest.approx(3.5)
  assert driver.epochs_done(driver.Method("sag", batch_size=4), 100, 50) == pytest.approx(2.0)


@pytest.mark.parametrize("memory", ["pytree", "scalar"])
def test_run_on_indices_with_a_prefilled_memory_matches_numpy(memory):
  """SAG started, as lightning starts it, with every sample's gradient at a point w in its memory
  (pytree: the full gradient, l2 w included; scalar: x_i s_i only, the L2 term taken at the
  current iterate), on a given index sequence."""
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(8, 3)), np.where(rng.random(8) < 0.5, -1.0, 1.0)
  w, indices, tau, l2 = rng.normal(size=3), [2, 5, 5, 0, 7, 2, 1], 0.2, 0.1

  def scale(b, i):
    return -y[i] / (1.0 + np.exp(y[i] * (x[i] @ b)))

  stored = np.array([scale(w, i) * x[i] + (l2 * w if memory == "pytree" else 0.0) for i in range(8)])
  g, b, want = stored.sum(axis=0), np.zeros(3), []
  for i in indices:
    new = scale(b, i) * x[i] + (l2 * b if memory == "pytree" else 0.0)
    g, stored[i] = g - stored[i] + new, new
    b = b - tau * (g / 8 + (0.0 if memory == "pytree" else l2 * b))
    want.append(b.copy())
  with jax.enable_x64(True):
    problem = make_problem(x, y, l2=l2, dtype=jnp.float64)
    _, points = driver.run_on_indices(
        problem, driver.Method("sag", memory=memory, average_over_seen=True),
        driver.hyperparameters(tau, dtype=jnp.float64), np.asarray(indices),
        memory_at=jnp.asarray(w))
  np.testing.assert_allclose(points.params, np.array(want), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("num_samples, written", [(40, 40), (42, 40)])
def test_shuffled_minibatches_take_each_sample_once_per_epoch(small_data, num_samples, written):
  """Batches of 4 from one permutation: an epoch of n // 4 steps writes 4 (n // 4) distinct rows
  (the last n % 4 samples of the permutation are skipped)."""
  x, y = small_data
  problem = make_problem(x[:num_samples], y[:num_samples])
  method = driver.Method("sag", sampling="shuffle", memory="pytree", batch_size=4)
  state, _ = driver.run(problem, method, driver.hyperparameters(0.01), jax.random.PRNGKey(0),
                        num_steps=10, log_every=10)
  table = np.asarray(flushed_table(state.opt_state[0]))
  assert np.count_nonzero(np.abs(table).sum(axis=1)) == written


def test_unrolling_the_step_loop_does_not_change_the_run(small_data):
  """Method.unroll only changes how many steps one loop iteration runs: the same iterates."""
  problem = make_problem(*small_data)
  hyper = driver.hyperparameters(0.5 / problem.max_sample_lipschitz())
  runs = [driver.run(problem, driver.Method("saga", unroll=unroll), hyper, jax.random.PRNGKey(3),
                     num_steps=600, log_every=200)[0].params for unroll in (1, 8, 7)]
  for params in runs[1:]:  # 7 does not divide the page of 200 steps: the gcd (1) is unrolled
    np.testing.assert_allclose(params, runs[0], rtol=1e-6, atol=1e-7)
  assert driver.Method("sag").unroll is None and driver.default_unroll("cpu") == 1
  assert driver.default_unroll("gpu") == driver.DEFAULT_UNROLL["gpu"]
  for bad in (0, -1, True, 2.0, driver.PAGE_STEPS + 1):
    with pytest.raises(ValueError, match="unroll must be an integer"):
      driver.Method("sag", unroll=bad)


def test_ema_reports_the_exponential_average_of_the_iterates(small_data):
  """Method(ema=d): the run reports sum_k (1 - d) d^(l-k) iterate_k / (1 - d^l) after l steps,
  checked against that sum over the recorded iterates of the same run without it (the rule's
  own iterates do not change); sga refuses a second average, and decays outside (0, 1) are
  refused."""
  problem = make_problem(*small_data)
  hyper = driver.hyperparameters(0.5 / problem.max_sample_lipschitz())
  decay, steps = 0.9, 40
  plain = driver.Method("saga")
  averaged = driver.Method("saga", ema=decay)
  state, points = driver.run(problem, averaged, hyper, jax.random.PRNGKey(5), num_steps=steps,
                             log_every=1, record_params=True)
  base_state, base_points = driver.run(problem, plain, hyper, jax.random.PRNGKey(5),
                                       num_steps=steps, log_every=1, record_params=True)
  np.testing.assert_allclose(state.params, base_state.params, rtol=1e-12)  # same iterates
  iterates = np.asarray(base_points.params, np.float64)
  for count, got in enumerate(np.asarray(points.params), start=1):
    weights = (1 - decay) * decay ** np.arange(count - 1, -1, -1.0)
    want = weights @ iterates[:count] / (1 - decay ** count)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)  # float32 runs
  np.testing.assert_allclose(points.params[0], iterates[0], rtol=1e-6)  # w_1 = 1
  assert not np.allclose(want, base_state.params, rtol=1e-3)  # not the last iterate
  np.testing.assert_allclose(driver.reported_params(state), want, rtol=1e-5, atol=1e-7)
  assert float(points.objective[-1]) == pytest.approx(float(problem.objective(want)), rel=1e-5)
  for bad in (0, 1, 1.5, -0.1, True, "0.9"):
    with pytest.raises(ValueError, match="ema must be a decay"):
      driver.Method("sag", ema=bad)
  with pytest.raises(ValueError, match="reports an average of its iterates already"):
    driver.Method("sga", ema=0.99)
