"""Local derivatives of the primitives the graph may hold: enough for MLPs with relu, sigmoid and
tanh, softmax, and the logistic and cross-entropy losses.

For a node theta_r = g_r(theta_p, ...), ``tangent`` gives d theta_r from the parents' tangents
(forward mode, 17.14) and ``cotangents`` gives, for each parent p, the contribution
bar theta_r * d g_r / d theta_p (reverse mode, 17.15). ``None`` stands for a zero. Elementwise
binary primitives may see a scalar operand next to an array (jaxpr literals); its cotangent is
summed back to a scalar.
"""

from __future__ import annotations

import string

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Primitives whose outputs carry no derivative (booleans, integers, rounding, stop_gradient).
NO_DERIVATIVE = frozenset({
    "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "is_finite", "sign", "floor", "ceil",
    "round", "stop_gradient", "iota", "argmax", "argmin",
})

# d out / d x for elementwise unary primitives, from the input x and the output y.
_UNARY = {
    "neg": lambda x, y, p: -jnp.ones_like(x),
    "exp": lambda x, y, p: y,
    "exp2": lambda x, y, p: y * np.log(2.0),
    "expm1": lambda x, y, p: y + 1.0,
    "log": lambda x, y, p: 1.0 / x,
    "log1p": lambda x, y, p: 1.0 / (1.0 + x),
    "tanh": lambda x, y, p: 1.0 - y * y,
    "logistic": lambda x, y, p: y * (1.0 - y),
    "sin": lambda x, y, p: jnp.cos(x),
    "cos": lambda x, y, p: -jnp.sin(x),
    "abs": lambda x, y, p: jnp.sign(x),
    "sqrt": lambda x, y, p: 0.5 / y,
    "rsqrt": lambda x, y, p: -0.5 * y / x,
    "square": lambda x, y, p: 2.0 * x,
    "integer_pow": lambda x, y, p: p["y"] * x ** (p["y"] - 1),
    "copy": lambda x, y, p: jnp.ones_like(x),
    "copy_p": lambda x, y, p: jnp.ones_like(x),
}

SUPPORTED = sorted(
    set(_UNARY) | NO_DERIVATIVE | {
        "add", "add_any", "sub", "mul", "div", "max", "min", "select_n", "dot_general",
        "reduce_sum", "reduce_max", "reduce_min", "broadcast_in_dim", "reshape", "squeeze",
        "expand_dims", "transpose", "convert_element_type", "slice",
    })


class UnsupportedPrimitiveError(NotImplementedError):
  """The graph holds a primitive without a derivative rule here."""

  def __init__(self, name: str):
    super().__init__(f"no derivative rule for primitive {name!r} (the supported ones are listed "
                     "in deepfound.autodiff.SUPPORTED)")


def _unbroadcast(cotangent, shape):
  """Sums a cotangent back to the shape of an operand that was broadcast (a scalar literal, or a
  size-1 axis: jaxpr binary primitives broadcast both)."""
  shape = tuple(shape)
  if cotangent is None or cotangent.shape == shape:
    return cotangent
  if len(shape) < cotangent.ndim:
    cotangent = jnp.sum(cotangent, axis=tuple(range(cotangent.ndim - len(shape))))
  axes = tuple(a for a, (s, c) in enumerate(zip(shape, cotangent.shape, strict=True))
               if s == 1 and c != 1)
  return jnp.sum(cotangent, axis=axes, keepdims=True).reshape(shape)


def _max_indicator(x, y):
  """d max(x, y) / dx: 1 where x wins, 1/2 at ties (as JAX does)."""
  return jnp.where(x > y, 1.0, jnp.where(x == y, 0.5, 0.0)).astype(jnp.result_type(x))


def _dot_letters(params, lhs_ndim, rhs_ndim):
  """einsum subscripts (lhs, rhs, out) of a dot_general."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = params["dimension_numbers"]
  letters = iter(string.ascii_letters)
  lhs = [next(letters) for _ in range(lhs_ndim)]
  rhs = [None] * rhs_ndim
  for l_axis, r_axis in zip(lhs_contract, rhs_contract, strict=True):
    rhs[r_axis] = lhs[l_axis]
  for l_axis, r_axis in zip(lhs_batch, rhs_batch, strict=True):
    rhs[r_axis] = lhs[l_axis]
  rhs = [axis if axis is not None else next(letters) for axis in rhs]
  out = ([lhs[a] for a in lhs_batch]
         + [lhs[a] for a in range(lhs_ndim) if a not in lhs_contract and a not in lhs_batch]
         + [rhs[a] for a in range(rhs_ndim) if a not in rhs_contract and a not in rhs_batch])
  return "".join(lhs), "".join(rhs), "".join(out)


def _expand_reduced(value, axes, ndim):
  """Puts back the reduced ``axes`` (as size 1) so that ``value`` broadcasts against the input."""
  shape = list(value.shape)
  for axis in sorted(axes):
    shape.insert(axis, 1)
  return value.reshape(shape) if ndim else value


def tangent(node, parent_values, parent_tangents, out):
  """d theta_r given the parents' tangents (forward mode)."""
  name, params = node.primitive.name, node.params
  if (all(t is None for t in parent_tangents) or name in NO_DERIVATIVE
      or not jnp.issubdtype(out.dtype, jnp.floating)):
    return None
  zero = lambda k: jnp.zeros_like(parent_values[k]) if parent_tangents[k] is None else (  # noqa: E731
      parent_tangents[k])
  if name in _UNARY:
    return _UNARY[name](parent_values[0], out, params) * parent_tangents[0]
  if name in ("add", "add_any", "sub"):
    a, b = zero(0), zero(1)
    return jnp.broadcast_to(a + b if name != "sub" else a - b, out.shape)
  if name == "mul":
    x, y = parent_values
    return jnp.broadcast_to(zero(0) * y + x * zero(1), out.shape)
  if name == "div":
    x, y = parent_values
    return jnp.broadcast_to(zero(0) / y - out * zero(1) / y, out.shape)
  if name in ("max", "min"):
    x, y = parent_values
    first = _max_indicator(x, y) if name == "max" else _max_indicator(-x, -y)
    return jnp.broadcast_to(first * zero(0) + (1.0 - first) * zero(1), out.shape)
  if name == "select_n":
    cases = [jnp.broadcast_to(zero(k), out.shape) for k in range(1, len(parent_values))]
    return lax.select_n(parent_values[0], *cases)
  if name == "dot_general":
    lhs, rhs, result = _dot_letters(params, parent_values[0].ndim, parent_values[1].ndim)
    spec = f"{lhs},{rhs}->{result}"
    terms = []
    if parent_tangents[0] is not None:
      terms.append(jnp.einsum(spec, parent_tangents[0], parent_values[1]))
    if parent_tangents[1] is not None:
      terms.append(jnp.einsum(spec, parent_values[0], parent_tangents[1]))
    return sum(terms).astype(out.dtype)
  if name in ("reduce_sum", "reduce_max", "reduce_min", "broadcast_in_dim", "reshape", "squeeze",
              "expand_dims", "transpose", "convert_element_type", "slice"):
    if name in ("reduce_max", "reduce_min"):
      x = parent_values[0]
      chosen = (x == _expand_reduced(out, params["axes"], x.ndim)).astype(x.dtype)
      chosen = chosen / jnp.sum(chosen, axis=params["axes"], keepdims=True)
      return jnp.sum(chosen * parent_tangents[0], axis=params["axes"])
    return node.primitive.bind(parent_tangents[0], **params)  # these maps are linear
  raise UnsupportedPrimitiveError(name)


def cotangents(node, parent_values, out, cotangent, active):
  """For each parent: bar theta_r * d g_r / d theta_p, or None (reverse mode).

  ``active[k]`` says whether parent k depends on an input; inactive parents get None.
  """
  name, params = node.primitive.name, node.params
  result = [None] * len(parent_values)
  if name in NO_DERIVATIVE or not jnp.issubdtype(out.dtype, jnp.floating):
    return result
  shapes = [np.shape(v) for v in parent_values]
  if name in _UNARY:
    result[0] = cotangent * _UNARY[name](parent_values[0], out, params)
  elif name in ("add", "add_any", "sub"):
    result = [cotangent, -cotangent if name == "sub" else cotangent]
  elif name == "mul":
    x, y = parent_values
    result = [cotangent * y, cotangent * x]
  elif name == "div":
    x, y = parent_values
    result = [cotangent / y, -cotangent * out / y]
  elif name in ("max", "min"):
    x, y = parent_values
    first = _max_indicator(x, y) if name == "max" else _max_indicator(-x, -y)
    result = [cotangent * first, cotangent * (1.0 - first)]
  elif name == "select_n":
    which = parent_values[0]
    result = [None] + [jnp.where(which == (k - 1) if which.dtype != jnp.bool_ else
                                 which == bool(k - 1), cotangent, 0.0)
                       for k in range(1, len(parent_values))]
  elif name == "dot_general":
    lhs, rhs, out_letters = _dot_letters(params, parent_values[0].ndim, parent_values[1].ndim)
    if active[0]:
      result[0] = jnp.einsum(f"{out_letters},{rhs}->{lhs}", cotangent, parent_values[1])
    if active[1]:
      result[1] = jnp.einsum(f"{out_letters},{lhs}->{rhs}", cotangent, parent_values[0])
  elif name == "reduce_sum":
    x = parent_values[0]
    result[0] = jnp.broadcast_to(_expand_reduced(cotangent, params["axes"], x.ndim), x.shape)
  elif name in ("reduce_max", "reduce_min"):
    x = parent_values[0]
    chosen = (x == _expand_reduced(out, params["axes"], x.ndim)).astype(x.dtype)
    chosen = chosen / jnp.sum(chosen, axis=params["axes"], keepdims=True)
    result[0] = chosen * _expand_reduced(cotangent, params["axes"], x.ndim)
  elif name == "broadcast_in_dim":
    x = parent_values[0]
    kept = params["broadcast_dimensions"]
    summed = tuple(a for a in range(cotangent.ndim) if a not in kept)
    stretched = tuple(out_axis for in_axis, out_axis in enumerate(kept)
                      if x.shape[in_axis] == 1 and cotangent.shape[out_axis] != 1)
    reduced = jnp.sum(cotangent, axis=summed + stretched, keepdims=True)
    result[0] = reduced.reshape(x.shape)
  elif name in ("reshape", "squeeze", "expand_dims"):
    result[0] = cotangent.reshape(shapes[0])
  elif name == "transpose":
    result[0] = jnp.transpose(cotangent, np.argsort(params["permutation"]))
  elif name == "convert_element_type":
    result[0] = cotangent.astype(parent_values[0].dtype)
  elif name == "slice":
    if params.get("strides") not in (None, (1,) * len(shapes[0])):
      raise UnsupportedPrimitiveError("slice with strides")
    padding = [(start, size - limit, 0) for start, limit, size in
               zip(params["start_indices"], params["limit_indices"], shapes[0], strict=True)]
    result[0] = jax.lax.pad(cotangent, jnp.zeros((), cotangent.dtype), padding)
  else:
    raise UnsupportedPrimitiveError(name)
  return [None if not active[k] or c is None or not jnp.issubdtype(
      parent_values[k].dtype, jnp.floating) else _unbroadcast(c, shapes[k]).astype(
      parent_values[k].dtype) for k, c in enumerate(result)]


def evaluate(node, parent_values):
  """theta_r = g_r(parents): the primitive itself."""
  return node.primitive.bind(*parent_values, **node.params)


