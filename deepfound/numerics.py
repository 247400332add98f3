"""Small array helpers that the problems and the update rules share (the layer below both)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def batch_sum(values: jax.Array) -> jax.Array:
  """Sum over the leading batch axis. For a batch of one it is a plain index: on CPU a reduction
  over an axis of size 1 is a separate kernel that costs more than the rest of a SAG step."""
  return values[0] if values.shape[0] == 1 else jnp.sum(values, axis=0)


def batch_mean(values: jax.Array) -> jax.Array:
  """Mean over the leading batch axis; a plain index for a batch of one (see ``batch_sum``)."""
  return values[0] if values.shape[0] == 1 else jnp.mean(values, axis=0)


def soft_threshold(values: jax.Array, threshold: jax.typing.ArrayLike) -> jax.Array:
  """The proximal map of threshold * ||.||_1: sign(v) max(|v| - threshold, 0)."""
  return jnp.sign(values) * jnp.maximum(jnp.abs(values) - threshold, 0.0)


@jax.custom_batching.custom_vmap
def any_run(flag: jax.Array) -> jax.Array:
  """``flag``; under vmap, whether it holds for any run. An unbatched predicate keeps a
  ``lax.cond`` a conditional under vmap, taken by all runs when one needs it, where a batched one
  would turn it into a select that computes both branches for every run."""
  return flag


@any_run.def_vmap
def _any_run_vmap(axis_size, in_batched, flag):
  del axis_size
  return (jnp.any(flag, axis=0) if in_batched[0] else flag), False
