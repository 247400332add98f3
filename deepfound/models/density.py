"""Density models of section 17.4, fitted by maximum likelihood: a Gaussian mixture and coupling
flows (rational-quadratic spline couplings, Neural Spline Flows; affine couplings, RealNVP), as
Flax NNX modules used as pure parameter pytrees.

Both have ``log_density(x)``, (..., d) -> (...), and ``sample(key, num)`` -> (num, d). Fitting
minimizes the average negative log-likelihood -(1/n) sum_i log p_theta(x_i) over the ``nnx.Param``
leaves. The Gaussian mixture has only parameters: ``nnx.split(model, nnx.Param)`` is exhaustive.
A flow also holds fixed buffers (the data standardization, ``Standardization`` variables, and the
permutations of its linear layers, ``Permutation``), so it is split in three,
``nnx.split(model, nnx.Param, ...)``; ``split`` below does either and returns the pure function
log_density(params, x).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import logsumexp

from deepfound.models import splines
from deepfound.models.networks import MLP

_LOG_2PI = math.log(2 * math.pi)


class Standardization(nnx.Variable):
  """A fixed (not trained) statistic of the data: excluded by the ``nnx.Param`` filter."""


def split(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, Callable[[nnx.State, jax.Array], jax.Array]]:
  """(graphdef, params, log_density) with log_density(params, x) = log p_params(x), a pure function
  of the parameters; anything else the model holds (RealNVP's standardization) is a constant of
  it."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def log_density(params: nnx.State, x: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, params, rest).log_density(x)

  return graphdef, params, log_density


class GaussianMixtureModel(nnx.Module):
  """p(x) = sum_k pi_k N(x; mu_k, (L_k L_k^T)^{-1}) on R^d, with unconstrained parameters:

  - ``logits`` (K,): pi = softmax(logits);
  - ``means`` (K, d): mu_k;
  - ``cholesky`` (K, d, d): the Cholesky factor L_k of the *precision* Lambda_k = L_k L_k^T is the
    strictly lower triangle of cholesky[k] plus exp of its diagonal (its upper triangle is unused).

  With the precision factor the log-density needs no solve and no inverse:

    log N(x; mu, Lambda^{-1}) = -(d/2) log 2 pi + sum_i log L_ii - |L^T (x - mu)|^2 / 2,

  and log L_ii is the raw diagonal parameter itself. The diagonal goes through exp rather than
  softplus because the data's scales span orders of magnitude (sd 0.01 on the ring, 4 across the
  grid): an additive step on log L_ii is a relative change of the component's width, the same for
  any width, and the log-det term is linear in the parameters. (Softplus would need a raw value of
  ~100 for a precision factor of 100 and move it at Adam's step size per step.)
  """

  def __init__(self, num_components: int, dim: int, *, rngs: nnx.Rngs,
               init_points: jax.Array | np.ndarray | None = None, scale: float = 1.0):
    """Weights equal, precisions I / scale^2, means ``init_points`` (K, d) (e.g. K data points drawn
    at random) if given, else N(0, scale^2 I) draws."""
    if init_points is None:
      means = scale * jax.random.normal(rngs.params(), (num_components, dim))
    else:
      means = jnp.asarray(init_points, jnp.float32)
      if means.shape != (num_components, dim):
        raise ValueError(f"init_points must have shape ({num_components}, {dim}), got {means.shape}")
    self.num_components, self.dim = num_components, dim
    self.logits = nnx.Param(jnp.zeros(num_components))
    self.means = nnx.Param(means.astype(jnp.float32))
    self.cholesky = nnx.Param(jnp.broadcast_to(-math.log(scale) * jnp.eye(dim),
                                               (num_components, dim, dim)).astype(jnp.float32))

  def precision_cholesky(self) -> jax.Array:
    """L (K, d, d), lower triangular with positive diagonal: Lambda_k = L_k L_k^T."""
    raw = self.cholesky[...]
    return jnp.tril(raw, -1) + jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))[..., None] * jnp.eye(self.dim)

  def weights(self) -> jax.Array:
    return jax.nn.softmax(self.logits[...])

  def covariances(self) -> jax.Array:
    """Sigma_k = (L_k L_k^T)^{-1}, (K, d, d)."""
    factor = self.precision_cholesky()
    return jnp.linalg.inv(factor @ jnp.swapaxes(factor, -1, -2))

  def component_log_densities(self, x: jax.Array) -> jax.Array:
    """log pi_k + log N(x; mu_k, Sigma_k), (..., d) -> (..., K)."""
    factor = self.precision_cholesky()
    diff = x[..., None, :] - self.means[...]  # (..., K, d)
    whitened = jnp.einsum("...ki,kij->...kj", diff, factor)  # L_k^T (x - mu_k)
    log_det = jnp.sum(jnp.diagonal(self.cholesky[...], axis1=-2, axis2=-1), axis=-1)  # log det L_k
    log_normal = -0.5 * self.dim * _LOG_2PI + log_det - 0.5 * jnp.sum(whitened ** 2, axis=-1)
    return jax.nn.log_softmax(self.logits[...]) + log_normal

  def log_density(self, x: jax.Array) -> jax.Array:
    """log p(x) = logsumexp_k (log pi_k + log N(x; mu_k, Sigma_k)), (..., d) -> (...)."""
    return logsumexp(self.component_log_densities(x), axis=-1)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.log_density(x)

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """k ~ Categorical(pi), x = mu_k + L_k^{-T} eps with eps ~ N(0, I) (so Cov x = Sigma_k): (num, d)."""
    key_component, key_noise = jax.random.split(key)
    components = jax.random.categorical(key_component, self.logits[...], shape=(num,))
    noise = jax.random.normal(key_noise, (num, self.dim))
    factors = self.precision_cholesky()[components]
    solve = jax.vmap(lambda factor, e: jax.scipy.linalg.solve_triangular(factor, e, trans="T", lower=True))
    return self.means[...][components] + solve(factors, noise)


class AffineCoupling(nnx.Module):
  """One affine coupling layer (Dinh et al. 2017) with conditioning coordinates a and transformed
  coordinates b (a partition of 0..d-1):

    forward  (z -> x):  x_a = z_a,  x_b = z_b * exp(s(z_a)) + t(z_a),
    inverse  (x -> z):  z_a = x_a,  z_b = (x_b - t(x_a)) * exp(-s(x_a)),

  whose Jacobian is triangular: log|det dz/dx| = -sum_j s_j(x_a). (s, t) come from one MLP on x_a;
  the log-scale is bounded, s = c tanh(s_raw / c) with c = ``max_log_scale``, so that one layer
  scales by at most e^{+-c}: unbounded log-scales can blow up early in training (exp of a large
  network output) and make the likelihood NaN. Near 0, s ~ s_raw. The MLP's last layer starts at
  zero, so s = t = 0: the layer starts as the identity.
  """

  def __init__(self, conditioner: Sequence[int], transformed: Sequence[int], hidden: Sequence[int],
               activation: str, max_log_scale: float, *, rngs: nnx.Rngs):
    self.conditioner, self.transformed = tuple(conditioner), tuple(transformed)
    # x[..., order] puts a then b; y[..., unorder] puts [a, b] back in coordinate order.
    order = self.conditioner + self.transformed
    self.unorder = tuple(int(i) for i in np.argsort(order))
    self.max_log_scale = float(max_log_scale)
    self.net = MLP([len(self.conditioner), *hidden, 2 * len(self.transformed)], activation, rngs=rngs)
    last = self.net.layers[-1]
    last.kernel[...] = jnp.zeros_like(last.kernel[...])
    last.bias[...] = jnp.zeros_like(last.bias[...])

  def _scale_shift(self, x_a: jax.Array) -> tuple[jax.Array, jax.Array]:
    raw_log_scale, shift = jnp.split(self.net(x_a), 2, axis=-1)
    return self.max_log_scale * jnp.tanh(raw_log_scale / self.max_log_scale), shift

  def _join(self, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.concatenate([a, b], axis=-1)[..., self.unorder]

  def forward(self, z: jax.Array) -> jax.Array:
    z_a, z_b = z[..., self.conditioner], z[..., self.transformed]
    log_scale, shift = self._scale_shift(z_a)
    return self._join(z_a, z_b * jnp.exp(log_scale) + shift)

  def inverse(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(z, log|det dz/dx|)."""
    x_a, x_b = x[..., self.conditioner], x[..., self.transformed]
    log_scale, shift = self._scale_shift(x_a)
    return self._join(x_a, (x_b - shift) * jnp.exp(-log_scale)), -jnp.sum(log_scale, axis=-1)


class SplineCoupling(nnx.Module):
  """One rational-quadratic spline coupling layer (Durkan et al. 2019): conditioning coordinates a
  and transformed coordinates b, each x_b,j -> g_j(x_b,j; theta_j(x_a)) a monotone spline on
  [-``tail_bound``, ``tail_bound``] with ``num_bins`` bins and identity tails (``splines``):

    density direction (x -> z):  z_a = x_a,  z_b,j = g_j(x_b,j),   log|det dz/dx| = sum_j log g_j',
    sampling direction (z -> x): x_b,j = g_j^{-1}(z_b,j) (closed form, a quadratic per point).

  The MLP on x_a gives the 3K - 1 unconstrained numbers of each g_j; its last layer starts at zero,
  so every g_j starts as the identity.
  """

  def __init__(self, conditioner: Sequence[int], transformed: Sequence[int], hidden: Sequence[int],
               activation: str, num_bins: int, tail_bound: float, *, rngs: nnx.Rngs):
    self.conditioner, self.transformed = tuple(conditioner), tuple(transformed)
    order = self.conditioner + self.transformed
    self.unorder = tuple(int(i) for i in np.argsort(order))
    if num_bins < 2 or not 0 < tail_bound < float("inf"):
      raise ValueError(f"a spline needs num_bins >= 2 and a finite tail_bound > 0, got {num_bins} "
                       f"and {tail_bound}")
    self.num_bins, self.tail_bound = int(num_bins), float(tail_bound)
    width = splines.params_per_dimension(self.num_bins)
    self.net = MLP([len(self.conditioner), *hidden, width * len(self.transformed)], activation,
                   rngs=rngs)
    last = self.net.layers[-1]
    last.kernel[...] = jnp.zeros_like(last.kernel[...])
    last.bias[...] = jnp.zeros_like(last.bias[...])

  def _knots(self, x_a: jax.Array) -> splines.Knots:
    raw = self.net(x_a).reshape(*x_a.shape[:-1], len(self.transformed), -1)
    return splines.knots(*splines.split_params(raw, self.num_bins), self.tail_bound)

  def _join(self, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.concatenate([a, b], axis=-1)[..., self.unorder]

  def forward(self, z: jax.Array) -> jax.Array:
    z_a, z_b = z[..., self.conditioner], z[..., self.transformed]
    x_b, _ = splines.inverse(z_b, self._knots(z_a))
    return self._join(z_a, x_b)

  def inverse(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(z, log|det dz/dx|)."""
    x_a, x_b = x[..., self.conditioner], x[..., self.transformed]
    z_b, log_slope = splines.forward(x_b, self._knots(x_a))
    return self._join(x_a, z_b), jnp.sum(log_slope, axis=-1)


class Permutation(nnx.Variable):
  """A fixed (not trained) permutation of the coordinates: excluded by the ``nnx.Param`` filter."""


class LULinear(nnx.Module):
  """An invertible linear layer z = W x with W = L U P (the "LU-decomposed linear" layer that
  Neural Spline Flows puts between couplings, after Kingma and Dhariwal 2018's Glow):

  - P a fixed random permutation (drawn at construction, not trained);
  - L unit lower triangular (its strict lower triangle a parameter);
  - U upper triangular with diagonal exp(``log_diagonal``) (its strict upper triangle a
    parameter), so log|det W| = sum(log_diagonal), O(d), and W is invertible for any parameters.

  It starts as the permutation P (L = U = I). The sampling direction x = W^{-1} z is two
  triangular solves.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.dim = dim
    self.permutation = Permutation(jax.random.permutation(rngs.params(), dim))
    self.lower = nnx.Param(jnp.zeros((dim, dim)))
    self.upper = nnx.Param(jnp.zeros((dim, dim)))
    self.log_diagonal = nnx.Param(jnp.zeros((dim,)))

  def _factors(self) -> tuple[jax.Array, jax.Array]:
    eye = jnp.eye(self.dim, dtype=self.lower[...].dtype)
    lower = jnp.tril(self.lower[...], -1) + eye
    upper = jnp.triu(self.upper[...], 1) + jnp.diag(jnp.exp(self.log_diagonal[...]))
    return lower, upper

  def inverse(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(W x, log|det W|) for the rows x (..., d)."""
    lower, upper = self._factors()
    z = (x[..., self.permutation[...]] @ upper.T) @ lower.T  # P x is a gather of the coordinates
    return z, jnp.broadcast_to(jnp.sum(self.log_diagonal[...]), x.shape[:-1])

  def forward(self, z: jax.Array) -> jax.Array:
    """W^{-1} z for the rows z (..., d)."""
    lower, upper = self._factors()
    rows = z.reshape(-1, self.dim).T
    v = jax.scipy.linalg.solve_triangular(lower, rows, lower=True, unit_diagonal=True)
    u = jax.scipy.linalg.solve_triangular(upper, v, lower=False)
    x = jnp.zeros_like(u).at[self.permutation[...]].set(u)
    return x.T.reshape(z.shape)


def coupling_partitions(dim: int, num_layers: int, mask: str = "halves") -> list[tuple[tuple[int, ...],
                                                                                      tuple[int, ...]]]:
  """(conditioning, transformed) coordinates of each layer, the roles swapping from layer to layer.
  "halves": the first ceil(d/2) coordinates and the rest (for d = 2: x_0 and x_1 in turn);
  "checkerboard": the even and the odd coordinates."""
  if dim < 2:
    raise ValueError(f"a coupling flow needs dim >= 2, got {dim}")
  if mask == "halves":
    first, second = tuple(range((dim + 1) // 2)), tuple(range((dim + 1) // 2, dim))
  elif mask == "checkerboard":
    first, second = tuple(range(0, dim, 2)), tuple(range(1, dim, 2))
  else:
    raise ValueError(f"unknown mask {mask!r}; expected 'halves' or 'checkerboard'")
  return [(first, second) if layer % 2 == 0 else (second, first) for layer in range(num_layers)]


TRANSFORMS = ("spline", "affine")  # the coupling layers' elementwise transform
MIXINGS = ("lu", "permute", "alternate")  # what sits between two couplings


class CouplingFlow(nnx.Module):
  """A coupling flow x = g(z), z ~ N(0, I_d):

    g = S o f_{L-1} o ... o f_0,   S(u) = loc + scale * u,

  with f_l the coupling layers on alternating partitions of the coordinates, ``transform``:

  - ``spline``: rational-quadratic spline couplings (``SplineCoupling``; Neural Spline Flows,
    Durkan et al. 2019), ``num_bins`` bins on [-``tail_bound``, ``tail_bound``], identity tails;
  - ``affine``: affine couplings (``AffineCoupling``; RealNVP, Dinh et al. 2017);

  and, between two couplings, ``mixing``:

  - ``lu``: an invertible linear layer W = L U P (``LULinear``), as Neural Spline Flows has;
  - ``permute``: a fixed random permutation of the coordinates (an ``LULinear`` whose L and U
    are not trained would be the same; here it is a bare gather);
  - ``alternate``: nothing (the partitions' alternation alone mixes the coordinates: RealNVP).

  S is a fixed standardization of the data (``data_loc``, ``data_scale``: e.g. the data's mean and
  standard deviation; default 0 and 1), so that the couplings see data of unit scale whatever the
  data's (the grid spans [-4, 4], the ring [-1, 1]) and the splines' bound sits where the data
  are. Change of variables:

    log p(x) = log N(z; 0, I) + log|det dz/dx|,   z = g^{-1}(x),

  the log-determinant a sum over the layers'. At initialization every layer is the identity (or a
  permutation), so p = N(loc, diag(scale^2)).
  """

  def __init__(self, dim: int, num_layers: int, hidden: Sequence[int] = (64, 64), *, rngs: nnx.Rngs,
               transform: str = "spline", mixing: str = "lu", num_bins: int = 8,
               tail_bound: float = 3.0, activation: str = "relu", mask: str = "halves",
               max_log_scale: float = 3.0,
               data_loc: jax.Array | np.ndarray | float | None = None,
               data_scale: jax.Array | np.ndarray | float | None = None):
    if transform not in TRANSFORMS:
      raise ValueError(f"unknown transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
    if mixing not in MIXINGS:
      raise ValueError(f"unknown mixing {mixing!r}; expected one of {', '.join(MIXINGS)}")
    self.dim = dim
    layers = []
    for index, (conditioner, transformed) in enumerate(coupling_partitions(dim, num_layers, mask)):
      if index and mixing == "lu":
        layers.append(LULinear(dim, rngs=rngs))
      elif index and mixing == "permute":
        layers.append(FixedPermutation(dim, rngs=rngs))
      if transform == "spline":
        layers.append(SplineCoupling(conditioner, transformed, hidden, activation, num_bins,
                                     tail_bound, rngs=rngs))
      else:
        layers.append(AffineCoupling(conditioner, transformed, hidden, activation, max_log_scale,
                                     rngs=rngs))
    # "couplings" holds every layer in order (RealNVP's parameter paths are those of earlier runs).
    self.couplings = nnx.List(layers)
    loc = jnp.broadcast_to(jnp.asarray(0.0 if data_loc is None else data_loc, jnp.float32), (dim,))
    scale = jnp.broadcast_to(jnp.asarray(1.0 if data_scale is None else data_scale, jnp.float32), (dim,))
    if not bool(jnp.all(scale > 0)):
      raise ValueError("data_scale must be positive")
    self.loc = Standardization(loc)
    self.scale = Standardization(scale)

  def forward(self, z: jax.Array) -> jax.Array:
    """x = g(z), (..., d) -> (..., d)."""
    for coupling in self.couplings:
      z = coupling.forward(z)
    return self.loc[...] + self.scale[...] * z

  def inverse(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(z, log|det dz/dx|) = (g^{-1}(x), its log-Jacobian determinant), shapes (..., d), (...)."""
    z = (x - self.loc[...]) / self.scale[...]
    log_det = jnp.broadcast_to(-jnp.sum(jnp.log(self.scale[...])), x.shape[:-1])
    for coupling in reversed(self.couplings):
      z, layer_log_det = coupling.inverse(z)
      log_det = log_det + layer_log_det
    return z, log_det

  def log_density(self, x: jax.Array) -> jax.Array:
    """log p(x) = -|z|^2 / 2 - (d/2) log 2 pi + log|det dz/dx|, (..., d) -> (...)."""
    z, log_det = self.inverse(x)
    return -0.5 * jnp.sum(z ** 2, axis=-1) - 0.5 * self.dim * _LOG_2PI + log_det

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.log_density(x)

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """g(z) for num draws z ~ N(0, I): (num, d)."""
    return self.forward(jax.random.normal(key, (num, self.dim)))


class FixedPermutation(nnx.Module):
  """z = x[..., perm] for a random permutation drawn at construction (not trained); log|det| = 0."""

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.permutation = Permutation(jax.random.permutation(rngs.params(), dim))

  def inverse(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return x[..., self.permutation[...]], jnp.zeros(x.shape[:-1], x.dtype)

  def forward(self, z: jax.Array) -> jax.Array:
    return z[..., jnp.argsort(self.permutation[...])]


def RealNVP(dim: int, num_layers: int, hidden: Sequence[int] = (64, 64), *, rngs: nnx.Rngs,  # noqa: N802
            **kwargs) -> CouplingFlow:
  """RealNVP (Dinh et al. 2017): affine couplings on alternating partitions, nothing between."""
  return CouplingFlow(dim, num_layers, hidden, rngs=rngs, transform="affine", mixing="alternate",
                      **kwargs)
