"""Backpropagation on a linear computational graph (17.12-17.13): a feedforward chain
x_{l+1} = f_l(x_l, beta_l), l = 0..L-1, then a scalar loss of x_L.

The forward pass keeps every x_l; the backward pass starts from bar x_L = grad loss(x_L) and
applies each layer's adjoint Jacobian, (bar x_l, bar beta_l) = [d f_l(x_l, beta_l)]^T bar x_{l+1},
from the last layer to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

Layer = Callable[[jax.Array, object], jax.Array]  # (x_l, beta_l) -> x_{l+1}


def forward_pass(layers: Sequence[Layer], params: Sequence, x: jax.Array) -> list[jax.Array]:
  """[x_0, x_1, ..., x_L]: every intermediate value, kept for the backward pass."""
  values = [x]
  for layer, beta in zip(layers, params, strict=True):
    values.append(layer(values[-1], beta))
  return values


def backward_pass(layers: Sequence[Layer], params: Sequence, values: list[jax.Array],
                  output_adjoint: jax.Array) -> tuple[list, jax.Array]:
  """Per-layer parameter gradients and bar x_0, from bar x_L, one adjoint Jacobian per layer."""
  adjoint, grads = output_adjoint, [None] * len(layers)
  for index in reversed(range(len(layers))):
    _, vjp = jax.vjp(layers[index], values[index], params[index])
    adjoint, grads[index] = vjp(adjoint)
  return grads, adjoint


def chain_gradient(layers: Sequence[Layer], params: Sequence, x: jax.Array,
                   loss: Callable[[jax.Array], jax.Array]) -> tuple[list, jax.Array]:
  """d loss(x_L) / d beta_l for every layer, and d loss / d x_0."""
  values = forward_pass(layers, params, x)
  return backward_pass(layers, params, values, jax.grad(loss)(values[-1]))
