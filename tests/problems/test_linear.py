"""Finite-sum problems: gradients, Lipschitz constants, the float64 optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import np_full_gradient, np_objective

from deepfound.problems import loss_value, make_problem, solve_optimum


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 4))
  return x, np.where(rng.random(40) < 0.5, -1.0, 1.0), rng.integers(0, 3, 40)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["logistic", "least_squares", "multinomial"])
def test_gradients_match_autodiff_and_lipschitz_bounds_hessian(data, loss):
  x, y, labels = data
  targets = labels if loss == "multinomial" else y
  with jax.enable_x64(True):
    problem = make_problem(x, targets, l2=0.05, loss=loss, dtype=jnp.float64)
    params = jnp.asarray(np.random.default_rng(1).normal(size=problem.param_shape))
    np.testing.assert_allclose(problem.gradient(params), jax.grad(problem.objective)(params),
                               rtol=1e-10)
    index = jnp.array([3, 7])
    sample_grads = problem.terms(params, problem.batch(index)).gradients
    for k, i in enumerate([3, 7]):
      def single(b, i=i):
        return loss_value(loss, problem.features[i] @ b, problem.targets[i]) + 0.025 * jnp.sum(b * b)
      np.testing.assert_allclose(sample_grads[k], jax.grad(single)(params), rtol=1e-10)
    flat = lambda v: problem.objective(v.reshape(problem.param_shape))  # noqa: E731
    hessian = jax.hessian(flat)(params.ravel())
    top = float(np.linalg.eigvalsh(np.asarray(hessian))[-1])
  assert top <= problem.lipschitz() * (1 + 1e-9)
  assert problem.lipschitz() <= problem.max_sample_lipschitz() * (1 + 1e-9)


def test_logistic_matches_chapter_formulas(data):
  x, y, _ = data
  with jax.enable_x64(True):
    problem = make_problem(x, y, l2=0.1, dtype=jnp.float64)
    b = jnp.asarray(np.linspace(-1, 1, 4))
    assert float(problem.objective(b)) == pytest.approx(np_objective(x, y, np.asarray(b)), rel=1e-12)
    np.testing.assert_allclose(problem.gradient(b), np_full_gradient(x, y, np.asarray(b)), rtol=1e-10)


@pytest.mark.parametrize("loss", ["logistic", "least_squares", "multinomial"])
def test_optimum_is_a_minimum(data, loss):
  x, y, labels = data
  targets = labels if loss == "multinomial" else y
  with jax.enable_x64(True):
    problem = make_problem(x, targets, l2=0.01, loss=loss, dtype=jnp.float64)
    optimum = solve_optimum(problem)
    assert optimum.converged and optimum.gradient_norm < 1e-10
    best = jnp.asarray(optimum.params)
    assert float(problem.objective(best)) == pytest.approx(optimum.value, abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(5):
      nudged = best + 1e-3 * rng.normal(size=best.shape)
      assert float(problem.objective(nudged)) > optimum.value


@pytest.mark.slow
def test_logistic_lipschitz_is_the_hessian_norm_at_zero(data):
  """At b = 0 the logistic Hessian is exactly X^T X / (4 n) + l2 I: L must equal its top
  eigenvalue there (an overestimate would make 1/L steps needlessly small)."""
  x, y, _ = data
  with jax.enable_x64(True):
    problem = make_problem(x, y, l2=0.05, dtype=jnp.float64)
    hessian = jax.hessian(problem.objective)(jnp.zeros(x.shape[1]))
  assert problem.lipschitz() == pytest.approx(float(np.linalg.eigvalsh(np.asarray(hessian))[-1]),
                                              rel=1e-10)


def test_multinomial_labels_are_remapped_to_class_ids():
  x = np.eye(3)
  problem = make_problem(x, np.array([1, 3, 3]), loss="multinomial")
  assert problem.num_classes == 2
  assert list(np.asarray(problem.targets)) == [0, 1, 1]
