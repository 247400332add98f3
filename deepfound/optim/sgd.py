"""Batch and stochastic gradient descent, sections 17.1.2 and 17.1.3."""

from __future__ import annotations

import optax


def bgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """Batch gradient descent: beta <- beta - tau grad E(beta), with the full gradient (17.5).

  ``updates`` must be the full gradient. Converges for a constant 0 < tau < 2/L, L the Lipschitz
  constant of grad E; 1/L is the usual choice, and the rate is linear when E is strongly convex.
  State: ``optax.ScaleByScheduleState`` (the iteration count, for the schedule).
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """Stochastic gradient descent: beta <- beta - tau_l grad E_i(l)(beta) (17.1.3).

  ``updates`` is the gradient of one sampled term (or the mean over a minibatch), an unbiased
  estimate of grad E (17.7). tau_l must decay, e.g. ``inverse_time_schedule`` (17.8). Works just
  as well on an infinite stream of samples (17.2). State: ``optax.ScaleByScheduleState``.

  Example::

      opt = deepfound.optim.sgd(deepfound.optim.inverse_time_schedule(0.05, 100))
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate))
