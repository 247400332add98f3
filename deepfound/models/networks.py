"""Feedforward networks f = f_{L-1} o ... o f_0 with f_l(x) = lambda(B_l x + b_l) (17.3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from deepfound.models.activations import ACTIVATIONS


class MLP(nnx.Module):
  """Fully connected layers of the given ``sizes`` (inputs first, outputs last), with
  ``activation`` after every layer but the last, whose outputs are the scores.

  With ``pieces`` = k > 1 the hidden units are maxout units (Goodfellow et al. 2013) instead:
  each is the largest of k affine functions of the layer's input, so a hidden layer of width b
  computes b k affine maps and ``activation`` is not used.

  ``batch_norm``: each hidden layer's pre-activations are standardized over the batch (every
  axis but the last), then scaled and shifted by learned ``gamma`` and ``beta`` (Ioffe and
  Szegedy 2015, in training mode: a call's own batch statistics, also when sampling; the shift
  replaces the hidden layers' biases). ``init_stddev``: weights drawn from N(0, sd^2) and biases
  0 (PacGAN's 2-D networks: 0.02), instead of flax's LeCun normal.
  """

  def __init__(self, sizes: Sequence[int], activation: str = "relu", use_bias: bool = True, *,
               pieces: int = 1, batch_norm: bool = False, init_stddev: float | None = None,
               rngs: nnx.Rngs):
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown activation {activation!r}; expected one of "
                       f"{', '.join(ACTIVATIONS)}")
    if pieces < 1:
      raise ValueError(f"pieces must be >= 1, got {pieces}")
    if init_stddev is not None and not init_stddev > 0:
      raise ValueError(f"init_stddev must be > 0 or None, got {init_stddev}")
    self.activation, self.pieces = activation, pieces
    widths = [b * pieces for b in sizes[1:-1]] + [sizes[-1]]
    init = {} if init_stddev is None else dict(kernel_init=nnx.initializers.normal(init_stddev))
    self.layers = nnx.List([
        nnx.Linear(a, b, use_bias=use_bias and not (batch_norm and i < len(widths) - 1),
                   rngs=rngs, **init)
        for i, (a, b) in enumerate(zip(sizes[:-1], widths, strict=True))])
    self.norms = nnx.List([BatchStandardize(b) for b in widths[:-1]] if batch_norm else [])

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers[:-1]):
      x = layer(x)
      if self.norms:
        x = self.norms[i](x)
      if self.pieces > 1:
        x = x.reshape(*x.shape[:-1], -1, self.pieces).max(axis=-1)
      else:
        x = ACTIVATIONS[self.activation](x)
    return self.layers[-1](x)


class BatchStandardize(nnx.Module):
  """x standardized over every axis but the last (the batch's own mean and variance), then
  gamma x + beta with learned gamma (ones at the start) and beta (zeros)."""

  EPSILON = 1e-5

  def __init__(self, features: int):
    self.gamma = nnx.Param(jnp.ones((features,)))
    self.beta = nnx.Param(jnp.zeros((features,)))

  def __call__(self, x: jax.Array) -> jax.Array:
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    variance = jnp.mean(jnp.square(x - mean), axis=axes)
    return (x - mean) * jax.lax.rsqrt(variance + self.EPSILON) * self.gamma + self.beta


def perceptron(num_features: int, *, rngs: nnx.Rngs) -> MLP:
  """One layer, one output, no bias: the score <x, w> whose sigmoid is P(y = +1 | x) (17.3.2).
  Trained with the logistic loss it is exactly the logistic regression of section 17.1 (whose
  model has no intercept either)."""
  return MLP([num_features, 1], use_bias=False, rngs=rngs)


class CNN(nnx.Module):
  """A small convolutional net for images (H, W, C): two 3x3 convolutions with relu, each
  followed by 2x2 average pooling, then a dense layer to the class scores (17.3.3)."""

  def __init__(self, image_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (8, 16),
               *, rngs: nnx.Rngs):
    height, width, in_channels = image_shape
    self.convs = nnx.List([
        nnx.Conv(a, b, kernel_size=(3, 3), padding="SAME", rngs=rngs)
        for a, b in zip([in_channels, *channels[:-1]], channels, strict=True)])
    pooled = (height // 2 ** len(channels)) * (width // 2 ** len(channels)) * channels[-1]
    self.dense = nnx.Linear(pooled, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv in self.convs:
      x = nnx.avg_pool(jax.nn.relu(conv(x)), window_shape=(2, 2), strides=(2, 2))
    return self.dense(x.reshape(*x.shape[:-3], -1))


def split(model: nnx.Module):
  """(graphdef, params, apply) with apply(params, x) -> scores, a pure function of params."""
  graphdef, params = nnx.split(model, nnx.Param)

  def apply(params, x):
    return nnx.merge(graphdef, params)(x)

  return graphdef, params, apply
