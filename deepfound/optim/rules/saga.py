"""SAGA: the unbiased variant of SAG (beyond the chapter), on the same gradient memory."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from deepfound.optim import memory as memory_lib
from deepfound.optim.registry import LazyForm, RuleSpec, register_rule
from deepfound.optim.rules.sgd import proximal_step


class ScaleBySAGAState(NamedTuple):
  """State of ``scale_by_saga``."""

  table: Any  # per-sample memory G_i: leaves (n, *param.shape) ("pytree") or (n, *param.shape[1:]) ("scalar")
  gradient_sum: optax.Updates  # g = sum_i G_i (the stored part), shaped like params
  pending: memory_lib.PendingWrite  # last step's write into `table`, applied at the next update


def scale_by_saga(
    num_samples: int, memory: str = "pytree", batch_size: int = 1
) -> optax.GradientTransformationExtraArgs:
  """Replaces a sample gradient h = grad E_i(b) by the SAGA direction.

  ::

      direction = h - G_i + g / n      (g before the update: an unbiased estimate of grad E)
      g   <- g - G_i + h
      G_i <- h

  With a minibatch, h - G_i is averaged over the batch (a sample repeated within the batch
  enters the memory once).

  Args:
    num_samples: n, the number of terms of the finite sum.
    memory: ``"pytree"`` (any model) or ``"scalar"`` (linear models; see ``memory.py``).
    batch_size: number of indices per update; ``updates`` then carry a leading batch axis.

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Its ``update`` takes the extra keyword arguments
    ``index`` (int scalar, or (b,), in [0, n); a concrete bad index raises ``ValueError``) and,
    for the scalar layout, ``sample_scale`` (s_i, (b, *param.shape[1:])), ``sample_features``
    (x_i, (b, p)) and optionally ``regularizer_gradient`` (the part of grad E_i that is not
    x_i s_i, e.g. l2 * params), as for ``scale_by_sag``.
  """
  layout = memory_lib.get_layout(memory)

  def init_fn(params):
    table = layout.init_table(params, num_samples)
    return ScaleBySAGAState(
        table=table,
        gradient_sum=optax.tree.zeros_like(params),
        pending=memory_lib.empty_pending(table, batch_size),
    )

  def update_fn(updates, state, params=None, *, index, sample_scale=None, sample_features=None,
                regularizer_gradient=None, **extra_args):
    del params, extra_args
    memory_lib.check_index(index, num_samples, batch_size)
    batch = memory_lib.read_batch(layout, updates, index, sample_scale, sample_features,
                                  regularizer_gradient)
    size = batch.index.shape[0]
    table, old_b, pending, is_first = memory_lib.exchange(
        state.table, state.pending, batch.index, batch.entries)
    new_total = layout.total(pending.entries, batch.features)
    old_total = layout.total(old_b, batch.features)
    direction = jax.tree.map(
        lambda new, old, g, u: (new - old) / size + g / num_samples + u,
        new_total, old_total, state.gradient_sum, batch.unstored,
    )
    delta = layout.total(memory_lib.masked_difference(pending.entries, old_b, is_first),
                         batch.features)
    gradient_sum = optax.tree.add(state.gradient_sum, delta)
    return direction, ScaleBySAGAState(table, gradient_sum, pending)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def saga(
    learning_rate: optax.ScalarOrSchedule,
    num_samples: int,
    memory: str = "pytree",
    batch_size: int = 1,
    proximal: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """SAGA: the unbiased variant of SAG, on the same gradient memory.

  With G_i the gradient of term i stored at its last visit, g = sum_i G_i, h = grad E_i(l)(beta)
  for the sampled term i = i(l)::

      beta^(l+1) = beta^(l) - tau (h - G_i + g / n)      (g before the update)
      g   <- g - G_i + h
      G_i <- h

  h - G_i + g / n is an unbiased estimate of grad E (SAG's direction, g / n after the update, is
  not); the step size is about 1/(3 L_max) in theory. With ``proximal``, each step is followed
  by the proximal step of an L1 term (the extra argument ``proximal_fn``, see
  ``sgd.proximal_step``): SAGA on a composite objective, as scikit-learn's
  ``LogisticRegression(penalty="elasticnet", solver="saga")``.

  Args:
    learning_rate: tau, a number or a schedule of the step count.
    num_samples: n, the number of terms of the finite sum.
    memory: ``"pytree"`` (any model) or ``"scalar"`` (linear models; see ``memory.py``).
    batch_size: number of indices per update; ``updates`` then carry a leading batch axis.
    proximal: follow each step by the proximal step of an L1 term.

  Returns:
    ``optax.chain(scale_by_saga(...), optax.scale_by_learning_rate(learning_rate))``, then
    ``proximal_step`` if ``proximal``: its ``update`` takes the sampled gradients and the extra
    arguments of ``scale_by_saga`` (``index``, and for the scalar layout ``sample_scale``,
    ``sample_features``, ``regularizer_gradient``; ``proximal_fn`` when proximal); its state
    starts with a ``ScaleBySAGAState``.

  Example::

      opt = deepfound.optim.saga(learning_rate=0.01, num_samples=n)
      updates, state = opt.update(grad_i, state, params, index=i)

  Reference: Defazio, Bach, Lacoste-Julien, "SAGA: a fast incremental gradient method with
  support for non-strongly convex composite objectives", NeurIPS 2014.
  """
  parts = [scale_by_saga(num_samples, memory, batch_size),
           optax.scale_by_learning_rate(learning_rate)]
  if proximal:
    parts.append(proximal_step(learning_rate))
  return optax.chain(*parts)


def saga_auto_step(constants) -> float:
  """scikit-learn's SAGA step, 1 / (2 L + min(2 n l2, L)), L from ``constants["auto_lipschitz"]``
  (Defazio et al. 2014)."""
  lipschitz = constants["auto_lipschitz"]
  return 1.0 / (2.0 * lipschitz + min(2.0 * constants["num_samples"] * constants["l2"], lipschitz))


register_rule(RuleSpec(
    name="saga", oracle="per_sample", needs_finite_sum=True, keeps_memory=True,
    build=lambda c: saga(c.learning_rate, c.num_samples, c.memory, c.batch_size, c.proximal),
    lazy=LazyForm(memory=True, unbiased=True), proximal=True, auto_learning_rate=saga_auto_step,
    summary="SAGA, the unbiased variant of SAG (Defazio et al. 2014), on the same memory",
    stable_step="1/L_max",
))
