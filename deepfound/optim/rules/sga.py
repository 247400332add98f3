"""Stochastic gradient descent with averaging (SGA), section 17.1.4."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from deepfound.optim.registry import RuleSpec, register_rule


class CesaroAverageState(NamedTuple):
  """State of ``cesaro_average``."""

  count: jax.Array  # int32 scalar, number of iterates averaged so far (l)
  average: optax.Params  # (1/l) sum_{k=1..l} of the iterates after each step; like params


def _running_average(average: optax.Params, new_params: optax.Params, count: jax.Array):
  """avg + (beta~^(l) - avg) / l: the mean of the l iterates so far, without storing them."""
  return jax.tree.map(lambda a, p: a + (p - a) / count.astype(jnp.result_type(a)), average,
                      new_params)


def cesaro_average() -> optax.GradientTransformationExtraArgs:
  """Leaves updates unchanged and keeps the running average of the iterates they lead to.

  After l updates, ``average`` = (1/l) sum_{k=1}^{l} beta~^(k), updated as
  avg <- avg + (beta~^(l) - avg) / l; before any update it is the starting point.
  Must come last in a chain, so that ``updates`` are the final ones.
  """

  return _iterate_average("cesaro_average", CesaroAverageState, _running_average)


def _iterate_average(name: str, state_type, blend) -> optax.GradientTransformationExtraArgs:
  """A transformation that leaves updates unchanged and keeps ``state_type(count, average)``,
  the average moved to ``blend(average, new_params, count)`` after each update (count >= 1)."""

  def init_fn(params):
    return state_type(count=jnp.zeros((), jnp.int32), average=params)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(f"{name} needs params")
    count = optax.safe_increment(state.count)
    average = blend(state.average, optax.apply_updates(params, updates), count)
    return updates, state_type(count, average)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sga(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
  """SGA: SGD on auxiliary iterates beta~, reporting their Cesaro average (17.1.4).

  ::

      beta~^(l+1) = beta~^(l) - tau_l grad E_i(l)(beta~^(l))
      beta^(l)    = (1/l) sum_{k=1}^{l} beta~^(k)

  The params an optimizer loop carries are the auxiliary iterates beta~; the estimate to report
  is ``averaged_params(state)``. Averaging lets the steps decay slowly (tau_l ~ l^(-1/2) rather
  than l^(-1)) and still reach the optimal O(1/l) rate on strongly convex problems, without
  knowing the strong convexity: use e.g.
  ``inverse_sqrt_schedule(tau0, l0)`` = tau0 / (1 + sqrt(l / l0)).

  Args:
    learning_rate: tau_l, a number or a schedule of the step count.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes the gradient of the
    sampled term (or the minibatch mean) and needs ``params``. Its state is a
    ``CesaroAverageState`` (whose count also drives the schedule). The same as
    ``optax.chain(optax.scale_by_learning_rate(schedule), cesaro_average())``, written as one
    transformation so that the loop body keeps one counter instead of two (on CPU, fewer
    kernels per step is faster).

  Example::

      opt = deepfound.optim.sga(deepfound.optim.inverse_sqrt_schedule(0.5, 100))
      state = opt.init(params)
      updates, state = opt.update(grad_i, state, params)
      params = optax.apply_updates(params, updates)
      estimate = deepfound.optim.averaged_params(state)

  Reference: Polyak, Juditsky, "Acceleration of stochastic approximation by averaging", SIAM
  Journal on Control and Optimization, 1992; Bach, "Adaptivity of averaged stochastic gradient
  descent to local strong convexity for logistic regression", JMLR 2014.
  """

  def init_fn(params):
    return CesaroAverageState(count=jnp.zeros((), jnp.int32), average=params)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("sga needs params")
    rate = learning_rate(state.count) if callable(learning_rate) else learning_rate
    updates = jax.tree.map(lambda g: -rate * g, updates)
    count = state.count + 1
    average = _running_average(state.average, optax.apply_updates(params, updates), count)
    return updates, CesaroAverageState(count, average)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ExponentialAverageState(NamedTuple):
  """State of ``exponential_average``."""

  count: jax.Array  # int32 scalar, number of iterates averaged so far (l)
  average: optax.Params  # the debiased exponential moving average of the iterates; like params


def exponential_average(decay: float | jax.Array) -> optax.GradientTransformationExtraArgs:
  """Leaves updates unchanged and keeps an exponential moving average of the iterates they lead
  to (any rule's iterates; ``optim.ema``, ``driver.Method(ema=...)``).

  After l updates, ``average`` = sum_{k=1}^{l} (1 - d) d^(l-k) beta^(k) / (1 - d^l), d the
  ``decay``: the iterates weighted by d per step of age, the weights normalized to sum to 1 (the
  debiasing of adam's moments), so that a short run averages its own iterates and not its
  starting point. It is kept as avg <- avg + w_l (beta^(l) - avg), w_l = (1 - d) / (1 - d^l)
  (w_1 = 1; w_l -> 1 - d). Before any update it is the starting point.

  Where SGA's Cesaro average weighs every iterate alike, this one forgets the early ones: an
  average over about 1 / (1 - d) steps, the weight averaging of deep generative models (the "EMA"
  of diffusion and flow-matching training), which smooths the noise of the last steps of a run.
  Must come last in a chain.
  """

  def blend(average, new_params, count):
    def leaf(a, p):
      d = jnp.asarray(decay, jnp.result_type(a))
      weight = (1 - d) / (1 - d ** count.astype(d.dtype))
      return a + weight * (p - a)

    return jax.tree.map(leaf, average, new_params)

  return _iterate_average("exponential_average", ExponentialAverageState, blend)


def averaged_params(state: optax.OptState, default: optax.Params | None = None, *,
                    cesaro: bool = True) -> optax.Params:
  """The average of the iterates kept in ``state``: an ``exponential_average``'s if there is one
  (``optim.ema``), else (with ``cesaro``) the Cesaro average of ``sga`` (or of any chain holding
  ``cesaro_average``).

  Returns ``default`` when the state holds no average (e.g. the state of ``sgd``), so a loop can
  call ``averaged_params(state, params)`` for every method.
  """
  for kind in (ExponentialAverageState, CesaroAverageState)[:2 if cesaro else 1]:
    is_average = lambda node, kind=kind: isinstance(node, kind)  # noqa: E731
    found = [node for node in jax.tree.leaves(state, is_leaf=is_average) if is_average(node)]
    if found:
      return found[0].average
  return default


register_rule(RuleSpec(
    name="sga", build=lambda c: sga(c.learning_rate), oracle="minibatch",
    summary="SGD with Cesaro averaging of the iterates (17.1.4), reports the average",
    averages=True,
))
