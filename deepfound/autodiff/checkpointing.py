"""Checkpointing a chain of L layers: trade recomputation for memory (end of section 17.2).

The chain is x_{l+1} = tanh(W_l x_l), l = 0..L-1, and the loss sum(x_L); its gradient with
respect to x_0 needs, in reverse mode, the values of every x_l. Three schemes, each built on
``lax.scan`` (XLA undoes ``jax.checkpoint`` on a Python-unrolled chain, so only scan boundaries
make the savings real):

* ``none``: one scan over the L layers; reverse mode keeps all L intermediate values.
* ``sqrt``: a scan over sqrt(L) segments whose body, a scan over sqrt(L) layers, is wrapped in
  ``jax.checkpoint``: only segment inputs are kept, each segment is recomputed once in the
  backward pass. Memory O(sqrt(L)), one extra forward pass. The segment length is the largest
  divisor of L not above sqrt(L): choose L with such a divisor (a prime L gets segments of 1).
* ``recursive``: bisection. A scan of length 2 over the two halves of the chain, each half handled
  the same way under ``jax.checkpoint``, down to segments of ``base`` layers. Memory O(log L)
  (one stored input per level), and each level recomputes its halves once: about log2(L / base)
  extra forward passes. Bisection stops at the first odd length, so L / base should be a power of
  2 (as in the benchmark); otherwise the last segment is stored in full.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

SCHEMES = ("none", "sqrt", "recursive")


def layer(x: jax.Array, weight: jax.Array) -> jax.Array:
  return jnp.tanh(weight @ x)


def _plain_chain(weights: jax.Array, x: jax.Array) -> jax.Array:
  """The whole chain, the weights as the scan's xs (their slices are the residuals reverse mode
  needs, so nothing is copied)."""
  return jax.lax.scan(lambda h, w: (layer(h, w), None), x, weights)[0]


def _scan_chain(weights: jax.Array, x: jax.Array, start, length: int):
  """Layers start .. start + length - 1, read from the full ``weights`` by index: slicing
  segments out of the weights at every level would copy L d^2 numbers in all."""
  step = lambda h, k: (layer(h, jax.lax.dynamic_index_in_dim(weights, start + k, keepdims=False)),  # noqa: E731
                       None)
  return jax.lax.scan(step, x, jnp.arange(length))[0]


def _sqrt_chain(weights: jax.Array, x: jax.Array) -> jax.Array:
  num_layers = weights.shape[0]
  segment = max(d for d in range(1, math.isqrt(num_layers) + 1) if num_layers % d == 0)
  body = jax.checkpoint(lambda h, k: (_scan_chain(weights, h, k * segment, segment), None))
  return jax.lax.scan(body, x, jnp.arange(num_layers // segment))[0]


def _recursive_chain(weights: jax.Array, x: jax.Array, start, length: int, base: int):
  """Layers start .. start + length - 1, by bisection down to ``base`` layers."""
  if length <= base or length % 2:
    return _scan_chain(weights, x, start, length)
  half = length // 2
  body = jax.checkpoint(
      lambda h, k: (_recursive_chain(weights, h, start + k * half, half, base), None))
  return jax.lax.scan(body, x, jnp.arange(2))[0]


def chain_loss(weights: jax.Array, x: jax.Array, scheme: str = "none", base: int = 2) -> jax.Array:
  """sum(x_L) for the chain of ``weights`` (L, d, d), evaluated under ``scheme``."""
  if scheme == "none":
    out = _plain_chain(weights, x)
  elif scheme == "sqrt":
    out = _sqrt_chain(weights, x)
  elif scheme == "recursive":
    out = _recursive_chain(weights, x, 0, weights.shape[0], base)
  else:
    raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
  return jnp.sum(out)


def input_gradient(scheme: str, base: int = 2):
  """x_0 -> d sum(x_L) / d x_0 under ``scheme``, as a function of (weights, x_0)."""
  return jax.grad(lambda weights, x: chain_loss(weights, x, scheme, base), argnums=1)


def temp_bytes(scheme: str, weights: jax.Array, x: jax.Array, base: int = 2) -> int:
  """Peak temporary memory of the compiled gradient, from XLA's memory analysis."""
  compiled = jax.jit(input_gradient(scheme, base)).lower(weights, x).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)
