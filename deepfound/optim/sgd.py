"""Batch and stochastic gradient descent, sections 17.1.2 and 17.1.3."""

from __future__ import annotations

import optax

from deepfound.optim.registry import RuleSpec, register_rule


def bgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """Batch gradient descent: beta <- beta - tau grad E(beta), with the full gradient (17.5).

  ``updates`` must be the full gradient. Converges for a constant 0 < tau < 2/L, L the Lipschitz
  constant of grad E; 1/L is the usual choice, and the rate is linear when E is strongly convex.
  State: that of ``optax.scale_by_learning_rate``: empty for a constant rate, the iteration
  count (``optax.ScaleByScheduleState``) for a schedule.
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """Stochastic gradient descent: beta <- beta - tau_l grad E_i(l)(beta) (17.1.3).

  ``updates`` is the gradient of one sampled term (or the mean over a minibatch), an unbiased
  estimate of grad E (17.7). tau_l must decay, e.g. ``inverse_time_schedule`` (17.8). Works just
  as well on an infinite stream of samples (17.2). State: as ``bgd``'s.

  Example::

      opt = deepfound.optim.sgd(deepfound.optim.inverse_time_schedule(0.05, 100))
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate))


register_rule(RuleSpec(
    name="bgd", build=lambda c: bgd(c.learning_rate), oracle="full", needs_finite_sum=True,
    summary="batch gradient descent, full gradient (17.5); default step 1/L",
    sample_gradients=lambda steps, c: steps * c.num_samples,
    default_learning_rate=lambda constants: 1.0 / constants["lipschitz"],
))
register_rule(RuleSpec(
    name="sgd", build=lambda c: sgd(c.learning_rate), oracle="minibatch",
    summary="stochastic gradient descent (17.1.3), on finite sums and streams",
))
