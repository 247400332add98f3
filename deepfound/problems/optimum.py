"""High-precision minimum E* of a linear finite sum, in float64 on the host.

Suboptimality curves E(b_l) - E* are only as true as E*; the chapter's numerical tour used the
last value of its own BGD curve, which BGD reaches only approximately. Here E* comes from
matrix-free second-order methods run until the gradient norm is below ``tolerance`` (1e-10 by
default):

  E(W, b) = (1 / sum_i w_i) sum_i w_i L(x_i W + b, y_i) + (l2/2) ||W||^2 + l1 ||W||_1.

The design may be a dense array or a scipy.sparse matrix; only products X v and X^T u are used
(Hessian-vector products, never a p x p matrix, never a densified sparse design).

- l1 = 0, logistic and multinomial: trust-region Newton-CG (scipy's ``trust-ncg``);
- l1 = 0, least squares: conjugate gradients on the normal equations (one Newton step);
- l1 > 0 (elastic net): L-BFGS-B on the split W = U - V (U, V >= 0) finds the support, then an
  orthant-wise Newton-CG (signs fixed within an orthant, projected line search) polishes it;

and every path ends with the same (orthant-wise) Newton-CG iterations while the gradient norm is
above ``tolerance``: near E* the decrease of E falls below float64 resolution, where trust-region
ratios turn to noise, so those steps are also accepted when the gradient norm decreases.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg
import scipy.special

from deepfound.problems.kinds import HostDesign

if TYPE_CHECKING:
  from deepfound.problems.linear import LinearFiniteSum

_LOSSES = ("logistic", "multinomial", "least_squares")


@dataclasses.dataclass(frozen=True)
class Optimum:
  value: float  # E*
  params: np.ndarray  # b*, float64
  gradient_norm: float  # ||grad E(b*)||, to judge how exact E* is
  iterations: int
  converged: bool


class _Smooth:
  """The smooth part of E on a flat parameter vector theta = [W.ravel(), b]: values, gradients
  and Hessian-vector products, with the per-sample curvature cached for the last few thetas."""

  def __init__(self, design, targets, loss, num_classes, l2, weights, fit_intercept):
    if scipy.sparse.issparse(design):
      self.x = scipy.sparse.csr_array(design, dtype=np.float64)
      self.xt = self.x.T.tocsr()  # same non-zeros, transposed: fast X^T u (no densifying)
    else:
      self.x = np.ascontiguousarray(design, dtype=np.float64)
      self.xt = self.x.T
    if self.x.ndim != 2:
      raise ValueError(f"design must be (n, p), got shape {self.x.shape}")
    n, p = self.x.shape
    self.loss = loss
    self.multinomial = loss == "multinomial"
    if self.multinomial:
      self.labels = np.asarray(targets).astype(np.int64)
      self.k = int(num_classes) if num_classes else int(self.labels.max()) + 1
      self.onehot = np.zeros((n, self.k))
      self.onehot[np.arange(n), self.labels] = 1.0
    else:
      self.y = np.asarray(targets, np.float64)
      self.k = 1
    if weights is None:
      self.a = np.full(n, 1.0 / n)
    else:
      weights = np.asarray(weights, np.float64)
      if weights.shape != (n,) or np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError("weights must be (n,), non-negative, with a positive sum")
      self.a = weights / weights.sum()
    self.l2 = float(l2)
    self.n, self.p = n, p
    self.fit_intercept = bool(fit_intercept)
    self.num_w = p * self.k  # penalized coordinates: the first num_w of theta
    self.size = self.num_w + (self.k if self.fit_intercept else 0)
    self._cache: list[tuple[np.ndarray, np.ndarray]] = []

  def _unflatten(self, theta):
    w = theta[: self.num_w]
    if self.multinomial:
      w = w.reshape(self.p, self.k)
    return w, theta[self.num_w:]

  def _flatten(self, w_part, b_part):
    if not self.fit_intercept:
      return np.ravel(w_part)
    return np.concatenate([np.ravel(w_part), np.atleast_1d(b_part)])

  def _scores(self, theta):
    w, b = self._unflatten(theta)
    scores = np.asarray(self.x @ w)
    if self.fit_intercept:
      scores = scores + (b if self.multinomial else b[0])
    return scores

  def _remember(self, theta, curvature):
    self._cache = [(theta.copy(), curvature)] + self._cache[:2]

  def _curvature(self, theta):
    for stored, curvature in self._cache:
      if np.array_equal(stored, theta):
        return curvature
    scores = self._scores(theta)
    if self.loss == "logistic":
      margins = self.y * scores
      curvature = scipy.special.expit(margins) * scipy.special.expit(-margins)
    elif self.loss == "least_squares":
      curvature = np.ones(self.n)
    else:
      curvature = scipy.special.softmax(scores, axis=1)
    self._remember(theta, curvature)
    return curvature

  def evaluate(self, theta):
    """(smooth value, its gradient) at theta."""
    w, _ = self._unflatten(theta)
    scores = self._scores(theta)
    if self.loss == "logistic":
      margins = self.y * scores
      losses = np.logaddexp(0.0, -margins)
      derivative = -self.y * scipy.special.expit(-margins)
      curvature = scipy.special.expit(margins) * scipy.special.expit(-margins)
    elif self.loss == "least_squares":
      residual = scores - self.y
      losses = 0.5 * residual**2
      derivative = residual
      curvature = np.ones(self.n)
    else:
      log_norm = scipy.special.logsumexp(scores, axis=1)
      losses = log_norm - scores[np.arange(self.n), self.labels]
      curvature = np.exp(scores - log_norm[:, None])  # softmax probabilities
      derivative = curvature - self.onehot
    self._remember(theta, curvature)
    value = float(self.a @ losses) + 0.5 * self.l2 * float(np.sum(w * w))
    weighted = derivative * (self.a[:, None] if self.multinomial else self.a)
    grad_w = np.asarray(self.xt @ weighted) + self.l2 * w
    return value, self._flatten(grad_w, weighted.sum(axis=0))

  def hessp(self, theta, vector):
    """Hessian of the smooth part at theta times vector."""
    curvature = self._curvature(theta)
    v, vb = self._unflatten(vector)
    u = np.asarray(self.x @ v)
    if self.fit_intercept:
      u = u + (vb if self.multinomial else vb[0])
    if self.multinomial:  # softmax Jacobian per sample: diag(P) - P P^T, applied to u_i
      inner = curvature * u
      inner -= curvature * inner.sum(axis=1, keepdims=True)
      inner *= self.a[:, None]
    else:
      inner = self.a * curvature * u
    return self._flatten(np.asarray(self.xt @ inner) + self.l2 * v, inner.sum(axis=0))


def _pseudo_gradient(theta, grad, l1, num_w):
  """The minimum-norm subgradient of smooth + l1 ||W||_1 (the gradient when l1 = 0)."""
  if l1 == 0:
    return grad
  out = grad.copy()
  w, g = theta[:num_w], grad[:num_w]
  out[:num_w] = np.where(w != 0, g + l1 * np.sign(w), np.sign(g) * np.maximum(np.abs(g) - l1, 0.0))
  return out


def _newton(smooth, theta, l1, tolerance, max_iterations, quadratic):
  """Orthant-wise Newton-CG on smooth + l1 ||W||_1 (plain Newton-CG when l1 = 0).

  Each step fixes the orthant (signs of W; a zero coordinate may leave 0 only if its subgradient
  violates |g_j| <= l1, in the direction -g_j), solves H d = -pseudo-gradient on the free
  coordinates by CG, and backtracks along the orthant projection of theta + t d (Armijo on the
  true objective; where the change of E is below float64 resolution, a step that lowers the
  pseudo-gradient norm is taken). Returns theta, value, gradient, pseudo-gradient, iterations.
  """
  num_w = smooth.num_w

  def objective(candidate):
    value, grad = smooth.evaluate(candidate)
    if l1:
      value += l1 * float(np.sum(np.abs(candidate[:num_w])))
    return value, grad, _pseudo_gradient(candidate, grad, l1, num_w)

  value, grad, pseudo = objective(theta)
  iterations = 0
  while iterations < max_iterations:
    norm = float(np.linalg.norm(pseudo))
    if norm < tolerance:
      break
    iterations += 1
    if l1:
      w, pw = theta[:num_w], pseudo[:num_w]
      orthant = np.where(w != 0, np.sign(w), -np.sign(pw))
      free = np.concatenate([orthant != 0, np.ones(smooth.size - num_w, bool)])
    else:
      free = np.ones(smooth.size, bool)
    index = np.flatnonzero(free)

    def matvec(v, index=index, theta=theta):
      full = np.zeros(smooth.size)
      full[index] = np.ravel(v)
      return smooth.hessp(theta, full)[index]

    operator = scipy.sparse.linalg.LinearOperator((index.size, index.size), matvec=matvec,
                                                  dtype=np.float64)
    # Forcing term: superlinear convergence; a quadratic gets its solve to the tolerance at once.
    rtol = min(0.5, 0.1 * tolerance / norm) if quadratic else min(0.5, np.sqrt(norm))
    step_free, _ = scipy.sparse.linalg.cg(operator, -pseudo[index], rtol=rtol, atol=0.0,
                                          maxiter=min(10 * index.size, 5000))
    direction = np.zeros(smooth.size)
    direction[index] = step_free

    def project(candidate, orthant=orthant if l1 else None):
      if orthant is not None:
        w = candidate[:num_w]
        w[np.sign(w) != orthant] = 0.0  # leaving the orthant stops at 0
      return candidate

    if float(pseudo @ (project(theta + direction) - theta)) >= 0:
      direction = -pseudo  # the projection spoiled the Newton step: projected steepest descent
      direction[~free] = 0.0
    slack = 64 * np.finfo(np.float64).eps * max(1.0, abs(value))
    step = 1.0
    for _ in range(60):
      candidate = project(theta + step * direction)
      decrease = float(pseudo @ (candidate - theta))
      new_value, new_grad, new_pseudo = objective(candidate)
      if new_value <= value + 1e-4 * decrease or (
          new_value <= value + slack and np.linalg.norm(new_pseudo) < norm):
        break
      step *= 0.5
    else:
      break  # no progress within float64: stop where we are
    theta, value, grad, pseudo = candidate, new_value, new_grad, new_pseudo
  return theta, value, grad, pseudo, iterations


def _trust_region(smooth, tolerance, max_iterations):
  """scipy's trust-region Newton-CG from 0 (Hessian-vector products only)."""
  result = scipy.optimize.minimize(
      smooth.evaluate, np.zeros(smooth.size), jac=True, hessp=smooth.hessp, method="trust-ncg",
      options=dict(maxiter=max_iterations, gtol=tolerance / 10, max_trust_radius=1e12),
  )
  return result.x, int(result.nit)


def _split_lbfgs(smooth, l1, tolerance, max_iterations):
  """L-BFGS-B on W = U - V, U, V >= 0 (smooth in U, V): a start with the support about right."""
  num_w, size = smooth.num_w, smooth.size

  def fun(z):
    theta = np.concatenate([z[:num_w] - z[num_w:2 * num_w], z[2 * num_w:]])
    value, grad = smooth.evaluate(theta)
    value += l1 * float(np.sum(z[: 2 * num_w]))
    g = grad[:num_w]
    return value, np.concatenate([g + l1, l1 - g, grad[num_w:]])

  lower = np.concatenate([np.zeros(2 * num_w), np.full(size - num_w, -np.inf)])
  bounds = scipy.optimize.Bounds(lower, np.full(lower.size, np.inf))
  result = scipy.optimize.minimize(
      fun, np.zeros(lower.size), jac=True, method="L-BFGS-B", bounds=bounds,
      # Loose on purpose: the orthant-wise Newton polish converges fast once the support is about
      # right, and L-BFGS-B spends most of its time on the last digits.
      options=dict(maxiter=max(1000, 5 * max_iterations), maxfun=max(2000, 10 * max_iterations),
                   ftol=1e-10, gtol=max(tolerance, 1e-8)),
  )
  z = result.x
  return np.concatenate([z[:num_w] - z[num_w:2 * num_w], z[2 * num_w:]]), int(result.nit)


class OptimumTooLarge(Exception):
  """The solve of E* would need more memory than allowed (``max_bytes``)."""

  def __init__(self, needed_bytes: int, max_bytes: int):
    self.needed_bytes, self.max_bytes = int(needed_bytes), int(max_bytes)
    super().__init__(f"the float64 solve of E* needs about {self.needed_bytes / 2**20:,.1f} MB, "
                     f"more than the {self.max_bytes / 2**20:,.1f} MB allowed")


# Vectors of the parameters' size that a solve holds at its peak (measured with tracemalloc on
# sparse logistic, multinomial, least-squares and elastic-net problems, then rounded up): scipy's
# trust-ncg and CG keep a dozen; L-BFGS-B works on twice the coefficients with 10 pairs of
# corrections. Per-sample arrays (scores, curvature, one-hot labels) are a dozen of n x K.
_PARAM_VECTORS = {"smooth": 24, "l1": 128}
_SAMPLE_VECTORS = 16


def optimum_memory_bytes(design, loss: str, *, num_classes: int = 0, l1: float = 0.0,
                         fit_intercept: bool = False) -> int:
  """Bytes that ``solve_linear_optimum`` allocates for ``design`` (n, p), beyond the design as
  given: its float64 copies of the used columns (and their transpose), the solver's vectors and
  the per-sample arrays, plus the full-size result. Columns without a non-zero do not count: the
  solve leaves them out (their weight is 0 at the minimum)."""
  n, p = design.shape
  k = max(int(num_classes), 1) if loss == "multinomial" else 1
  if scipy.sparse.issparse(design):
    used = int(np.unique(scipy.sparse.csr_array(design).indices).size)
    design_bytes = 24 * design.nnz + 16 * (n + used + 2)  # X^T and X: value + index
  else:
    used = p
    design_bytes = 8 * n * p  # one float64 copy (X^T is a view)
  size = (used + int(fit_intercept)) * k
  vectors = _PARAM_VECTORS["l1" if l1 > 0 else "smooth"]
  return int(design_bytes + 8 * vectors * size + 8 * _SAMPLE_VECTORS * n * k
             + 8 * (p + int(fit_intercept)) * k)


def _used_columns(design):
  """(the design restricted to columns holding a non-zero, their indices), or (design, None)
  when every column is used. A column of zeros has weight 0 at the minimum of E (its gradient
  is l2 w_j, plus l1's subgradient), so the solve leaves it out: a LIBSVM file with one stray
  index of 1e8 must not cost the solve vectors of 1e8 entries."""
  n, p = design.shape
  if scipy.sparse.issparse(design):
    matrix = scipy.sparse.csr_array(design)
    used = np.unique(matrix.indices)
    if used.size == p:
      return design, None
    indices = np.searchsorted(used, matrix.indices).astype(matrix.indices.dtype)
    return scipy.sparse.csr_array((matrix.data, indices, matrix.indptr),
                                  shape=(n, used.size)), used
  design = np.asarray(design)
  used = np.flatnonzero(np.any(design != 0, axis=0))
  return (design, None) if used.size == p else (design[:, used], used)


def _full_params(params: np.ndarray, used: np.ndarray | None, num_columns: int,
                 fit_intercept: bool) -> np.ndarray:
  """Solved params on the used columns (and the intercept row) spread back to all columns."""
  if used is None:
    return params
  full = np.zeros((num_columns + int(fit_intercept),) + params.shape[1:])
  full[used] = params[: used.size]
  if fit_intercept:
    full[-1] = params[-1]
  return full


def solve_linear_optimum(
    design, targets, loss: str, *, num_classes: int = 0, l2: float = 0.0, l1: float = 0.0,
    weights=None, fit_intercept: bool = False, tolerance: float = 1e-10, max_iterations: int = 200,
    max_bytes: int | None = None,
) -> Optimum:
  """Minimizes E(W, b) = (1/sum w) sum_i w_i L(x_i W + b, y_i) + (l2/2)||W||^2 + l1 ||W||_1.

  ``design``: (n, p) float array or scipy.sparse matrix (kept sparse: matrix-free throughout).
  ``targets``: +-1 (logistic), reals (least_squares), class ids 0..K-1 (multinomial, K =
  ``num_classes``). ``weights``: (n,) non-negative, None for all ones. The intercept b (only with
  ``fit_intercept``) is unpenalized and is the last row of the returned params, which have shape
  (p,) / (p, K) or (p + 1,) / (p + 1, K). ``gradient_norm`` is the norm of the minimum-norm
  subgradient (the gradient when l1 = 0); ``converged`` when it is below ``tolerance``. Columns
  of zeros are left out of the solve (their weight is 0). With ``max_bytes``, a solve whose
  ``optimum_memory_bytes`` exceed it raises ``OptimumTooLarge`` before allocating.
  """
  if loss not in _LOSSES:
    raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(_LOSSES)}")
  l1, l2 = float(l1), float(l2)
  if l1 < 0 or l2 < 0:
    raise ValueError("l1 and l2 must be non-negative")
  if max_bytes is not None:
    needed = optimum_memory_bytes(design, loss, num_classes=num_classes, l1=l1,
                                  fit_intercept=fit_intercept)
    if needed > max_bytes:
      raise OptimumTooLarge(needed, max_bytes)
  num_columns = design.shape[1]
  design, used = _used_columns(design)
  smooth = _Smooth(design, targets, loss, num_classes, l2, weights, fit_intercept)
  quadratic = loss == "least_squares"
  iterations = 0
  if l1 > 0:
    theta, iterations = _split_lbfgs(smooth, l1, tolerance, max_iterations)
  elif quadratic:
    theta = np.zeros(smooth.size)
  else:
    theta, iterations = _trust_region(smooth, tolerance, max_iterations)
  theta, value, _, pseudo, polish = _newton(smooth, theta, l1, tolerance, max_iterations, quadratic)
  norm = float(np.linalg.norm(pseudo))
  rows = smooth.p + int(smooth.fit_intercept)
  params = theta.reshape(rows, smooth.k) if smooth.multinomial else theta
  params = _full_params(params, used, num_columns, smooth.fit_intercept)
  return Optimum(float(value), params, norm, iterations + polish, norm < tolerance)


def solve_optimum(
    problem: LinearFiniteSum, tolerance: float = 1e-10, max_iterations: int = 200,
    max_bytes: int | None = None,
) -> Optimum:
  """E* of a linear finite sum, to ||grad E|| < ``tolerance`` (where the minimum exists).

  Takes the host arrays from ``problem.host_design()`` (a dict with design, targets, loss,
  num_classes, l2, l1, weights, fit_intercept) when the problem is a ``kinds.HostDesign``;
  otherwise from its features, targets, loss, num_classes and l2 (no intercept, no weights, no
  l1). ``max_bytes``: see ``solve_linear_optimum``.
  """
  if isinstance(problem, HostDesign):
    spec = problem.host_design()
    return solve_linear_optimum(
        spec["design"], spec["targets"], spec["loss"], num_classes=spec.get("num_classes", 0),
        l2=float(spec.get("l2", 0.0)), l1=float(spec.get("l1", 0.0)), weights=spec.get("weights"),
        fit_intercept=bool(spec.get("fit_intercept", False)), tolerance=tolerance,
        max_iterations=max_iterations, max_bytes=max_bytes,
    )
  return solve_linear_optimum(
      np.asarray(problem.features, np.float64), np.asarray(problem.targets), problem.loss,
      num_classes=problem.num_classes, l2=float(problem.l2), tolerance=tolerance,
      max_iterations=max_iterations, max_bytes=max_bytes,
  )
