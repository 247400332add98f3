r"""Minibatch divergences between generated and data samples (17.4, minimum Kantorovich estimators).

A push-forward generator x = G_theta(z) is fitted by minimizing, over minibatches, a divergence
D(alpha_theta, beta) between the uniform empirical measure of b generated points
alpha_theta = (1/n) sum_i delta_{x_i} and that of b data points beta = (1/m) sum_j delta_{y_j}. Both
divergences here are smooth in the generated points x, so grad_theta D = sum_i J_{G_theta}(z_i)^T
grad_{x_i} D, and every function below is jittable, vmappable (over runs, seeds, parameters) and usable
in a ``jax.lax.scan`` body.

* ``sinkhorn_divergence``: the debiased entropic optimal transport cost S_eps, computed with
  ott-jax's log-domain Sinkhorn solver (``ott.tools.sinkhorn_divergence.sinkdiv``).
* ``mmd``: the squared maximum mean discrepancy with a Gaussian kernel (or a sum of them), the
  unbiased U-statistic by default.

``minibatch_divergence(name, generated, data, epsilon=..., bandwidth=...)`` dispatches on the names
of ``DIVERGENCES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import epsilon_scheduler
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence as ott_sinkhorn_divergence

# One bandwidth h > 0 or several, whose Gaussian kernels are summed.
Bandwidth = float | jax.Array | Sequence[float]


def _as_point_clouds(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Both samples as (n, d) and (m, d) arrays of one floating dtype."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"expected point clouds of shapes (n, d) and (m, d), got {x.shape} and {y.shape}")
  dtype = jnp.result_type(x, y, float)
  return x.astype(dtype), y.astype(dtype)


def sinkhorn_divergence(
  x: jax.Array,
  y: jax.Array,
  epsilon: float | jax.Array,
  *,
  max_iterations: int = 2000,
  threshold: float = 1e-3,
  rho: float | None = None,
  epsilon_start: float | None = None,
  epsilon_decay: float = 0.8,
  momentum: float | None = None,
) -> jax.Array:
  r"""Debiased Sinkhorn divergence S_eps(alpha, beta) between two uniform point clouds.

  With alpha = (1/n) sum_i delta_{x_i}, beta = (1/m) sum_j delta_{y_j}, marginals a = 1/n, b = 1/m and
  the squared Euclidean cost c(x, y) = |x - y|^2 (no factor 1/2: ott's ``costs.SqEuclidean``, the
  default cost of ``PointCloud``),

    OT_eps(alpha, beta) = min_{P >= 0, P 1 = a, P^T 1 = b} sum_{ij} P_ij |x_i - y_j|^2 + eps KL(P | a b^T),
    S_eps(alpha, beta)  = OT_eps(alpha, beta) - (OT_eps(alpha, alpha) + OT_eps(beta, beta)) / 2.

  S_eps is symmetric, S_eps(alpha, alpha) = 0, S_eps >= 0 (Feydy et al. 2019), and it sees
  translations exactly: S_eps(alpha, alpha shifted by t) = |t|^2 for every eps (the cross term
  -2 <t, x_i - x_j> of the cost splits into a potential of i plus one of j, which the marginal
  constraints integrate to zero). ``epsilon`` is absolute, in the units of the cost (squared
  distances), not relative to the cost's scale. Each OT_eps is computed by ott's log-domain
  Sinkhorn solver, stopped when the L1 error of the marginal falls below ``threshold`` (checked every
  10 iterations) or after ``max_iterations`` (a static int); the x-x and y-y problems use the
  symmetric updates of Feydy et al. (eq. 25).

  Gradient: ott's implicit mode with Danskin's (envelope) theorem freezes the dual potentials, so
  reverse mode differentiates only the final dual objective at the computed plans,

    grad_{x_i} S_eps = 2 sum_j P^{xy}_ij (x_i - y_j) - 2 sum_j P^{xx}_ij (x_i - x_j),

  an attraction of x_i toward its transport image in the data and a repulsion within the generated
  sample. That costs one extra pass over the n x m kernel, nothing per Sinkhorn iteration and no
  linear solve, and memory does not grow with the iteration count. It is therefore robust under
  ``jax.vmap``, where the while loop runs until the slowest member of the batch has converged
  (converged members are frozen): unrolled differentiation would instead store and backpropagate
  through all of those iterations, for every member. The formula is exact at convergence (error of
  the order of ``threshold``); derivatives of order two (a gradient of this gradient) are not, as
  they ignore how the plans move with x.

  Args:
    x: generated points, shape (n, d) (the argument to differentiate).
    y: data points, shape (m, d).
    epsilon: entropic regularization eps > 0, in units of squared distance.
    max_iterations: cap on the Sinkhorn iterations of each of the three problems (static).
    threshold: tolerance on the L1 marginal error that stops the iterations (0: always run
      ``max_iterations``).
    rho: if given, unbalanced transport: the marginal constraints become penalties
      rho KL(P 1 | a) + rho KL(P^T 1 | b) (ott's tau = rho / (rho + eps) on both sides), in the
      squared-distance units of eps. Mass that would travel farther than about sqrt(rho) is
      destroyed and created instead, so a minibatch whose modes hold a few points more or fewer
      than the generated one no longer drags points across modes. All three terms use it, which
      keeps S(alpha, alpha) = 0 (Sejourne et al. 2019).
    epsilon_start: if given (and above ``epsilon``), epsilon scaling inside each solve: iteration
      t runs at max(epsilon_start * epsilon_decay^t, epsilon), so the target eps is reached after
      log(epsilon_start / epsilon) / log(1 / epsilon_decay) iterations (``epsilon_schedule``).
    epsilon_decay: the factor per iteration of that scaling, in (0, 1).
    momentum: if given, over-relaxation of the x-y solve's updates by this factor in (0, 2)
      (ott's ``Momentum``; the x-x and y-y solves use ott's own 0.5).

  Returns:
    The scalar S_eps(alpha, beta), in the floating dtype of x and y (float32 or float64).
  """
  x, y = _as_point_clouds(x, y)
  n, m = x.shape[0], y.shape[0]
  a = jnp.full((n,), 1.0 / n, x.dtype)
  b = jnp.full((m,), 1.0 / m, x.dtype)
  solve = {"max_iterations": max_iterations, "threshold": threshold}
  if rho is not None:
    solve["tau_a"] = solve["tau_b"] = rho / (rho + epsilon)
  if momentum is not None:
    solve["momentum"] = acceleration.Momentum(start=0, value=momentum)
  schedule = epsilon_schedule(epsilon, epsilon_start, epsilon_decay)
  if schedule is not epsilon:
    needed = scaling_iterations(epsilon_start, epsilon, epsilon_decay)
    if needed >= max_iterations:
      raise ValueError(f"epsilon scaled from {epsilon_start} by {epsilon_decay} per iteration needs "
                       f"{needed} iterations to reach {epsilon}; max_iterations = {max_iterations} "
                       "must be more")
  value, _ = ott_sinkhorn_divergence.sinkdiv(x, y, epsilon=schedule, a=a, b=b, solve_kwargs=solve)
  return value


def scaling_iterations(start: float, epsilon: float, decay: float) -> int | None:
  """Iterations after which ``epsilon_schedule(epsilon, start, decay)`` is down to ``epsilon``;
  None if it never gets there (decay >= 1)."""
  if decay >= 1:
    return None
  return math.ceil(math.log(float(start) / float(epsilon)) / math.log(1 / decay) - 1e-9)


def epsilon_schedule(
  epsilon: float | jax.Array, start: float | None = None, decay: float = 0.8
) -> float | jax.Array | epsilon_scheduler.Epsilon:
  """The regularization of a Sinkhorn solve: ``epsilon`` throughout (``start`` None or at most
  ``epsilon``), or ott's ``Epsilon`` scheduler running iteration t at max(start decay^t, epsilon).

  ott counts the start as a multiple of the target, so ``start`` (absolute, like ``epsilon``) is
  divided by it here; it must then be a concrete number (it is static in ott's scheduler).
  """
  if start is None or start <= epsilon:
    return epsilon
  if not 0.0 < decay < 1.0:
    raise ValueError(f"epsilon_decay must be in (0, 1), got {decay}")
  return epsilon_scheduler.Epsilon(target=epsilon, init=float(start) / float(epsilon), decay=decay)


def _gaussian_kernel(u: jax.Array, v: jax.Array, bandwidths: jax.Array) -> jax.Array:
  """sum_h exp(-|u_i - v_j|^2 / (2 h^2)), the (len(u), len(v)) matrix of the summed kernel."""
  # |u - v|^2 = |u|^2 + |v|^2 - 2 <u, v>: O(n m) memory rather than O(n m d); clipped at the roundoff.
  sq = jnp.sum(u * u, 1)[:, None] + jnp.sum(v * v, 1)[None, :] - 2.0 * u @ v.T
  sq = jnp.maximum(sq, 0.0)
  return jnp.sum(jnp.exp(-sq[..., None] / (2.0 * bandwidths**2)), axis=-1)


def mmd(x: jax.Array, y: jax.Array, bandwidth: Bandwidth, *, unbiased: bool = True) -> jax.Array:
  r"""Squared maximum mean discrepancy between two samples, Gaussian kernel(s).

  The kernel is k(u, v) = sum_{h in H} exp(-|u - v|^2 / (2 h^2)), with H = (bandwidth,) or the tuple
  of bandwidths given (a sum of kernels, common for generators: it keeps a gradient at all scales).
  For x_1..x_n and y_1..y_m the unbiased U-statistic (default) excludes the diagonals,

    MMD_u^2 = 1/(n(n-1)) sum_{i != i'} k(x_i, x_i') + 1/(m(m-1)) sum_{j != j'} k(y_j, y_j')
              - 2/(n m) sum_{i, j} k(x_i, y_j),

  and the biased V-statistic (``unbiased=False``) keeps them,

    MMD_b^2 = 1/n^2 sum_{i, i'} k(x_i, x_i') + 1/m^2 sum_{j, j'} k(y_j, y_j') - 2/(n m) sum_{i, j} k(x_i, y_j)
            = | mu_x - mu_y |_H^2 >= 0,

  the squared RKHS distance of the two empirical kernel mean embeddings, zero when the samples agree.

  The U-statistic is the training loss: for independent samples x_i = G_theta(z_i) ~ P_theta and
  y_j ~ Q, E[MMD_u^2] = MMD^2(P_theta, Q) and, differentiating under the expectation,
  E[grad_theta MMD_u^2] = grad_theta MMD^2(P_theta, Q), so minibatch SGD on it is SGD on the
  population objective. The V-statistic's gradient is biased: since k(u, u) = |H| is constant, its
  repulsive x-x term is the U-statistic's times (n - 1) / n. The price is that MMD_u^2 can be
  negative (it is an estimate, not a distance; it is about zero, not zero, on two samples of one law).
  The U-statistic needs n, m >= 2.

  Args:
    x: generated points, shape (n, d).
    y: data points, shape (m, d).
    bandwidth: h > 0, or a sequence (or 1-D array) of bandwidths whose kernels are summed.
    unbiased: the U-statistic if True, else the V-statistic.

  Returns:
    The scalar estimate of MMD^2, in the floating dtype of x and y.
  """
  x, y = _as_point_clouds(x, y)
  bandwidths = jnp.atleast_1d(jnp.asarray(bandwidth, x.dtype))
  if bandwidths.ndim != 1 or bandwidths.shape[0] == 0:
    raise ValueError(f"bandwidth must be a positive number or a non-empty sequence, got {bandwidth!r}")
  n, m = x.shape[0], y.shape[0]
  if unbiased and min(n, m) < 2:
    raise ValueError(f"the unbiased MMD needs at least 2 points per sample, got {n} and {m}")
  # Distances are translation invariant; centering at the data mean keeps |u|^2 + |v|^2 - 2 <u, v>
  # accurate in float32 for samples far from the origin.
  center = jax.lax.stop_gradient(jnp.mean(y, axis=0))
  x, y = x - center, y - center
  k_xx = _gaussian_kernel(x, x, bandwidths)
  k_yy = _gaussian_kernel(y, y, bandwidths)
  k_xy = _gaussian_kernel(x, y, bandwidths)
  if unbiased:
    term_xx = (jnp.sum(k_xx) - jnp.trace(k_xx)) / (n * (n - 1))
    term_yy = (jnp.sum(k_yy) - jnp.trace(k_yy)) / (m * (m - 1))
  else:
    term_xx, term_yy = jnp.mean(k_xx), jnp.mean(k_yy)
  return term_xx + term_yy - 2.0 * jnp.mean(k_xy)


DIVERGENCES: dict[str, Callable[..., jax.Array]] = {"sinkhorn": sinkhorn_divergence, "mmd": mmd}
# The hyperparameter each divergence takes as its third argument (it reads no other).
PARAMETERS = {"sinkhorn": "epsilon", "mmd": "bandwidth"}
# The solver settings of each divergence: config key (problem.<key>) -> keyword of its function.
SOLVER_KEYS = {
  "sinkhorn": {"rho": "rho", "epsilon_start": "epsilon_start", "epsilon_decay": "epsilon_decay",
               "sinkhorn_iterations": "max_iterations", "sinkhorn_threshold": "threshold",
               "sinkhorn_momentum": "momentum"},
  "mmd": {},
}
# The smallest epsilon of ``sinkhorn_divergence``, in machine epsilons of the dtype: below it the
# log-domain iterations lose all precision (measured on 2-D point clouds in float32: fine at 1e-6,
# 5.8e7 instead of 3 at 2e-7, inf at 5e-8, NaN from 1e-10; likewise in float64 below 1e-15).
EPSILON_ULPS = 10.0


def parameter_problem(name: str, value: Bandwidth, dtype) -> str | None:
  """Why divergence ``name`` cannot be computed in ``dtype`` with its parameter ``value`` (None:
  it can): a sinkhorn epsilon below ``EPSILON_ULPS`` machine epsilons, or an mmd bandwidth h
  (each of several) whose kernel width 2 h^2 underflows to zero or overflows."""
  info = np.finfo(dtype)
  if name == "sinkhorn":
    smallest = EPSILON_ULPS * float(info.eps)
    if value < smallest:
      return (f"is below {smallest:.3g}, {EPSILON_ULPS:g} machine epsilons of {info.dtype}, where "
              "the log-domain Sinkhorn iterations return inf or NaN")
  elif name == "mmd":
    for h in np.atleast_1d(np.asarray(value, np.float64)):
      if not float(info.tiny) <= 2.0 * h * h <= float(info.max):
        return (f"gives a Gaussian kernel of width 2 h^2 = {2.0 * h * h:.3g} (h = {h:.3g}), which "
                f"{info.dtype} cannot hold (from {float(info.tiny):.3g} to {float(info.max):.3g})")
  return None


def minibatch_divergence(
  name: str,
  generated: jax.Array,
  data: jax.Array,
  *,
  epsilon: float | jax.Array | None = None,
  bandwidth: Bandwidth | None = None,
  **options,
) -> jax.Array:
  """D(generated, data) for the divergence ``name`` of ``DIVERGENCES``.

  ``"sinkhorn"`` is S_eps(generated, data) and needs ``epsilon``; ``"mmd"`` is the unbiased MMD^2
  with the Gaussian kernel(s) of ``bandwidth``, and needs it. The other hyperparameter is ignored;
  ``options`` go to the divergence's function as keywords (e.g. sinkhorn's ``rho``).

  Args:
    name: a key of ``DIVERGENCES``.
    generated: the generator's points, shape (n, d).
    data: the data points, shape (m, d).
    epsilon: the entropic regularization of ``"sinkhorn"``.
    bandwidth: the bandwidth(s) of ``"mmd"``.
    **options: further keywords of that divergence's function.

  Returns:
    The scalar divergence.
  """
  if name not in DIVERGENCES:
    raise ValueError(f"unknown divergence {name!r}; expected one of {sorted(DIVERGENCES)}")
  parameters = {"epsilon": epsilon, "bandwidth": bandwidth}
  value = parameters[PARAMETERS[name]]
  if value is None:
    raise ValueError(f"divergence {name!r} needs {PARAMETERS[name]}")
  return DIVERGENCES[name](generated, data, value, **options)
