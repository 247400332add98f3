"""The compiled lazy step loop (deepfound/optim/lazy_kernel.cc) against lazy.py's JAX loop, its
reference: the same iterates and gradient memory, step for step, in float64 (and float32 to
rounding), for each rule form, loss, L1, intercept, weights, rebases and padding anywhere."""

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from deepfound.optim import driver, lazy, lazy_kernel
from deepfound.problems import make_sparse_problem

built = pytest.mark.skipif(not lazy_kernel.available(),
                           reason="the lazy kernel is not built here (no C++ compiler at install)")


def test_the_kernel_is_built_where_a_compiler_is():
  """`pip install -e .` builds it where a C++ compiler and jaxlib's FFI headers are; a missing
  library there means the build failed (and the lazy path lost its speed without a word)."""
  if shutil.which("c++") is None and shutil.which("g++") is None:
    pytest.skip("no C++ compiler on this machine: the pure-JAX loop runs")
  assert lazy_kernel.status() == "loaded", lazy_kernel.status()
  assert lazy_kernel.available()


def _problem(seed, *, loss="logistic", n=40, p=30, width=6, dtype=jnp.float64, shuffle=False,
             **kwargs):
  rng = np.random.default_rng(seed)
  rows = np.zeros((n, p))
  for i in range(n):
    count = width if i == 0 else rng.integers(0, width + 1)
    columns = rng.choice(p, size=count, replace=False)
    rows[i, columns] = rng.choice([-1.0, 1.0], size=count) * rng.uniform(0.3, 2.0, size=count)
  labels = np.where(rng.random(n) < 0.5, 1.0, -1.0) if loss == "logistic" else rng.normal(size=n)
  problem = make_sparse_problem(scipy.sparse.csr_matrix(rows), labels, loss=loss, dtype=dtype,
                                **kwargs)
  if shuffle:  # each row's entries in another order: the padding anywhere in the row
    order = jnp.asarray(rng.permuted(np.tile(np.arange(width), (n, 1)), axis=1))
    problem = dataclasses.replace(
        problem, indices=jnp.take_along_axis(problem.indices, order, axis=1),
        values=jnp.take_along_axis(problem.values, order, axis=1))
  return problem


def _both_ways(problem, method, rate, *, num_steps=3000, log_every=1500):
  """(state with the kernel, state with the JAX loop, whether the kernel was traced)."""
  hyper = driver.hyperparameters(rate, l0=50.0, dtype=problem.dtype)
  key = jax.random.PRNGKey(5)
  run = lambda: driver.run(problem, method, hyper, key, num_steps=num_steps,  # noqa: E731
                           log_every=log_every)[0]
  with lazy_kernel.enabled(True):
    traced = lazy_kernel.TARGET in str(jax.make_jaxpr(run)())
    kernel = run()
  with lazy_kernel.enabled(False):
    assert lazy_kernel.TARGET not in str(jax.make_jaxpr(run)())
    reference = run()
  return kernel, reference, traced


CASES = [
    # rule, options, loss, l1, intercept, weighted, schedule, tau l2, shuffled padding
    ("sag", {"average_over_seen": True}, "logistic", 0.0, True, True, "constant", 0.01, False),
    ("sag", {}, "least_squares", 0.0, False, False, "inverse_time", 0.002, True),
    ("saga", {}, "logistic", 0.02, True, False, "constant", 0.005, True),
    ("saga", {}, "least_squares", 0.0, True, True, "constant", 0.05, False),
    # tau l2 = 0.5: the scale crosses the floor every 511 steps, within the kernel's pages (its
    # guarded steps: a rebase and the fold)
    ("saga", {}, "least_squares", 0.0, True, True, "constant", 0.5, False),
    ("sgd", {}, "logistic", 0.01, True, True, "inverse_time", 0.03, False),
]


@built
@pytest.mark.parametrize("name,options,loss,l1,intercept,weighted,schedule,shrink,shuffle",
                         CASES[:1])
def test_the_kernel_is_the_jax_loop(name, options, loss, l1, intercept, weighted, schedule, shrink,
                                    shuffle):
  _check(name, options, loss, l1, intercept, weighted, schedule, shrink, shuffle)


@built
@pytest.mark.slow
@pytest.mark.parametrize("name,options,loss,l1,intercept,weighted,schedule,shrink,shuffle",
                         CASES[1:])
def test_the_kernel_is_the_jax_loop_for_every_form(name, options, loss, l1, intercept, weighted,
                                                   schedule, shrink, shuffle):
  _check(name, options, loss, l1, intercept, weighted, schedule, shrink, shuffle)


def _check(name, options, loss, l1, intercept, weighted, schedule, shrink, shuffle):
  with jax.enable_x64(True):
    weights = np.random.default_rng(1).uniform(0.3, 3.0, 40) if weighted else None
    # A rate of 1 / (2 max ||x_i||^2) (below 1 / L) and tau l2 = shrink: from rare rebases to
    # one every few steps (the guarded JAX steps, and pages the kernel leaves alone).
    rate = 1.0 / (2 * 2.0**2 * 6)
    problem = _problem(2, loss=loss, l2=shrink / rate, l1=l1, fit_intercept=intercept,
                       sample_weight=weights, shuffle=shuffle)
    method = driver.Method(name, schedule=schedule, **options)
    kernel, reference, traced = _both_ways(problem, method, rate)
    assert traced
    assert np.all(np.isfinite(kernel.params))
    assert 1e-3 < np.abs(kernel.params).max() < 1e2  # a run that converges, not overflows
    np.testing.assert_allclose(kernel.params, reference.params, rtol=1e-12, atol=1e-12)
    for got, expected in zip(jax.tree.leaves(kernel.opt_state), jax.tree.leaves(reference.opt_state),
                             strict=True):
      np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@built
def test_float32_and_a_multinomial_problem():
  """float32: the same iterates to rounding. Multinomial targets are not the kernel's: their
  program keeps the JAX loop."""
  problem = _problem(4, l2=0.05, dtype=jnp.float32)
  kernel, reference, traced = _both_ways(problem, driver.Method("saga"), 1.0 / 48)
  assert 1e-3 < np.abs(kernel.params).max() < 1e2
  assert traced and kernel.params.dtype == jnp.float32
  np.testing.assert_allclose(kernel.params, reference.params, rtol=2e-5, atol=2e-6)
  rng = np.random.default_rng(0)
  x = scipy.sparse.random(20, 8, density=0.3, random_state=0, format="csr")
  multinomial = make_sparse_problem(x, rng.integers(0, 3, 20), loss="multinomial", l2=1.0)
  assert not lazy_kernel.supports(multinomial) and not lazy.kernel_runs(multinomial)
  hyper = driver.hyperparameters(0.05)
  jaxpr = jax.make_jaxpr(lambda: driver.run(multinomial, driver.Method("sag"), hyper,
                                            jax.random.PRNGKey(0), num_steps=40,
                                            log_every=40)[0])()
  assert lazy_kernel.TARGET not in str(jaxpr)


@built
def test_a_page_is_as_long_as_the_kernel_takes():
  """With the kernel a lazy page holds up to KERNEL_PAGE_STEPS steps; without it, PAGE_STEPS."""
  problem, method = _problem(0, l2=1.0), driver.Method("sag")
  assert driver.page_bound(problem, method) == driver.KERNEL_PAGE_STEPS > driver.PAGE_STEPS
  assert driver.page_bound(problem, driver.Method("sag", batch_size=2)) == driver.PAGE_STEPS
  with lazy_kernel.enabled(False):
    assert driver.page_bound(problem, method) == driver.PAGE_STEPS


@built
def test_the_l1_walk_crosses_zero_in_the_kernel_as_in_the_jax_loop():
  """SAGA with L1 on rows of one frequent column and rare ones: a rare coordinate misses many
  steps, and its thresholded walk toward zero crosses it (the kernel's search for the crossing
  step in the cumulative sums, and their upkeep)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(7)
    n, p = 300, 200  # a rare column is in 3 rows, visited once in 100 steps
    rows = np.zeros((n, p))
    rows[:, 0] = 1.0
    for i in range(n):
      rows[i, rng.choice(np.arange(1, p), size=2, replace=False)] = rng.uniform(0.5, 2.0, 2)
    labels = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    rate = 1.0 / (2 * float(np.max(np.sum(rows**2, axis=1))))
    # (l1 and l2 chosen so that such walks do cross zero: without the kernel's upkeep of the
    # cumulative sums, or with its crossing step off by one, this run ends in NaN or off by 1e-6)
    problem = make_sparse_problem(scipy.sparse.csr_matrix(rows), labels, l2=0.0005 / rate,
                                  l1=0.0003, dtype=jnp.float64)
    kernel, reference, traced = _both_ways(problem, driver.Method("saga"), rate, num_steps=4000,
                                           log_every=4000)
    assert traced
    assert 0 < np.sum(kernel.params == 0) < p and np.abs(kernel.params).max() > 1e-2
    np.testing.assert_allclose(kernel.params, reference.params, rtol=1e-12, atol=1e-12)
