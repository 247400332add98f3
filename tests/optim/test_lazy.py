"""The lazy (O(nnz)) SGD, SAG and SAGA on sparse rows against the dense iteration, step by step,
and the options around them: intercept, sample weights, L1, tol, the automatic step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from deepfound.optim import driver, lazy
from deepfound.optim.lazy import _threshold_walk
from deepfound.problems import make_problem, make_sparse_problem, solve_optimum


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _data(n=30, p=12, seed=0, loss="logistic"):
  rng = np.random.default_rng(seed)
  x = scipy.sparse.random(n, p, density=0.25, random_state=seed, format="csr").toarray() * 3
  x[0] = 0.0  # an empty row
  x[:, 1] = 0.0  # a column no row touches
  if loss == "multinomial":
    y = rng.integers(0, 3, size=n)
  elif loss == "logistic":
    y = np.where(rng.normal(size=n) > 0, 1.0, -1.0)
  else:
    y = rng.normal(size=n)
  return scipy.sparse.csr_matrix(x), y, rng.uniform(0.5, 2.0, size=n)


CASES = [
    # rule, schedule, l1, intercept, weights, loss, options
    ("sgd", "constant", 0.0, False, False, "logistic", {}),
    ("sag", "constant", 0.0, False, False, "least_squares", {}),
    ("saga", "constant", 0.0, True, True, "multinomial", {}),
    ("sgd", "inverse_time", 0.02, True, True, "multinomial", {}),
    ("sag", "inverse_time", 0.0, True, True, "logistic", {"average_over_seen": True}),
    ("saga", "constant", 0.01, True, False, "least_squares", {}),
    ("saga", "inverse_time", 0.05, False, True, "logistic", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,schedule,l1,intercept,weighted,loss,options", CASES)
def test_sparse_steps_are_the_dense_steps(name, schedule, l1, intercept, weighted, loss, options):
  x, y, w = _data(loss=loss)
  kwargs = dict(l2=0.05, loss=loss, dtype=jnp.float64, l1=l1, fit_intercept=intercept,
                sample_weight=w if weighted else None)
  dense, sparse = make_problem(x.toarray(), y, **kwargs), make_sparse_problem(x, y, **kwargs)
  method = driver.Method(name, schedule=schedule, **options)
  hyper = driver.hyperparameters(0.05, l0=10.0, dtype=jnp.float64)
  indices = np.random.default_rng(1).integers(0, 30, size=120)
  _, dense_points = driver.run_on_indices(dense, method, hyper, indices, log_every=40)
  _, sparse_points = driver.run_on_indices(sparse, method, hyper, indices, log_every=40)
  assert np.abs(dense_points.params[-1]).max() > 1e-3  # it moved
  np.testing.assert_allclose(sparse_points.params, dense_points.params, rtol=0, atol=1e-10)
  np.testing.assert_allclose(sparse_points.objective, dense_points.objective, rtol=1e-10)
  if l1:  # the L1 steps set weights to exactly zero, on both paths
    assert np.sum(dense_points.params[-1] == 0) > 0
    np.testing.assert_array_equal(dense_points.params[-1] == 0, sparse_points.params[-1] == 0)


@pytest.mark.slow
def test_runs_in_pages_and_log_blocks_match_dense():
  x, y, _ = _data(n=40, p=15, seed=3)
  dense = make_problem(x.toarray(), y, l2=0.01, dtype=jnp.float64, fit_intercept=True)
  sparse = make_sparse_problem(x, y, l2=0.01, dtype=jnp.float64, fit_intercept=True)
  for method in (driver.Method("saga", sampling="shuffle"), driver.Method("sag")):
    hyper = driver.hyperparameters(0.1, dtype=jnp.float64)
    key = jax.random.PRNGKey(4)
    state_d, points_d = driver.run(dense, method, hyper, key, num_steps=600, log_every=300)
    state_s, points_s = driver.run(sparse, method, hyper, key, num_steps=600, log_every=300)
    np.testing.assert_allclose(state_s.params, state_d.params, atol=1e-10)
    np.testing.assert_allclose(points_s.objective, points_d.objective, rtol=1e-10)


@pytest.mark.slow
def test_threshold_walk_is_the_stepwise_walk():
  rng = np.random.default_rng(0)
  size, cases = 16, 400
  for _ in range(cases):
    q = rng.uniform(0, 0.3, size=size) * (rng.random(size) > 0.2)
    cumulative = np.concatenate([[0.0], np.cumsum(q)])
    start, stop = sorted(rng.integers(0, size + 1, size=2))
    v0, h, lam = rng.normal() * 2, rng.normal() * 3, abs(rng.normal())
    v = v0
    for t in range(start, stop):
      u = v - q[t] * h
      v = np.sign(u) * max(abs(u) - q[t] * lam, 0.0)
    known = np.full(size + 1, np.inf)
    known[:stop + 1] = cumulative[:stop + 1]
    got = _threshold_walk(jnp.array([v0]), jnp.array([h]), jnp.array([cumulative[start]]),
                          cumulative[stop], lam, jnp.array(known), jnp.array([stop]))
    assert float(got[0]) == pytest.approx(v, abs=1e-12)


@pytest.mark.slow
def test_intercept_and_weights_converge_to_scikit_learn():
  from sklearn.linear_model import LogisticRegression, Ridge

  x, y, w = _data(n=40, p=6, seed=5)
  n = 40
  l2 = 0.05
  for sparse in (False, True):
    make = make_sparse_problem if sparse else make_problem
    problem = make(x, y, l2=l2, dtype=jnp.float64, fit_intercept=True, sample_weight=w)
    state, _ = driver.run(problem, driver.Method("sag"), driver.hyperparameters(0.2, dtype=jnp.float64),
                          jax.random.PRNGKey(0), num_steps=40_000, log_every=20_000)
    # Ours: (1/sum w) sum w_i L_i + l2/2 |b|^2; scikit-learn: C sum w_i L_i + |b|^2 / 2.
    reference = LogisticRegression(C=1.0 / (l2 * w.sum()), tol=1e-12, max_iter=10_000,
                                   solver="lbfgs").fit(x.toarray(), y, sample_weight=w)
    np.testing.assert_allclose(state.params[:-1], reference.coef_[0], atol=1e-6)
    assert float(state.params[-1]) == pytest.approx(float(reference.intercept_[0]), abs=1e-6)
  targets = np.random.default_rng(2).normal(size=n)
  problem = make_sparse_problem(x, targets, l2=l2, loss="least_squares", dtype=jnp.float64,
                                fit_intercept=True, sample_weight=w)
  state, _ = driver.run(problem, driver.Method("saga"), driver.hyperparameters(0.05, dtype=jnp.float64),
                        jax.random.PRNGKey(0), num_steps=40_000, log_every=20_000)
  # Ridge: sum w_i (y_i - x_i b)^2 + alpha |b|^2 = 2 sum w * (ours) with alpha = l2 sum w.
  ridge = Ridge(alpha=l2 * w.sum(), solver="cholesky").fit(x.toarray(), targets, sample_weight=w)
  np.testing.assert_allclose(state.params[:-1], ridge.coef_, atol=1e-6)
  assert float(state.params[-1]) == pytest.approx(float(ridge.intercept_), abs=1e-6)


@pytest.mark.slow
def test_weight_two_is_a_duplicated_row():
  x, y, _ = _data(n=20, p=8, seed=7)
  weights = np.ones(20)
  weights[3] = 2.0
  doubled = scipy.sparse.vstack([x, x[3]]).tocsr()
  weighted = make_sparse_problem(x, y, l2=0.1, dtype=jnp.float64, sample_weight=weights)
  duplicated = make_sparse_problem(doubled, np.append(y, y[3]), l2=0.1, dtype=jnp.float64)
  params = weighted.init_params() + 0.3
  assert float(weighted.objective(params)) == pytest.approx(float(duplicated.objective(params)),
                                                            rel=1e-12)
  np.testing.assert_allclose(weighted.gradient(params), duplicated.gradient(params), atol=1e-12)
  assert solve_optimum(weighted).value == pytest.approx(solve_optimum(duplicated).value, rel=1e-10)


@pytest.mark.slow
def test_elastic_net_saga_matches_scikit_learn():
  from sklearn.linear_model import LogisticRegression

  x, y, _ = _data(n=50, p=10, seed=11)
  n, l1, l2 = 50, 0.02, 0.01
  problem = make_sparse_problem(x, y, l2=l2, l1=l1, dtype=jnp.float64)
  state, _ = driver.run(problem, driver.Method("saga"), driver.hyperparameters(0.1, dtype=jnp.float64),
                        jax.random.PRNGKey(0), num_steps=60_000, log_every=30_000)
  # scikit-learn: C sum L_i + (1 - r)/2 |b|^2 + r |b|_1, so C = 1/(n (l1 + l2)), r = l1/(l1 + l2).
  # (scikit-learn 1.8 deprecated penalty=: l1_ratio alone makes it an elastic net.)
  reference = LogisticRegression(C=1.0 / (n * (l1 + l2)), l1_ratio=l1 / (l1 + l2), solver="saga",
                                 tol=1e-12, max_iter=200_000, fit_intercept=False).fit(x.toarray(), y)
  # 1,200 epochs at this step reach 1e-5 in the weights and 1e-10 in E.
  np.testing.assert_allclose(state.params, reference.coef_[0], atol=2e-5)
  assert float(problem.objective(state.params)) == pytest.approx(
      float(problem.objective(jnp.asarray(reference.coef_[0]))), abs=1e-10)
  np.testing.assert_array_equal(state.params == 0, reference.coef_[0] == 0)
  assert np.sum(state.params == 0) >= 2


def _criterion_epoch(problem, method, hyper, key, epochs, tol):
  """The first epoch whose relative change is <= tol, from a run without tol."""
  n = problem.num_samples
  _, points = driver.run(problem, method, hyper, key, num_steps=epochs * n, log_every=n,
                         record_params=True)
  previous = np.zeros(problem.num_features)
  for epoch, params in enumerate(np.asarray(points.params), 1):
    change, largest = np.max(np.abs(params - previous)), np.max(np.abs(params))
    if change <= tol * largest:
      return epoch, params
    previous = params
  return None, None


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_tol_stops_at_the_epoch_the_criterion_names(sparse):
  x, y, _ = _data(n=30, p=12, seed=2)
  make = make_sparse_problem if sparse else make_problem
  problem = make(x, y, l2=0.05, dtype=jnp.float64)
  hyper, key, tol = driver.hyperparameters(0.2, dtype=jnp.float64), jax.random.PRNGKey(1), 1e-3
  epoch, expected = _criterion_epoch(problem, driver.Method("sag"), hyper, key, 40, tol)
  assert epoch is not None and 2 < epoch < 40
  method = driver.Method("sag", tol=tol)
  state, points = driver.run(problem, method, hyper, key, num_steps=40 * 30, log_every=60)
  assert int(state.stopped_at) == epoch * 30
  np.testing.assert_allclose(state.params, expected, atol=1e-12)  # frozen after it stopped
  assert points.objective[-1] == points.objective[-2]


def test_auto_step_is_scikit_learns():
  from sklearn.linear_model._sag import get_auto_step_size

  from deepfound.experiment.build import problem_constants
  from deepfound.optim import get_rule

  x, y, _ = _data(n=30, p=12, seed=4)
  n, l2 = 30, 0.01
  squared = float(np.max(np.asarray(x.multiply(x).sum(axis=1))))
  for loss, sk_loss, targets in (("logistic", "log", y),
                                 ("least_squares", "squared", np.linspace(-1, 1, n))):
    for intercept in (False, True):
      constants = problem_constants(make_sparse_problem(x, targets, l2=l2, loss=loss,
                                                        dtype=jnp.float64,
                                                        fit_intercept=intercept))
      for rule, saga in (("sag", False), ("saga", True)):
        expected = get_auto_step_size(squared, l2, sk_loss, intercept, n_samples=n, is_saga=saga)
        assert get_rule(rule).auto_learning_rate(constants) == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_a_rule_with_a_lazy_form_is_its_spec_only(monkeypatch):
  """A rule of one's own that declares SAGA's lazy form in its spec steps lazily on sparse rows,
  with no edit of lazy.py, and matches its dense iteration; inconsistent forms are refused."""
  from deepfound.optim import lazy, registry

  monkeypatch.setattr(registry.RULES, "_specs", dict(registry.RULES._specs))
  saga = registry.get_rule("saga")
  registry.register_rule(dataclasses.replace(saga, name="my_saga"))
  x, y, w = _data(loss="multinomial")
  kwargs = dict(l2=0.05, loss="multinomial", dtype=jnp.float64, l1=0.01, fit_intercept=True,
                sample_weight=w)
  dense, sparse = make_problem(x.toarray(), y, **kwargs), make_sparse_problem(x, y, **kwargs)
  method = driver.Method("my_saga")
  assert lazy.supports(sparse, method) and not lazy.supports(dense, method)
  hyper = driver.hyperparameters(0.05, dtype=jnp.float64)
  indices = np.random.default_rng(2).integers(0, 30, size=90)
  _, dense_points = driver.run_on_indices(dense, method, hyper, indices, log_every=30)
  sparse_state, sparse_points = driver.run_on_indices(sparse, method, hyper, indices, log_every=30)
  assert isinstance(sparse_state.opt_state, lazy.LazyMemory)
  assert np.abs(dense_points.params[-1]).max() > 1e-3
  np.testing.assert_allclose(sparse_points.params, dense_points.params, rtol=0, atol=1e-10)

  for form, message in ((registry.LazyForm(memory=True, seen_option="nope"), "seen_option"),
                        (registry.LazyForm(unbiased=True), "memory=True"),
                        ("saga", "LazyForm")):
    with pytest.raises(ValueError, match=message):
      registry.register_rule(dataclasses.replace(saga, name="bad_saga", lazy=form))


@pytest.mark.slow
def test_sgd_and_generic_rules_run_on_sparse_rows():
  x, y, _ = _data(n=30, p=12, seed=8)
  dense = make_problem(x.toarray(), y, l2=0.05, dtype=jnp.float64)
  sparse = make_sparse_problem(x, y, l2=0.05, dtype=jnp.float64)
  for method in (driver.Method("svrg"), driver.Method("adam", batch_size=4),
                 driver.Method("sag", batch_size=3)):
    hyper = driver.hyperparameters(0.05, dtype=jnp.float64)
    key = jax.random.PRNGKey(0)
    state_d, _ = driver.run(dense, method, hyper, key, num_steps=60, log_every=30)
    state_s, _ = driver.run(sparse, method, hyper, key, num_steps=60, log_every=30)
    np.testing.assert_allclose(state_s.params, state_d.params, atol=1e-10)


def test_labels_other_than_pm_one():
  x, _, _ = _data()
  zero_one = (np.arange(30) % 2).astype(float)
  problem = make_problem(x, zero_one)
  np.testing.assert_array_equal(np.asarray(problem.targets), 2 * zero_one - 1)
  with pytest.raises(ValueError, match="-1/\\+1 or 0/1"):
    make_sparse_problem(x, zero_one + 1)


@pytest.mark.slow
def test_vmapped_runs_stop_independently():
  x, y, _ = _data(n=40, p=30, seed=9)
  rates = jnp.array([0.02, 0.05, 0.1])
  hyper = driver.Hyperparameters(rates, jnp.ones(3), jnp.ones(3))
  method = driver.Method("sag", tol=1e-3)
  stops = []
  for make in (make_problem, make_sparse_problem):
    problem = make(x, y, l2=0.05, dtype=jnp.float64, fit_intercept=True)
    sweep = jax.jit(jax.vmap(lambda h, problem=problem: driver.run(
        problem, method, h, jax.random.PRNGKey(0), num_steps=4000, log_every=200)))
    state, _ = sweep(hyper)
    stops.append(np.asarray(state.stopped_at))
    for k, rate in enumerate(rates):  # each run of the sweep is the run alone
      alone, _ = driver.run(problem, method, driver.Hyperparameters(rate, 1.0, 1.0),
                            jax.random.PRNGKey(0), num_steps=4000, log_every=200)
      assert int(alone.stopped_at) == stops[-1][k]
      np.testing.assert_allclose(alone.params, state.params[k], atol=1e-12)
  np.testing.assert_array_equal(stops[0], stops[1])
  assert len(set(stops[0].tolist())) == 3 and (stops[0] > 0).all()  # three different epochs


@pytest.mark.slow
@pytest.mark.parametrize("name,l1", [("sag", 0.0), ("saga", 0.02), ("sgd", 0.01)])
def test_rescaling_in_a_long_block_keeps_the_dense_iterates(name, l1):
  # tau l2 = 0.009: the scale falls to about 1e-16 by the rescale every 4,096 steps, which
  # happens twice within this 12,288-step block (and restarts the cumulative sums).
  x, y, _ = _data(n=30, p=12, seed=6)
  kwargs = dict(l2=0.09, l1=l1, dtype=jnp.float64, fit_intercept=True)
  dense, sparse = make_problem(x.toarray(), y, **kwargs), make_sparse_problem(x, y, **kwargs)
  method = driver.Method(name)
  hyper = driver.hyperparameters(0.1, dtype=jnp.float64)
  key = jax.random.PRNGKey(2)
  state_d, _ = driver.run(dense, method, hyper, key, num_steps=12_288, log_every=12_288)
  state_s, _ = driver.run(sparse, method, hyper, key, num_steps=12_288, log_every=12_288)
  assert np.abs(state_d.params).max() > 1e-3
  np.testing.assert_allclose(state_s.params, state_d.params, atol=1e-10)


def test_a_moving_average_of_the_iterates_leaves_the_lazy_path():
  """Method(ema=...) averages every weight every step: the lazy O(nnz) form does not apply."""
  problem = make_sparse_problem(scipy.sparse.random(20, 30, density=0.2, random_state=0,
                                                    format="csr"), np.sign(np.arange(20) - 9.5))
  assert lazy.supports(problem, driver.Method("sag"))
  assert not lazy.supports(problem, driver.Method("sag", ema=0.9))
