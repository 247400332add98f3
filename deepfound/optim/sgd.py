"""Batch and stochastic gradient descent, sections 17.1.2 and 17.1.3."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from deepfound.optim.registry import RuleSpec, register_rule


class ProximalStepState(NamedTuple):
  count: jax.Array  # int32 (): steps taken, for a scheduled rate


def proximal_step(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """Follows an update u (already scaled by -tau_t) by the proximal step of an L1 term:
  the update becomes prox_{tau_t}(params + u) - params.

  The proximal map comes as the extra argument ``proximal_fn(params, step)`` (e.g. a linear
  problem's ``proximal``, soft thresholding by step * l1); without it the update passes through.
  Chained after ``optax.scale_by_learning_rate`` it makes SGD and SAGA proximal (composite
  objectives with an L1 part, scikit-learn's elastic net).
  """

  def init_fn(params):
    del params
    return ProximalStepState(jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, *, proximal_fn=None, **extra_args):
    del extra_args
    count = optax.safe_increment(state.count)
    if proximal_fn is None:
      return updates, ProximalStepState(count)
    if params is None:
      raise ValueError("proximal_step needs the params")
    rate = learning_rate(state.count) if callable(learning_rate) else learning_rate
    moved = optax.apply_updates(params, updates)
    stepped = proximal_fn(moved, rate)
    return jax.tree.map(lambda s, p: s - p, stepped, params), ProximalStepState(count)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def bgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """Batch gradient descent: beta <- beta - tau grad E(beta), with the full gradient (17.5).

  ``updates`` must be the full gradient. Converges for a constant 0 < tau < 2/L, L the Lipschitz
  constant of grad E; 1/L is the usual choice, and the rate is linear when E is strongly convex.
  State: that of ``optax.scale_by_learning_rate``: empty for a constant rate, the iteration
  count (``optax.ScaleByScheduleState``) for a schedule.
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate: optax.ScalarOrSchedule, proximal: bool = False
        ) -> optax.GradientTransformationExtraArgs:
  """Stochastic gradient descent: beta <- beta - tau_l grad E_i(l)(beta) (17.1.3).

  ``updates`` is the gradient of one sampled term (or the mean over a minibatch), an unbiased
  estimate of grad E (17.7). tau_l must decay, e.g. ``inverse_time_schedule`` (17.8). Works just
  as well on an infinite stream of samples (17.2). State: as ``bgd``'s; with ``proximal``, the
  step is followed by the proximal step of an L1 term (``proximal_step``; the update then takes
  the extra argument ``proximal_fn``).

  Example::

      opt = deepfound.optim.sgd(deepfound.optim.inverse_time_schedule(0.05, 100))
  """
  if proximal:
    return optax.chain(optax.scale_by_learning_rate(learning_rate), proximal_step(learning_rate))
  return optax.chain(optax.scale_by_learning_rate(learning_rate))


register_rule(RuleSpec(
    name="bgd", build=lambda c: bgd(c.learning_rate), oracle="full", needs_finite_sum=True,
    summary="batch gradient descent, full gradient (17.5); default step 1/L",
    sample_gradients=lambda steps, c: steps * c.num_samples,
    default_learning_rate=lambda constants: 1.0 / constants["lipschitz"],
))
register_rule(RuleSpec(
    name="sgd", build=lambda c: sgd(c.learning_rate, c.proximal), oracle="minibatch",
    lazy="sgd", proximal=True,
    summary="stochastic gradient descent (17.1.3), on finite sums and streams",
))
