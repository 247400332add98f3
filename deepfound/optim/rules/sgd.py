"""Batch and stochastic gradient descent, sections 17.1.2 and 17.1.3."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from deepfound.optim.registry import LazyForm, RuleSpec, register_rule


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
  """Batch gradient descent, with the full gradient (17.5).

  ::

      beta^(l+1) = beta^(l) - tau_l grad E(beta^(l))

  Converges for a constant 0 < tau < 2/L, L the Lipschitz constant of grad E; 1/L is the usual
  choice, and the rate is linear when E is strongly convex.

  Args:
    learning_rate: tau, a number or a schedule of the step count.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes the full gradient
    grad E as ``updates``. Its state is that of ``optax.scale_by_learning_rate``: empty for a
    constant rate, the iteration count (``optax.ScaleByScheduleState``) for a schedule.

  Example::

      opt = deepfound.optim.bgd(1.0 / lipschitz)
      updates, state = opt.update(jax.grad(full_loss)(params), opt.init(params))

  Reference: Cauchy, "Methode generale pour la resolution des systemes d'equations simultanees",
  1847.
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate: optax.ScalarOrSchedule, proximal: bool = False
        ) -> optax.GradientTransformationExtraArgs:
  """Stochastic gradient descent, on one sampled term (or a minibatch) per step (17.1.3).

  ::

      beta^(l+1) = beta^(l) - tau_l grad E_i(l)(beta^(l))
      beta^(l+1) = prox_{tau_l}(beta^(l) - tau_l grad E_i(l)(beta^(l)))        (proximal)

  with prox_tau the proximal map of tau l1 ||.||_1 (soft thresholding). grad E_i(l) is an
  unbiased estimate of grad E (17.7); tau_l must decay, sum_l tau_l = infinity
  and sum_l tau_l^2 < infinity, e.g. ``inverse_time_schedule`` (17.8). It works just as well on
  an infinite stream of samples (17.2).

  Args:
    learning_rate: tau_l, a number or a schedule of the step count.
    proximal: follow each step by the proximal step of an L1 term (``proximal_step``; the update
      then takes the extra argument ``proximal_fn``).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes the gradient of the
    sampled term (or the minibatch mean) as ``updates``. Its state is ``bgd``'s, followed by a
    ``ProximalStepState`` when ``proximal``.

  Example::

      opt = deepfound.optim.sgd(deepfound.optim.inverse_time_schedule(0.05, 100))

  Reference: Robbins, Monro, "A stochastic approximation method", Annals of Mathematical
  Statistics, 1951.
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
    lazy=LazyForm(), proximal=True,
    summary="stochastic gradient descent (17.1.3), on finite sums and streams",
))
