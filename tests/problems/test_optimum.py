"""The float64 optimum E*: against scikit-learn, sparse against dense, weights, a wide sparse
problem that must not be densified, and the ``host_design`` hook of ``solve_optimum``."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse
import scipy.special
from sklearn.linear_model import LogisticRegression, Ridge

from deepfound.problems.optimum import solve_linear_optimum, solve_optimum


def objective(x, targets, loss, params, l2=0.0, l1=0.0, weights=None, fit_intercept=False):
  """E written out independently of the solver, in numpy."""
  w, b = (params[:-1], params[-1]) if fit_intercept else (params, 0.0)
  scores = x @ w + b
  if loss == "logistic":
    losses = np.logaddexp(0.0, -targets * scores)
  elif loss == "least_squares":
    losses = 0.5 * (scores - targets) ** 2
  else:
    losses = scipy.special.logsumexp(scores, axis=1) - scores[np.arange(len(targets)), targets]
  weights = np.ones(len(targets)) if weights is None else weights
  return (weights @ losses / weights.sum() + 0.5 * l2 * np.sum(w * w)
          + l1 * np.sum(np.abs(w)))


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 5)) / np.sqrt(5)
  truth = rng.normal(size=5)
  y = np.where(rng.random(60) < scipy.special.expit(2 * x @ truth + 0.3), 1.0, -1.0)
  reals = x @ truth + 0.5 + 0.1 * rng.normal(size=60)
  labels = np.argmax(x @ rng.normal(size=(5, 3)) + rng.gumbel(size=(60, 3)), axis=1)
  weights = rng.uniform(0.2, 3.0, size=60)
  return x, y, reals, labels, weights


def _check(optimum, sklearn_params, x, targets, loss, **terms):
  assert optimum.converged and optimum.gradient_norm < 1e-10
  np.testing.assert_allclose(optimum.params, sklearn_params, atol=1e-6, rtol=0)
  ours = objective(x, targets, loss, optimum.params, **terms)
  theirs = objective(x, targets, loss, sklearn_params, **terms)
  assert optimum.value == pytest.approx(ours, abs=1e-13)
  assert ours <= theirs + 1e-13 and theirs - ours < 1e-10


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_logistic_matches_sklearn(data, fit_intercept, weighted):
  x, y, _, _, weights = data
  weights = weights if weighted else None
  l2 = 0.02
  optimum = solve_linear_optimum(x, y, "logistic", l2=l2, weights=weights,
                                 fit_intercept=fit_intercept)
  total = len(y) if weights is None else weights.sum()
  model = LogisticRegression(C=1 / (l2 * total), tol=1e-12, solver="newton-cg", max_iter=10_000,
                             fit_intercept=fit_intercept).fit(x, y, sample_weight=weights)
  theirs = np.r_[model.coef_[0], model.intercept_] if fit_intercept else model.coef_[0]
  assert optimum.params.shape == (5 + fit_intercept,)
  _check(optimum, theirs, x, y, "logistic", l2=l2, weights=weights, fit_intercept=fit_intercept)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_least_squares_matches_sklearn_ridge(data, fit_intercept, weighted):
  x, _, reals, _, weights = data
  weights = weights if weighted else None
  l2 = 0.01
  optimum = solve_linear_optimum(x, reals, "least_squares", l2=l2, weights=weights,
                                 fit_intercept=fit_intercept)
  total = len(reals) if weights is None else weights.sum()
  model = Ridge(alpha=l2 * total, fit_intercept=fit_intercept, solver="cholesky").fit(
      x, reals, sample_weight=weights)
  theirs = np.r_[model.coef_, model.intercept_] if fit_intercept else model.coef_
  _check(optimum, theirs, x, reals, "least_squares", l2=l2, weights=weights,
         fit_intercept=fit_intercept)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_multinomial_matches_sklearn(data, fit_intercept):
  x, _, _, labels, weights = data
  l2 = 0.02
  optimum = solve_linear_optimum(x, labels, "multinomial", num_classes=3, l2=l2, weights=weights,
                                 fit_intercept=fit_intercept)
  model = LogisticRegression(C=1 / (l2 * weights.sum()), tol=1e-12, solver="newton-cg",
                             max_iter=10_000, fit_intercept=fit_intercept).fit(
                                 x, labels, sample_weight=weights)
  assert optimum.params.shape == (5 + fit_intercept, 3)
  theirs = model.coef_.T
  ours = optimum.params
  if fit_intercept:  # the unpenalized softmax intercept is defined up to a common shift
    theirs = np.vstack([theirs, model.intercept_ - model.intercept_.mean()])
    ours = np.vstack([ours[:-1], ours[-1] - ours[-1].mean()])
  _check(optimum, theirs, x, labels, "multinomial", l2=l2, weights=weights,
         fit_intercept=fit_intercept)
  np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_elastic_net_matches_sklearn_saga(data, fit_intercept):
  """sklearn (saga): C sum_i loss_i + (1 - r)/2 ||w||^2 + r ||w||_1, i.e. ours divided by
  (l1 + l2) C n with r = l1 / (l1 + l2), C = 1 / (n (l1 + l2))."""
  x, y, _, _, _ = data
  l2, l1 = 0.01, 0.03
  optimum = solve_linear_optimum(x, y, "logistic", l2=l2, l1=l1, fit_intercept=fit_intercept)
  model = LogisticRegression(C=1 / (len(y) * (l1 + l2)), l1_ratio=l1 / (l1 + l2), solver="saga",
                             tol=1e-12, max_iter=100_000, fit_intercept=fit_intercept).fit(x, y)
  theirs = np.r_[model.coef_[0], model.intercept_] if fit_intercept else model.coef_[0]
  coefficients = optimum.params[:5]
  assert 0 < np.count_nonzero(coefficients) < 5  # the l1 term is active: some exact zeros
  np.testing.assert_array_equal(coefficients == 0, theirs[:5] == 0)
  _check(optimum, theirs, x, y, "logistic", l2=l2, l1=l1, fit_intercept=fit_intercept)


@pytest.mark.parametrize("loss", ["logistic", "least_squares", "multinomial"])
def test_elastic_net_subgradient_conditions(data, loss):
  x, y, reals, labels, weights = data
  targets = {"logistic": y, "least_squares": reals, "multinomial": labels}[loss]
  l1 = 0.2 if loss == "least_squares" else 0.02
  optimum = solve_linear_optimum(x, targets, loss, num_classes=3, l2=0.005, l1=l1,
                                 weights=weights, fit_intercept=True)
  assert optimum.converged
  # Finite differences of the smooth part: |g_j| <= l1 at zeros, g_j = -l1 sign(w_j) elsewhere.
  params, step = optimum.params, 1e-6
  smooth = lambda p: objective(x, targets, loss, p, l2=0.005, weights=weights,  # noqa: E731
                               fit_intercept=True)
  grad = np.zeros(params.shape)
  for index in np.ndindex(params.shape):
    bump = np.zeros(params.shape)
    bump[index] = step
    grad[index] = (smooth(params + bump) - smooth(params - bump)) / (2 * step)
  w, g = params[:-1], grad[:-1]
  assert np.any(w == 0) and np.any(w != 0)
  assert np.all(np.abs(g[w == 0]) <= l1 + 1e-7)
  np.testing.assert_allclose(g[w != 0], -l1 * np.sign(w[w != 0]), atol=1e-7)
  np.testing.assert_allclose(grad[-1], 0, atol=1e-7)


@pytest.mark.parametrize("loss", ["logistic", "least_squares", "multinomial"])
@pytest.mark.parametrize("l1", [0.0, 0.01])
def test_sparse_design_gives_the_dense_optimum(loss, l1):
  rng = np.random.default_rng(3)
  x = scipy.sparse.random(80, 30, density=0.2, random_state=4, format="csr")
  y = np.where(rng.random(80) < 0.5, -1.0, 1.0)
  targets = {"logistic": y, "least_squares": rng.normal(size=80),
             "multinomial": rng.integers(0, 3, 80)}[loss]
  kwargs = dict(num_classes=3, l2=0.01, l1=l1, fit_intercept=True,
                weights=rng.uniform(0.5, 2, 80))
  sparse = solve_linear_optimum(x, targets, loss, **kwargs)
  dense = solve_linear_optimum(x.toarray(), targets, loss, **kwargs)
  assert sparse.converged and dense.converged
  np.testing.assert_allclose(sparse.params, dense.params, atol=1e-10, rtol=0)
  assert sparse.value == pytest.approx(dense.value, abs=1e-12)


@pytest.mark.parametrize("loss", ["logistic", "multinomial"])
def test_weight_two_is_a_duplicated_row(data, loss):
  x, y, _, labels, _ = data
  targets = y if loss == "logistic" else labels
  weights = np.ones(len(y))
  weights[[3, 17]] = 2.0
  rows = np.r_[np.arange(len(y)), [3, 17]]
  kwargs = dict(num_classes=3, l2=0.01, l1=0.005, fit_intercept=True)
  weighted = solve_linear_optimum(x, targets, loss, weights=weights, **kwargs)
  duplicated = solve_linear_optimum(x[rows], targets[rows], loss, **kwargs)
  np.testing.assert_allclose(weighted.params, duplicated.params, atol=1e-10, rtol=0)
  assert weighted.value == pytest.approx(duplicated.value, abs=1e-13)


@pytest.mark.slow
def test_a_million_sparse_features_are_never_densified():
  n, p = 100, 1_000_000
  rng = np.random.default_rng(0)
  rows, columns = np.repeat(np.arange(n), 20), rng.integers(0, p, 20 * n)
  x = scipy.sparse.csr_matrix((rng.normal(size=20 * n), (rows, columns)), shape=(n, p))
  y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
  tracemalloc.start()
  try:
    optimum = solve_linear_optimum(x, y, "logistic", l2=1e-3, fit_intercept=True)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert optimum.converged and optimum.params.shape == (p + 1,)
  assert peak < 8 * n * p / 3, f"peak {peak / 1e6:.0f} MB: was the design densified?"


def test_solve_optimum_reads_host_design(data):
  x, y, _, _, weights = data
  expected = solve_linear_optimum(x, y, "logistic", l2=0.01, l1=0.01, weights=weights,
                                  fit_intercept=True)

  class Hooked:
    def host_design(self):
      return dict(design=scipy.sparse.csr_matrix(x), targets=y, loss="logistic", num_classes=0,
                  l2=0.01, l1=0.01, weights=weights, fit_intercept=True)

  optimum = solve_optimum(Hooked())
  np.testing.assert_allclose(optimum.params, expected.params, atol=1e-10, rtol=0)

  class Plain:  # no hook: features, targets, loss, num_classes, l2; no intercept, l1, weights
    features, targets, loss, num_classes, l2 = x, y, "logistic", 0, 0.01

  plain = solve_optimum(Plain())
  assert plain.params.shape == (5,)
  assert plain.value == pytest.approx(solve_linear_optimum(x, y, "logistic", l2=0.01).value,
                                      abs=1e-14)
