"""High-precision minimum E* of a linear finite sum, in float64 on the host.

Suboptimality curves E(b_l) - E* are only as true as E*; the chapter's numerical tour used the
last value of its own BGD curve, which BGD reaches only approximately. Here E* comes from Newton's
method (binary logistic; least squares in closed form) or trust-region Newton-CG
(multinomial), run until the gradient norm is
below ``tolerance`` (1e-10 by default).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.optimize

from deepfound.problems.linear import LinearFiniteSum


@dataclasses.dataclass(frozen=True)
class Optimum:
  value: float  # E*
  params: np.ndarray  # b*, float64
  gradient_norm: float  # ||grad E(b*)||, to judge how exact E* is
  iterations: int
  converged: bool


def _logistic_parts(x, y, b, l2):
  margins = y * (x @ b)
  value = np.mean(np.logaddexp(0.0, -margins)) + 0.5 * l2 * b @ b
  sig = 0.5 * (1.0 + np.tanh(-0.5 * margins))  # sigmoid(-margin), stable
  grad = -(x.T @ (y * sig)) / len(y) + l2 * b
  weights = sig * (1.0 - sig)
  return value, grad, weights


def _newton_logistic(x, y, l2, tolerance, max_iterations):
  b = np.zeros(x.shape[1])
  n, p = x.shape
  for it in range(max_iterations):
    value, grad, weights = _logistic_parts(x, y, b, l2)
    if np.linalg.norm(grad) < tolerance:
      return b, value, grad, it, True
    hessian = (x.T * weights) @ x / n + l2 * np.eye(p)
    step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
    # Backtracking keeps Newton monotone far from b*, where the logistic Hessian is small.
    t = 1.0
    while t > 1e-10:
      candidate = b - t * step
      if _logistic_parts(x, y, candidate, l2)[0] <= value - 1e-4 * t * grad @ step:
        break
      t *= 0.5
    b = candidate
  value, grad, _ = _logistic_parts(x, y, b, l2)
  return b, value, grad, max_iterations, np.linalg.norm(grad) < tolerance


def _least_squares(x, y, l2):
  n, p = x.shape
  b = np.linalg.lstsq(x.T @ x / n + l2 * np.eye(p), x.T @ y / n, rcond=None)[0]
  residual = x @ b - y
  value = 0.5 * np.mean(residual**2) + 0.5 * l2 * b @ b
  grad = x.T @ residual / n + l2 * b
  return b, value, grad


def _multinomial(x, labels, num_classes, l2, tolerance, max_iterations):
  n, p = x.shape
  onehot = np.eye(num_classes)[labels]

  def fun(flat):
    b = flat.reshape(p, num_classes)
    scores = x @ b
    shift = scores.max(axis=1, keepdims=True)
    log_norm = shift[:, 0] + np.log(np.exp(scores - shift).sum(axis=1))
    value = np.mean(log_norm - np.sum(scores * onehot, axis=1)) + 0.5 * l2 * np.sum(b * b)
    probs = np.exp(scores - log_norm[:, None])
    grad = x.T @ (probs - onehot) / n + l2 * b
    return value, grad.ravel()

  def hessian_product(flat, vector):
    b, v = flat.reshape(p, num_classes), vector.reshape(p, num_classes)
    scores = x @ b
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    xv = x @ v
    # Softmax Jacobian per sample: diag(P) - P P^T, applied to x_i^T V.
    inner = probs * xv - probs * np.sum(probs * xv, axis=1, keepdims=True)
    return (x.T @ inner / n + l2 * v).ravel()

  # Trust-region Newton-CG with Hessian-vector products: no (pK x pK) matrix, and it drives the
  # gradient norm below the tolerance where L-BFGS stalls around 1e-8.
  result = scipy.optimize.minimize(
      fun, np.zeros(p * num_classes), jac=True, hessp=hessian_product, method="trust-ncg",
      options=dict(maxiter=max_iterations, gtol=tolerance / 10),
  )
  value, grad = fun(result.x)
  return result.x.reshape(p, num_classes), value, grad, int(result.nit)


def solve_optimum(
    problem: LinearFiniteSum, tolerance: float = 1e-10, max_iterations: int = 200
) -> Optimum:
  """Minimizes E in float64 to ||grad E|| < ``tolerance`` (where the minimum exists)."""
  x = np.asarray(problem.features, np.float64)
  l2 = float(problem.l2)
  if problem.loss == "logistic":
    y = np.asarray(problem.targets, np.float64)
    b, value, grad, iterations, _ = _newton_logistic(x, y, l2, tolerance, max_iterations)
  elif problem.loss == "least_squares":
    b, value, grad = _least_squares(x, np.asarray(problem.targets, np.float64), l2)
    iterations = 1
  else:
    labels = np.asarray(problem.targets, np.int64)
    b, value, grad, iterations = _multinomial(
        x, labels, problem.num_classes, l2, tolerance, max_iterations
    )
  norm = float(np.linalg.norm(grad))
  return Optimum(float(value), b, norm, iterations, norm < tolerance)
