"""The lazy sparse path is the dense iteration for every shrink factor 1 - tau l2 in [0, 1]:
scikit-learn's own cases, log blocks and chunks that do not change the iterate, vmapped runs
whose rebases stay conditionals, and a seeded property test against the dense path."""

import itertools
import unittest.mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from deepfound.optim import driver, lazy, lazy_kernel
from deepfound.problems import make_problem, make_sparse_problem


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _both(x, y, **kwargs):
  kwargs.setdefault("dtype", jnp.float64)
  return make_problem(np.asarray(x.todense()), y, **kwargs), make_sparse_problem(x, y, **kwargs)


def test_scikit_learns_blobs_at_its_automatic_step():
  """scikit-learn's test_step_size_alpha_error data at l2 = 1.1: SAGA's automatic step gives
  tau l2 = 0.168; the scale used to underflow before the fixed rescale and return NaN."""
  from sklearn.datasets import make_blobs
  from sklearn.linear_model import LogisticRegression

  features, labels = make_blobs(n_samples=20, centers=2, random_state=0, cluster_std=0.1)
  labels = np.where(labels == 1, 1.0, -1.0)
  dense, sparse = _both(scipy.sparse.csr_matrix(features), labels, l2=1.1, fit_intercept=True)
  hyper = driver.hyperparameters(0.168 / 1.1, dtype=jnp.float64)
  method, key = driver.Method("saga"), jax.random.PRNGKey(0)
  expected, _ = driver.run(dense, method, hyper, key, num_steps=6000, log_every=6000)
  for log_every in (6000, 20):
    state, _ = driver.run(sparse, method, hyper, key, num_steps=6000, log_every=log_every)
    assert np.isfinite(state.params).all()
    np.testing.assert_allclose(state.params, expected.params, rtol=0, atol=1e-12)
  # Ours is (1/n) sum L_i + (l2/2)|b|^2 (intercept not penalized): C = 1 / (n l2).
  reference = LogisticRegression(C=1.0 / (20 * 1.1), tol=1e-12, max_iter=10_000).fit(
      features, labels)
  np.testing.assert_allclose(expected.params, np.append(reference.coef_[0], reference.intercept_),
                             atol=1e-6)


@pytest.mark.parametrize("name", ["sag", "saga", "sgd"])
def test_a_step_that_zeroes_the_weights(name):
  """tau l2 = 1 (legal: it zeroes the old weights) on X = 0, labels (1, -1), l2 = 0.5, step 2."""
  features = scipy.sparse.csr_matrix(np.zeros((2, 1)))
  dense, sparse = _both(features, np.array([1.0, -1.0]), l2=0.5, fit_intercept=True)
  hyper = driver.hyperparameters(2.0, dtype=jnp.float64)
  indices = np.array([0, 1, 1, 0, 0, 1, 0, 1])
  _, expected = driver.run_on_indices(dense, driver.Method(name), hyper, indices, log_every=2)
  _, got = driver.run_on_indices(sparse, driver.Method(name), hyper, indices, log_every=2)
  assert np.isfinite(got.params).all()
  np.testing.assert_allclose(got.params, expected.params, rtol=0, atol=1e-12)


def _random_problem(rng, *, n=24, p=10, width=4, loss="logistic"):
  """A sparse matrix with at most ``width`` non-zeros a row (row 0 has exactly that many, so
  that every problem of a case has the same shapes), labels for ``loss`` and weights."""
  rows = np.zeros((n, p))
  for i in range(n):
    count = width if i == 0 else rng.integers(0, width + 1)
    columns = rng.choice(p, size=count, replace=False)
    rows[i, columns] = rng.choice([-1.0, 1.0], size=count) * rng.uniform(0.3, 2.0, size=count)
  if loss == "logistic":
    labels = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
  elif loss == "multinomial":
    labels = np.arange(n) % 3
  else:
    labels = rng.normal(size=n)
  rng.shuffle(labels)
  weights = rng.uniform(0.3, 3.0, size=n) if rng.random() < 0.5 else np.ones(n)
  return scipy.sparse.csr_matrix(rows), labels, weights


@pytest.mark.slow
def test_property_lazy_is_dense_for_every_shrink():
  """Seeded: 12 static cases (rule, loss, L1, intercept, schedule, SAG's average_over_seen,
  log block) of 16 random problems each, tau l2 from 0 to 1; the same indices step for step."""
  rng = np.random.default_rng(20261203)
  static = list(itertools.product(["sgd", "sag", "saga"], ["logistic", "least_squares",
                                                           "multinomial"],
                                  [0.0, 0.03], [False, True], ["constant", "inverse_time"]))
  static = [case for case in static if not (case[0] == "sag" and case[2])]  # SAG takes no prox
  chosen = [static[i] for i in rng.choice(len(static), size=12, replace=False)]
  assert {c[0] for c in chosen} == {"sgd", "sag", "saga"} and {c[2] for c in chosen} == {0.0, 0.03}
  steps, checked, rebased = 120, 0, 0
  for name, loss, l1, intercept, schedule in chosen:
    options = {"average_over_seen": True} if name == "sag" and rng.random() < 0.5 else {}
    method = driver.Method(name, schedule=schedule, **options)
    log_every = int(rng.choice([1, 8, 24, 40, 120]))
    for _ in range(16):
      x, y, w = _random_problem(rng, loss=loss)
      largest = float(np.max(np.asarray(x.multiply(x).sum(axis=1))))
      rate = rng.uniform(0.1, 1.0) / largest
      shrink = rng.choice([0.0, rng.uniform(0, 0.05), rng.uniform(0.05, 1.0), 1.0])
      dense, sparse = _both(x, y, l2=shrink / rate, loss=loss, l1=l1, fit_intercept=intercept,
                            sample_weight=w)
      hyper = driver.hyperparameters(rate, l0=5.0, dtype=jnp.float64)
      indices = rng.integers(0, 24, size=steps)
      _, expected = driver.run_on_indices(dense, method, hyper, indices, log_every=log_every)
      _, got = driver.run_on_indices(sparse, method, hyper, indices, log_every=log_every)
      scale = max(1.0, float(np.abs(expected.params).max()))
      np.testing.assert_allclose(got.params, expected.params, rtol=0, atol=1e-10 * scale,
                                 err_msg=f"{name} {loss} l1={l1} intercept={intercept} "
                                 f"{schedule} {options} log_every={log_every} tau l2={shrink}")
      checked += 1
      rebased += lazy.rebase_period(rate, shrink / rate, jnp.float64) < steps
  assert checked == 192 and rebased >= 30  # cases whose scale crossed the floor within the run


def _long_problem(l1):
  rng = np.random.default_rng(3)
  x, y, _ = _random_problem(rng, n=40, p=30, width=5)
  return _both(x, y, l2=3.0, l1=l1, fit_intercept=True)


@pytest.mark.slow
@pytest.mark.parametrize("name,l1", [("saga", 0.01), ("sag", 0.0)])
def test_the_iterate_does_not_depend_on_log_every_or_chunks(name, l1):
  """tau l2 = 0.3: a rebase every ~590 steps in float64, at steps that move with the log block."""
  dense, sparse = _long_problem(l1)
  method, hyper, key = driver.Method(name), driver.hyperparameters(0.1, dtype=jnp.float64), \
      jax.random.PRNGKey(5)
  steps = 9000
  expected, _ = driver.run(dense, method, hyper, key, num_steps=steps, log_every=steps)
  assert np.abs(expected.params).max() > 1e-2
  for log_every in (9000, 600, 25):
    state, _ = driver.run(sparse, method, hyper, key, num_steps=steps, log_every=log_every)
    np.testing.assert_allclose(state.params, expected.params, rtol=0, atol=1e-12)
  state = driver.init_state(sparse, method, hyper, key)
  for num_logs in (2, 1, 3):  # three chunks of 2, 1 and 3 log blocks of 1,500 steps
    state, _ = driver.run_chunk_jit(sparse, method, hyper, state, num_logs=num_logs,
                                    log_every=1500)
  np.testing.assert_allclose(state.params, expected.params, rtol=0, atol=1e-12)


def _count(jaxpr, primitive):
  total = 0
  for equation in jaxpr.eqns:
    total += equation.primitive.name == primitive
    for sub in jax.core.subjaxprs(equation) if hasattr(jax.core, "subjaxprs") else ():
      total += _count(sub, primitive)
    for value in equation.params.values():
      for inner in value if isinstance(value, (tuple, list)) else (value,):
        if hasattr(inner, "jaxpr") and hasattr(inner.jaxpr, "eqns"):
          total += _count(inner.jaxpr, primitive)
        elif hasattr(inner, "eqns"):
          total += _count(inner, primitive)
  return total


@pytest.mark.slow
def test_vmapped_runs_rebase_together_and_stay_conditionals():
  """A sweep of rates in one program: one run's shrink crosses the floor in a page, another's
  never does; each equals its run alone, and vmap left every conditional a conditional."""
  dense, sparse = _long_problem(0.01)
  method, key = driver.Method("saga"), jax.random.PRNGKey(1)
  rates = jnp.array([0.001, 0.1, 0.32])  # tau l2 = 0.003, 0.3, 0.96
  hyper = driver.Hyperparameters(rates, jnp.ones(3), jnp.ones(3))
  run = lambda h: driver.run(sparse, method, h, key, num_steps=1200, log_every=600)  # noqa: E731
  state, _ = jax.jit(jax.vmap(run))(hyper)
  for k, rate in enumerate(rates):
    alone, _ = driver.run(dense, method, driver.hyperparameters(rate, dtype=jnp.float64), key,
                          num_steps=1200, log_every=600)
    np.testing.assert_allclose(state.params[k], alone.params, rtol=0, atol=1e-12)
  single = jax.make_jaxpr(run)(driver.hyperparameters(0.1, dtype=jnp.float64)).jaxpr
  # Where the compiled kernel is in (lazy_kernel), a run's page chooses it by platform: one
  # conditional more, which the multi-run step does not have.
  platform = _count(single, "platform_index")
  assert platform == int(lazy_kernel.available())
  single = _count(single, "cond") - platform
  batched = _count(jax.make_jaxpr(jax.vmap(run))(hyper).jaxpr, "cond")
  # The runs share their draws: the multi-run step (lazy._multi_step) adds its switch on the
  # row's width in each of its two step loops.
  assert single >= 3 and batched == single + 2


def test_frequent_rebases_are_announced():
  assert lazy.frequent_rebase_warning(0.01, 0.1, jnp.float32) == ()
  (warning,) = lazy.frequent_rebase_warning(0.5, 1.0, jnp.float32)
  assert "every 63 steps" in warning and "0.5" in warning
  assert lazy.rebase_period(2.0, 0.5, jnp.float64) == 1.0


@pytest.mark.parametrize("name, loss, l1, over_seen", [
    ("sag", "multinomial", 0.0, True), ("sgd", "logistic", 0.02, False),
    ("saga", "least_squares", 0.0, False)])
def test_a_rate_sweep_steps_every_run_at_once_and_a_seed_sweep_run_by_run(name, loss, l1,
                                                                          over_seen):
  """Runs that share their draws (a sweep over rates) take ``lazy.multi_run_steps``: the rows of
  every run stored side by side, one gather and one scatter a step. Each run equals its run
  alone; runs with their own keys (a sweep over seeds) are vmapped run by run, and equal too."""
  rng = np.random.default_rng(11)
  x, y, _ = _random_problem(rng, n=30, p=12, width=4, loss=loss)
  dense, sparse = _both(x, y, l2=10.0, l1=l1, fit_intercept=True, loss=loss)
  options = dict(average_over_seen=True) if over_seen else {}
  method = driver.Method(name, **options)
  rates = jnp.array([0.003, 0.02, 0.06])  # tau l2 = 0.03, 0.2, 0.6: frequent rebases
  hyper = driver.Hyperparameters(rates, jnp.ones(3), jnp.ones(3))
  keys = jax.random.split(jax.random.PRNGKey(2), 3)

  def run(h, key):
    return driver.run(sparse, method, h, key, num_steps=600, log_every=300)[0].params

  original = lazy.multi_run_steps
  with unittest.mock.patch.object(lazy, "multi_run_steps", wraps=original) as multi:
    shared = jax.jit(jax.vmap(run, in_axes=(0, None)))(hyper, keys[0])
    assert multi.called
    multi.reset_mock()
    own = jax.jit(jax.vmap(run))(hyper, keys)
    assert not multi.called
  for k, rate in enumerate(rates):
    h = driver.hyperparameters(rate, dtype=jnp.float64)
    for got, key in ((shared[k], keys[0]), (own[k], keys[k])):
      alone, _ = driver.run(dense, method, h, key, num_steps=600, log_every=300)
      assert np.all(np.abs(alone.params) < 1e3)  # a run that converges, not overflows
      np.testing.assert_allclose(got, alone.params, rtol=1e-12, atol=1e-12)


def test_the_multi_run_step_works_on_the_rows_first_entries_wherever_the_padding_lies(
    monkeypatch):
  """The multi-run step takes the smallest of its widths that holds a row's last stored entry:
  rows of 0 to 8 entries padded to 8 (in 4 buckets, widths 2, 4, 6, 8), and the same rows with
  their padding moved anywhere, give each run's iterate alone."""
  import dataclasses

  assert lazy._bucket_widths(8, 4) == (2, 4, 6, 8) and lazy._bucket_widths(3, 4) == (1, 2, 3)
  assert lazy._bucket_widths(148, 8) == (19, 37, 56, 74, 93, 111, 130, 148)
  p = 12
  for columns, expected in (([p] * 8, 0), ([3, p, p, p, p, p, p, p], 0), ([p, p, 5] + [p] * 5, 1),
                            ([p] * 7 + [0], 3), ([1, 2, 3, 4, 5, p, p, p], 2)):
    assert int(lazy._bucket(jnp.asarray(columns), p, (2, 4, 6, 8))) == expected, columns
  rng = np.random.default_rng(3)
  x, y, _ = _random_problem(rng, n=40, p=p, width=8, loss="logistic")
  dense, sparse = _both(x, y, l2=1.0, fit_intercept=True)
  order = rng.permuted(np.tile(np.arange(8), (40, 1)), axis=1)  # each row's entries shuffled
  shuffled = dataclasses.replace(
      sparse, indices=jnp.take_along_axis(sparse.indices, jnp.asarray(order), axis=1),
      values=jnp.take_along_axis(sparse.values, jnp.asarray(order), axis=1))
  method, key = driver.Method("sag"), jax.random.PRNGKey(4)
  rates = jnp.array([0.01, 0.1, 0.4])
  monkeypatch.setattr(lazy, "MULTI_BUCKETS", 4)
  hyper = driver.Hyperparameters(rates, jnp.ones(3), jnp.ones(3))
  multi = unittest.mock.patch.object(lazy, "multi_run_steps", wraps=lazy.multi_run_steps)
  for problem in (sparse, shuffled):
    with multi as traced:  # (the second problem reuses driver.run's trace of the first)
      got = jax.jit(jax.vmap(lambda h, problem=problem: driver.run(
          problem, method, h, key, num_steps=400, log_every=200)[0].params))(hyper)
    assert problem is shuffled or traced.called
    for k, rate in enumerate(rates):
      alone, _ = driver.run(dense, method, driver.hyperparameters(rate, dtype=jnp.float64), key,
                            num_steps=400, log_every=200)
      np.testing.assert_allclose(got[k], alone.params, rtol=1e-12, atol=1e-12)
