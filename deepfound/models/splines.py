"""Monotone rational-quadratic splines (Durkan, Bekasov, Murray, Papamakarios 2019, "Neural Spline
Flows"), the elementwise transform of a spline coupling layer.

On [-B, B] the spline passes through K + 1 knots (x_k, y_k), increasing in both coordinates, with
positive derivatives d_k at the knots; in bin k, with s_k = (y_{k+1} - y_k) / (x_{k+1} - x_k) and
xi = (x - x_k) / (x_{k+1} - x_k) in [0, 1],

  D = s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi),
  g(x) = y_k + (y_{k+1} - y_k) [s_k xi^2 + d_k xi (1 - xi)] / D,
  g'(x) = s_k^2 [d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2] / D^2

(the paper's eqs. 4 and 5). Its inverse solves a quadratic in xi in closed form. Outside [-B, B] the
transform is the identity ("linear tails"); the end knots are (-B, -B) and (B, B) and the end
derivatives are 1, so g and g' are continuous there.

``knots(raw_widths, raw_heights, raw_derivatives, bound)`` maps unconstrained numbers (a
conditioner network's outputs) to such knots: widths and heights by a softmax with a floor, the
K - 1 inner derivatives by a softplus with a floor. All zeros give equal bins and unit
derivatives: the identity. Everything is elementwise over leading axes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

MIN_BIN = 1e-3  # the smallest bin width and height, as a fraction of 2B (NSF's default)
MIN_DERIVATIVE = 1e-3  # the smallest derivative at a knot (NSF's default)
# softplus(raw + shift) + MIN_DERIVATIVE = 1 at raw = 0
_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


class Knots(NamedTuple):
  """x (..., K + 1) and y (..., K + 1), increasing from -B to B; derivative (..., K + 1) > 0, 1 at
  both ends."""

  x: jax.Array
  y: jax.Array
  derivative: jax.Array


def params_per_dimension(num_bins: int) -> int:
  """Unconstrained numbers per transformed coordinate: K widths, K heights, K - 1 derivatives."""
  return 3 * num_bins - 1


def _positions(raw: jax.Array, bound: float) -> jax.Array:
  """(..., K) -> (..., K + 1): -B, then the cumulative sums of widths 2B [m + (1 - K m) softmax]."""
  num_bins = raw.shape[-1]
  widths = MIN_BIN + (1.0 - MIN_BIN * num_bins) * jax.nn.softmax(raw, axis=-1)
  inner = jnp.cumsum(widths[..., :-1], axis=-1)
  edges = jnp.concatenate([jnp.zeros_like(raw[..., :1]), inner, jnp.ones_like(raw[..., :1])], -1)
  return bound * (2.0 * edges - 1.0)  # exact ends: the last knot is B, not a rounded sum


def knots(raw_widths: jax.Array, raw_heights: jax.Array, raw_derivatives: jax.Array,
          bound: float) -> Knots:
  """Knots of a spline on [-bound, bound] from unconstrained (..., K), (..., K), (..., K - 1)."""
  if raw_widths.shape[-1] * MIN_BIN >= 1.0:
    raise ValueError(f"{raw_widths.shape[-1]} bins leave no room above the minimum bin {MIN_BIN}")
  inner = jax.nn.softplus(raw_derivatives + _DERIVATIVE_SHIFT) + MIN_DERIVATIVE
  one = jnp.ones_like(inner[..., :1])
  return Knots(_positions(raw_widths, bound), _positions(raw_heights, bound),
               jnp.concatenate([one, inner, one], axis=-1))


def split_params(raw: jax.Array, num_bins: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(..., 3K - 1) -> (widths (..., K), heights (..., K), derivatives (..., K - 1))."""
  return raw[..., :num_bins], raw[..., num_bins:2 * num_bins], raw[..., 2 * num_bins:]


def _bin(values: jax.Array, edges: jax.Array) -> jax.Array:
  """The bin k with edges[k] <= v < edges[k + 1] (clipped to 0 .. K - 1), elementwise. For the few
  bins of a spline a count of the inner edges below v beats a binary search."""
  return jnp.sum(values[..., None] >= edges[..., 1:-1], axis=-1)


def _gather(array: jax.Array, index: jax.Array) -> jax.Array:
  return jnp.take_along_axis(array, index[..., None], axis=-1)[..., 0]


def _bin_terms(index, spline: Knots):
  x_k, x_k1 = _gather(spline.x, index), _gather(spline.x, index + 1)
  y_k, y_k1 = _gather(spline.y, index), _gather(spline.y, index + 1)
  d_k, d_k1 = _gather(spline.derivative, index), _gather(spline.derivative, index + 1)
  return x_k, x_k1 - x_k, y_k, y_k1 - y_k, d_k, d_k1


def _log_slope(xi, slope, d_k, d_k1):
  """log g'(x) at the position xi in a bin of slope s_k (eq. 5)."""
  between = xi * (1.0 - xi)
  numerator = slope**2 * (d_k1 * xi**2 + 2.0 * slope * between + d_k * (1.0 - xi) ** 2)
  denominator = slope + (d_k1 + d_k - 2.0 * slope) * between
  return jnp.log(numerator) - 2.0 * jnp.log(denominator)


def _inside(values: jax.Array, inside: jax.Array, low: jax.Array) -> jax.Array:
  """``values`` where inside the spline's interval, else its low end: a point outside takes no
  part in the spline (its output is the identity's), and one inside gets the full gradient
  (a clip would halve it at the interval's ends)."""
  return jnp.where(inside, values, low)


def forward(x: jax.Array, spline: Knots) -> tuple[jax.Array, jax.Array]:
  """(g(x), log g'(x)), elementwise; g is the identity (log g' = 0) outside [x_0, x_K]."""
  low, high = spline.x[..., 0], spline.x[..., -1]
  inside = (x >= low) & (x <= high)
  clipped = _inside(x, inside, low)
  x_k, width, y_k, height, d_k, d_k1 = _bin_terms(_bin(clipped, spline.x), spline)
  slope = height / width
  xi = (clipped - x_k) / width
  between = xi * (1.0 - xi)
  y = y_k + height * (slope * xi**2 + d_k * between) / (slope + (d_k1 + d_k - 2.0 * slope) * between)
  log_slope = _log_slope(xi, slope, d_k, d_k1)
  return jnp.where(inside, y, x), jnp.where(inside, log_slope, 0.0)


def inverse(y: jax.Array, spline: Knots) -> tuple[jax.Array, jax.Array]:
  """(g^{-1}(y), log g'(g^{-1}(y))), elementwise: the root in [0, 1] of the quadratic
  a xi^2 + b xi + c = 0 that eq. 4 gives for xi, in the form 2c / (-b - sqrt(b^2 - 4ac)), which
  does not cancel."""
  low, high = spline.y[..., 0], spline.y[..., -1]
  inside = (y >= low) & (y <= high)
  clipped = _inside(y, inside, low)
  x_k, width, y_k, height, d_k, d_k1 = _bin_terms(_bin(clipped, spline.y), spline)
  slope = height / width
  offset = (clipped - y_k) * (d_k1 + d_k - 2.0 * slope)
  a = height * (slope - d_k) + offset
  b = height * d_k - offset
  c = -slope * (clipped - y_k)
  discriminant = jnp.maximum(b**2 - 4.0 * a * c, 0.0)
  root = 2.0 * c / (-b - jnp.sqrt(discriminant))
  xi = jnp.where((root >= 0.0) & (root <= 1.0), root, jnp.clip(root, 0.0, 1.0))  # rounding only
  x = x_k + xi * width
  log_slope = _log_slope(xi, slope, d_k, d_k1)
  return jnp.where(inside, x, y), jnp.where(inside, log_slope, 0.0)
