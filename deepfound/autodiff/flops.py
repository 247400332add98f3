"""Floating-point operations counted on a jaxpr, loops included.

XLA's ``cost_analysis`` counts a loop body once; here a ``scan`` body counts ``length`` times.
Conventions: a ``dot_general`` or a convolution costs 2 flops per multiply-add; elementwise arithmetic and
transcendental primitives 1 flop per output element; a reduction 1 flop per input element; data
movement (reshape, broadcast, transpose, slicing, conversion) 0.
"""

from __future__ import annotations

import math

import jax

from deepfound.autodiff.primitives import CALL_JAXPR_PARAM

_FREE = frozenset({
    "reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims", "convert_element_type",
    "slice", "dynamic_slice", "dynamic_update_slice", "concatenate", "pad", "gather", "iota",
    "copy", "copy_p", "stop_gradient", "select_and_scatter_add", "device_put", "split",
    "random_bits", "random_seed", "random_wrap", "random_unwrap", "threefry2x32",
    "optimization_barrier",
})
_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin",
                         "reduce_prod", "cumsum"})


def _size(aval) -> int:
  return math.prod(getattr(aval, "shape", ()))


def jaxpr_flops(jaxpr) -> float:
  """Flops of one evaluation of ``jaxpr`` (a Jaxpr or ClosedJaxpr)."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in CALL_JAXPR_PARAM:
      total += jaxpr_flops(eqn.params[CALL_JAXPR_PARAM[name]])
    elif name == "scan":
      total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"])
    elif name == "cond":
      total += max(jaxpr_flops(branch) for branch in eqn.params["branches"])
    elif name == "while":
      raise ValueError("a while loop has no static trip count; count it as a scan")
    elif name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      contracted = math.prod(lhs_shape[a] for a in lhs_contract)
      total += 2.0 * _size(eqn.outvars[0].aval) * contracted
    elif name == "conv_general_dilated":
      rhs_shape = eqn.invars[1].aval.shape  # kernel; its input-feature dimension is per group
      spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
      per_output = math.prod(rhs_shape[d] for d in spec[1:])
      total += 2.0 * _size(eqn.outvars[0].aval) * per_output
    elif name in _REDUCTIONS:
      total += _size(eqn.invars[0].aval)
    elif name not in _FREE:
      total += sum(_size(v.aval) for v in eqn.outvars)
  return total


def flops(fn, *args) -> float:
  """Flops of ``fn(*args)``, counted on its jaxpr."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args))
