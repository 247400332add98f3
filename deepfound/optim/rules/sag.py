"""Stochastic Average Gradient (SAG), section 17.1.5 of the chapter."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from deepfound.optim import memory as memory_lib
from deepfound.optim.registry import LazyForm, RuleSpec, register_rule
from deepfound.registry import Option


class ScaleBySAGState(NamedTuple):
  """State of ``scale_by_sag``."""

  table: Any  # per-sample memory G_i: leaves (n, *param.shape) ("pytree") or (n, *param.shape[1:]) ("scalar")
  gradient_sum: optax.Updates  # g = sum_i G_i (the stored part), shaped like params
  pending: memory_lib.PendingWrite  # last step's write into `table`, applied at the next update
  num_seen: jax.Array | None  # int32 scalar, distinct samples visited (None unless average_over_seen)


def scale_by_sag(
    num_samples: int,
    memory: str = "pytree",
    batch_size: int = 1,
    average_over_seen: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Replaces a sample gradient by the SAG direction g / n (17.1.5).

  With h = grad E_i(b) the gradient of the sampled term (the ``updates``), the iteration is::

      g   <- g - G_i + h
      G_i <- h
      direction = g / n        (or g / #samples seen so far, if ``average_over_seen``)

  Args:
    num_samples: n, the number of terms of the finite sum.
    memory: ``"pytree"`` (any model) or ``"scalar"`` (linear models; see ``memory.py``).
    batch_size: number of indices per update; ``updates`` then carry a leading batch axis.
    average_over_seen: divide by the number of distinct samples seen instead of n during the first
      pass, as scikit-learn does; avoids the small steps of the first epoch.

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Its ``update`` takes the extra keyword arguments
    ``index`` (int scalar, or (b,), in [0, n); a concrete bad index raises ``ValueError``, and
    ``checked_index`` checks a traced one) and, for the scalar layout, ``sample_scale`` (s_i,
    (b, *param.shape[1:])), ``sample_features`` (x_i, (b, p)) and optionally
    ``regularizer_gradient`` (the part of grad E_i that is not x_i s_i, e.g. l2 * params; see
    ``memory.read_batch``).
  """
  layout = memory_lib.get_layout(memory)

  def init_fn(params):
    table = layout.init_table(params, num_samples)
    if average_over_seen:
      # Rows never written hold NaN, which tells a first visit from a later one without a separate
      # flag array (whose scatter and gather would make the loop body slower on CPU).
      table = jax.tree.map(lambda t: jnp.full_like(t, jnp.nan), table)
    return ScaleBySAGState(
        table=table,
        gradient_sum=optax.tree.zeros_like(params),
        pending=memory_lib.empty_pending(table, batch_size),
        num_seen=jnp.zeros((), jnp.int32) if average_over_seen else None,
    )

  def update_fn(updates, state, params=None, *, index, sample_scale=None, sample_features=None,
                regularizer_gradient=None, **extra_args):
    del params, extra_args
    memory_lib.check_index(index, num_samples, batch_size)
    batch = memory_lib.read_batch(layout, updates, index, sample_scale, sample_features,
                                  regularizer_gradient)
    table, old_b, pending, is_first = memory_lib.exchange(
        state.table, state.pending, batch.index, batch.entries)
    if average_over_seen:
      unvisited = memory_lib.unvisited_rows(old_b)
      old_b = jax.tree.map(lambda o: jnp.where(jnp.isnan(o), 0.0, o), old_b)
      num_seen = state.num_seen + jnp.sum(jnp.logical_and(is_first, unvisited), dtype=jnp.int32)
      denominator = num_seen
    else:
      num_seen, denominator = None, num_samples
    delta = layout.total(memory_lib.masked_difference(pending.entries, old_b, is_first),
                         batch.features)
    gradient_sum = optax.tree.add(state.gradient_sum, delta)

    direction = jax.tree.map(
        lambda s, u: s / jnp.asarray(denominator, s.dtype) + u, gradient_sum, batch.unstored
    )
    return direction, ScaleBySAGState(table, gradient_sum, pending, num_seen)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sag(
    learning_rate: optax.ScalarOrSchedule,
    num_samples: int,
    memory: str = "pytree",
    batch_size: int = 1,
    average_over_seen: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """SAG: a step along the mean of the stored per-sample gradients (17.1.5).

  With G_i the gradient of term i stored at its last visit, g = sum_i G_i, and i(l) the sampled
  term::

      g      <- g - G_i(l) + grad E_i(l)(beta^(l))
      G_i(l) <- grad E_i(l)(beta^(l))
      beta^(l+1) = beta^(l) - tau g / n

  The chapter writes the step as "beta - tau a"; it is the step along g / n. For convergence tau
  should be of the order of 1/L; the linear rate on strongly convex sums is proven for
  tau = 1/(16 L_max) (L_max: largest per-sample Lipschitz constant), and 1/L_max works in practice.

  With ``memory="scalar"`` only the data part x_i s_i of each gradient is stored; a part common to
  all samples (the L2 term, passed as ``regularizer_gradient`` or recovered from the gradient) is
  taken at the current iterate instead of its stale stored copy: the same fixed point, and the
  variant scikit-learn uses. With ``memory="pytree"`` the iteration is the chapter's, verbatim.

  Args:
    learning_rate: tau, a number or a schedule of the step count.
    num_samples: n, the number of terms of the finite sum.
    memory: ``"pytree"`` (any model) or ``"scalar"`` (linear models; see ``memory.py``).
    batch_size: number of indices per update; ``updates`` then carry a leading batch axis.
    average_over_seen: divide by the number of distinct samples seen instead of n during the first
      pass, as scikit-learn does.

  Returns:
    ``optax.chain(scale_by_sag(...), optax.scale_by_learning_rate(learning_rate))``: its
    ``update`` takes the sampled gradients and the extra arguments of ``scale_by_sag`` (``index``,
    and for the scalar layout ``sample_scale``, ``sample_features``, ``regularizer_gradient``);
    its state is (``ScaleBySAGState``, the learning rate's state).

  Example::

      opt = deepfound.optim.sag(learning_rate=0.01, num_samples=n)
      state = opt.init(params)
      grad_i = jax.grad(loss)(params, x[i], y[i])
      updates, state = opt.update(grad_i, state, params, index=i)
      params = optax.apply_updates(params, updates)

  Reference: Schmidt, Le Roux, Bach, "Minimizing finite sums with the stochastic average
  gradient", Mathematical Programming, 2017.
  """
  return optax.chain(
      scale_by_sag(num_samples, memory, batch_size, average_over_seen),
      optax.scale_by_learning_rate(learning_rate),
  )


AVERAGE_OVER_SEEN = Option(
    "average_over_seen", bool, False,
    "sag: divide by the samples seen so far during the first pass (scikit-learn), not by n")

register_rule(RuleSpec(
    name="sag", oracle="per_sample", needs_finite_sum=True, keeps_memory=True,
    build=lambda c: sag(c.learning_rate, c.num_samples, c.memory, c.batch_size,
                        c.options["average_over_seen"]),
    summary="stochastic average gradient (17.1.5): the mean of stored per-sample gradients",
    options=(AVERAGE_OVER_SEEN,), stable_step="1/L_max",
    lazy=LazyForm(memory=True, seen_option=AVERAGE_OVER_SEEN.name),
    auto_learning_rate=lambda constants: 1.0 / constants["auto_lipschitz"],
))
