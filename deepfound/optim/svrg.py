"""SVRG: stochastic variance-reduced gradient (beyond the chapter), on the same gradient memory.

Instead of recomputing grad E_i at the snapshot on every step (two gradients per step), the
per-sample gradients at the snapshot are kept in the gradient memory of ``memory.py``, refreshed
every ``update_frequency`` steps; each step then costs one sample gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from deepfound.optim import memory as memory_lib

# params -> (table of per-sample gradients at params, in the memory layout; their mean gradient).
RefreshFn = Callable[[optax.Params], tuple[Any, optax.Updates]]


class ScaleBySVRGState(NamedTuple):
  """State of ``scale_by_svrg``."""

  table: Any  # grad E_i at the snapshot: leaves (n, *param.shape) or (n, *param.shape[1:]) ("scalar")
  snapshot_gradient: optax.Updates  # mean of the stored gradients at the snapshot, like params
  count: jax.Array  # int32 scalar, updates done; the snapshot is refreshed when count % m == 0


def scale_by_svrg(
    num_samples: int, update_frequency: int | None = None, memory: str = "pytree"
) -> optax.GradientTransformationExtraArgs:
  """Replaces a sample gradient h = grad E_i(b) by h - G~_i + mean_j G~_j.

  G~ are the per-sample gradients at the snapshot b~, which is reset to the current iterate every
  ``update_frequency`` (m, default n) steps, first at step 0. The update's extra arguments are
  ``index``, ``refresh_fn`` (params -> (table, mean gradient), called only at a refresh, inside
  ``lax.cond``) and, for the scalar layout, ``sample_scale`` and ``sample_features``.
  """
  layout = memory_lib.get_layout(memory)
  period = num_samples if update_frequency is None else update_frequency

  def init_fn(params):
    return ScaleBySVRGState(
        table=layout.init_table(params, num_samples),
        snapshot_gradient=optax.tree.zeros_like(params),
        count=jnp.zeros((), jnp.int32),
    )

  def update_fn(updates, state, params=None, *, index, refresh_fn: RefreshFn, sample_scale=None,
                sample_features=None, regularizer_gradient=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("scale_by_svrg needs params (the snapshot is taken from them)")
    batch = memory_lib.read_batch(layout, updates, index, sample_scale, sample_features,
                                  regularizer_gradient)
    table, snapshot_gradient = jax.lax.cond(
        state.count % period == 0,
        lambda: refresh_fn(params),
        lambda: (state.table, state.snapshot_gradient),
    )
    new_total = layout.total(batch.entries, batch.features)
    old_total = layout.total(memory_lib.gather(table, batch.index), batch.features)
    size = batch.index.shape[0]
    direction = jax.tree.map(
        lambda new, old, mean, u: (new - old) / size + mean + u,
        new_total, old_total, snapshot_gradient, batch.unstored,
    )
    return direction, ScaleBySVRGState(table, snapshot_gradient, optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def svrg(
    learning_rate: optax.ScalarOrSchedule,
    num_samples: int,
    update_frequency: int | None = None,
    memory: str = "pytree",
) -> optax.GradientTransformationExtraArgs:
  """SVRG: beta <- beta - tau (h - G~_i + mean G~), snapshot refreshed every m steps.

  Reference: Johnson, Zhang, "Accelerating stochastic gradient descent using predictive variance
  reduction", NeurIPS 2013.
  """
  return optax.chain(
      scale_by_svrg(num_samples, update_frequency, memory),
      optax.scale_by_learning_rate(learning_rate),
  )
