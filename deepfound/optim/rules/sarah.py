"""SARAH: the stochastic recursive gradient (beyond the chapter), with no gradient memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepfound.optim.registry import RuleSpec, register_rule, snapshot_period
from deepfound.registry import Option, positive


class ScaleBySARAHState(NamedTuple):
  """State of ``scale_by_sarah``."""

  previous_params: optax.Params  # w_{t-1}, like params
  estimate: optax.Updates  # v_{t-1}, the recursive gradient estimate, like params
  count: jax.Array  # int32 scalar, updates done; a full gradient is taken when count % m == 0


def scale_by_sarah(
    num_samples: int, update_frequency: int | None = None, batch_size: int = 1
) -> optax.GradientTransformationExtraArgs:
  """Replaces a minibatch gradient h = grad E_i(w_t) by SARAH's recursive estimate v_t.

  Every ``update_frequency`` updates (m; default one epoch, n // batch_size), first at update 0,
  the outer loop restarts from the current iterate w_0 with the full gradient::

      v_0 = grad E(w_0)
      v_t = grad E_i(w_t) - grad E_i(w_{t-1}) + v_{t-1}        (0 < t < m, same sample i)

  The next outer loop starts from the last inner iterate (the variant the paper uses in its
  experiments), not a randomly drawn one. The ``updates`` are h (the minibatch mean with a batch).

  The update's extra arguments, both required: ``gradient_fn``, params -> the same minibatch's
  mean gradient at those params (for grad E_i(w_{t-1})); ``full_gradient_fn``, params -> grad E.
  Each is called inside one branch of a ``lax.cond``, so a step evaluates one of them.
  """
  period = snapshot_period(num_samples, batch_size, update_frequency)

  def init_fn(params):
    return ScaleBySARAHState(previous_params=params, estimate=optax.tree.zeros_like(params),
                             count=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, *,
                gradient_fn: Callable[[optax.Params], optax.Updates],
                full_gradient_fn: Callable[[optax.Params], optax.Updates], **extra_args):
    del extra_args
    if params is None:
      raise ValueError("scale_by_sarah needs params (the recursion uses the previous iterate)")

    def recursion():
      previous = gradient_fn(state.previous_params)
      return jax.tree.map(lambda h, g, v: h - g + v, updates, previous, state.estimate)

    estimate = jax.lax.cond(state.count % period == 0, lambda: full_gradient_fn(params), recursion)
    return estimate, ScaleBySARAHState(params, estimate, optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sarah(
    learning_rate: optax.ScalarOrSchedule,
    num_samples: int,
    update_frequency: int | None = None,
    batch_size: int = 1,
) -> optax.GradientTransformationExtraArgs:
  """SARAH: steps along a recursive gradient estimate, restarted with a full gradient every m.

  ::

      v_0     = grad E(w_0)                                      (every m steps)
      v_t     = grad E_i(w_t) - grad E_i(w_{t-1}) + v_{t-1}      (0 < t < m, same sample i)
      w_{t+1} = w_t - tau v_t

  Unlike SAG, SAGA and SVRG it stores no per-sample gradients: two minibatch gradients a step,
  and a full gradient every m steps. Unlike SVRG's direction, v_t is a biased estimate of
  grad E(w_t). A constant step below 2/L (the paper's analysis asks tau <= 2/L on
  L-smooth convex sums; L_max in the per-sample form) is the usual choice.

  Args:
    learning_rate: tau, a number or a schedule of the step count.
    num_samples: n, the number of terms of the finite sum.
    update_frequency: m, the steps between full gradients; None: one epoch, n // batch_size.
    batch_size: samples per minibatch (sets the default m).

  Returns:
    ``optax.chain(scale_by_sarah(...), optax.scale_by_learning_rate(learning_rate))``: its
    ``update`` takes the minibatch gradient, ``params`` and the extra arguments
    ``gradient_fn`` and ``full_gradient_fn`` of ``scale_by_sarah``; its state is
    (``ScaleBySARAHState``, the learning rate's state).

  Example::

      opt = deepfound.optim.sarah(learning_rate=0.01, num_samples=n)
      state = opt.init(params)
      batch_grad = lambda p: jax.grad(loss)(p, x[i], y[i])
      updates, state = opt.update(batch_grad(params), state, params, gradient_fn=batch_grad,
                                  full_gradient_fn=jax.grad(full_loss))
      params = optax.apply_updates(params, updates)

  Reference: Nguyen, Liu, Scheinberg, Takac, "SARAH: a novel method for machine learning
  problems using stochastic recursive gradient", ICML 2017.
  """
  return optax.chain(scale_by_sarah(num_samples, update_frequency, batch_size),
                     optax.scale_by_learning_rate(learning_rate))


def _sample_gradients(steps: np.ndarray, c) -> np.ndarray:
  """n per full gradient (every m steps, the first at step 0), 2 b per other step."""
  period = snapshot_period(c.num_samples, c.batch_size, c.options["sarah_frequency"])
  refreshes = np.ceil(steps / period)
  return c.num_samples * refreshes + 2 * c.batch_size * (steps - refreshes)


register_rule(RuleSpec(
    name="sarah", oracle="two_point", needs_finite_sum=True,
    build=lambda c: sarah(c.learning_rate, c.num_samples, c.options["sarah_frequency"],
                          c.batch_size),
    summary="SARAH (Nguyen et al. 2017): recursive gradient estimate, no per-sample memory",
    options=(Option("sarah_frequency", int, None,
                    "sarah: steps between full gradients (default: one epoch, n // batch_size)",
                    positive),),
    sample_gradients=_sample_gradients, stable_step="1/L_max",
))
