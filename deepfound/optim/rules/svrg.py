"""SVRG: stochastic variance-reduced gradient (beyond the chapter), on the same gradient memory.

Instead of recomputing grad E_i at the snapshot on every step (two gradients per step), the
per-sample gradients at the snapshot are kept in the gradient memory of ``memory.py``, refreshed
every ``update_frequency`` steps (default: one epoch, n // batch_size steps); each step then costs
one sample gradient per batch element, and each refresh n.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepfound.optim import memory as memory_lib
from deepfound.optim.registry import RuleSpec, register_rule, snapshot_period
from deepfound.registry import Option, positive

# params -> (table of per-sample gradients at params, in the memory layout; their mean gradient).
RefreshFn = Callable[[optax.Params], tuple[Any, optax.Updates]]


class ScaleBySVRGState(NamedTuple):
  """State of ``scale_by_svrg``."""

  table: Any  # grad E_i at the snapshot: leaves (n, *param.shape) or (n, *param.shape[1:]) ("scalar")
  snapshot_gradient: optax.Updates  # mean of the stored gradients at the snapshot, like params
  count: jax.Array  # int32 scalar, updates done; the snapshot is refreshed when count % m == 0


def scale_by_svrg(
    num_samples: int, update_frequency: int | None = None, memory: str = "pytree",
    batch_size: int = 1,
) -> optax.GradientTransformationExtraArgs:
  """Replaces a sample gradient h = grad E_i(b) by h - G~_i + mean_j G~_j.

  G~ are the per-sample gradients at the snapshot b~, which is reset to the current iterate every
  ``update_frequency`` steps (m; default one epoch, n // batch_size), first at step 0.

  The update's extra arguments: ``index`` (int scalar, or (b,)); ``refresh_fn``, required:
  params -> (table, mean), every sample's stored gradient at params in the memory layout (leaves
  (n, *param.shape) for "pytree", the scales s_i, (n, *param.shape[1:]), for "scalar") and the
  mean of those gradients, shaped like params; it is called only at a refresh, inside
  ``lax.cond``. For the scalar layout also ``sample_scale`` and ``sample_features`` (see
  ``scale_by_sag``).
  """
  layout = memory_lib.get_layout(memory)
  period = snapshot_period(num_samples, batch_size, update_frequency)

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
    memory_lib.check_index(index, num_samples, None)  # batch_size only sets the default period
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
    batch_size: int = 1,
) -> optax.GradientTransformationExtraArgs:
  """SVRG: SGD on a control variate taken at a snapshot refreshed every m steps.

  With beta~ the snapshot and G~_i = grad E_i(beta~) kept in the gradient memory, for the
  sampled term i = i(l)::

      every m steps:  beta~ <- beta^(l),  G~_j <- grad E_j(beta~) for all j
      beta^(l+1) = beta^(l) - tau (grad E_i(beta^(l)) - G~_i + (1/n) sum_j G~_j)

  The direction is an unbiased estimate of grad E whose variance vanishes as beta^(l) and beta~
  approach the minimizer, so a constant step (of the order of 1/L_max) converges linearly on
  strongly convex sums. Each step costs b sample gradients, each refresh n.

  Args:
    learning_rate: tau, a number or a schedule of the step count.
    num_samples: n, the number of terms of the finite sum.
    update_frequency: m, the steps between snapshots; None: one epoch, n // batch_size.
    memory: ``"pytree"`` (any model) or ``"scalar"`` (linear models; see ``memory.py``).
    batch_size: number of indices per update; ``updates`` then carry a leading batch axis.

  Returns:
    ``optax.chain(scale_by_svrg(...), optax.scale_by_learning_rate(learning_rate))``: its
    ``update`` takes the sampled gradients, ``params`` and the extra arguments of
    ``scale_by_svrg`` (``index``, ``refresh_fn``, and for the scalar layout ``sample_scale``,
    ``sample_features``); its state is (``ScaleBySVRGState``, the learning rate's state).

  Example::

      opt = deepfound.optim.svrg(learning_rate=0.01, num_samples=n)
      refresh = lambda at: (jax.vmap(jax.grad(loss), (None, 0, 0))(at, x, y), jax.grad(full_loss)(at))
      updates, state = opt.update(grad_i, state, params, index=i, refresh_fn=refresh)

  Reference: Johnson, Zhang, "Accelerating stochastic gradient descent using predictive variance
  reduction", NeurIPS 2013.
  """
  return optax.chain(
      scale_by_svrg(num_samples, update_frequency, memory, batch_size),
      optax.scale_by_learning_rate(learning_rate),
  )


def _sample_gradients(steps: np.ndarray, c) -> np.ndarray:
  """b per step, plus the n gradients of each snapshot (the first at step 0)."""
  period = snapshot_period(c.num_samples, c.batch_size, c.options["svrg_frequency"])
  return steps * c.batch_size + c.num_samples * np.ceil(steps / period)


register_rule(RuleSpec(
    name="svrg", oracle="per_sample", needs_finite_sum=True, keeps_memory=True,
    build=lambda c: svrg(c.learning_rate, c.num_samples, c.options["svrg_frequency"], c.memory,
                         c.batch_size),
    summary="SVRG (Johnson and Zhang 2013): snapshot gradients kept in the memory",
    options=(Option("svrg_frequency", int, None,
                    "svrg, and games under optim.scheme=svre: steps between snapshots (default: one "
                    "epoch, n // batch_size)",
                    positive),),
    sample_gradients=_sample_gradients, stable_step="1/L_max",
))
