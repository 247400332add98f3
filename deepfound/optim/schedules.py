"""Step-size schedules of section 17.1, as optax-compatible callables ``step -> rate``.

Every schedule is a pure function of the iteration counter ``l`` (an int array), so it can be
traced inside ``jit``/``scan`` and its parameters may themselves be traced arrays (which is what
lets a sweep ``vmap`` over ``tau0`` and ``l0``).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

SCHEDULES = ("constant", "inverse_time", "inverse_sqrt", "strongly_convex")


def constant_schedule(learning_rate: ArrayLike) -> optax.Schedule:
  """tau_l = tau0 for every l (BGD, SAG, SAGA, SVRG)."""

  def schedule(count):
    return jnp.asarray(learning_rate) * jnp.ones_like(count, dtype=jnp.result_type(float))

  return schedule


def inverse_time_schedule(learning_rate: ArrayLike, l0: ArrayLike) -> optax.Schedule:
  """tau_l = tau0 / (1 + l / l0), the SGD schedule of (17.8).

  ``l0`` is roughly the length of the warm-up phase during which the step stays near ``tau0``;
  asymptotically tau_l ~ tau0 l0 / l, which cancels the sampling noise while sum tau_l diverges.
  """

  def schedule(count):
    return learning_rate / (1.0 + count / l0)

  return schedule


def inverse_sqrt_schedule(learning_rate: ArrayLike, l0: ArrayLike) -> optax.Schedule:
  """tau_l = tau0 / (1 + sqrt(l / l0)), the slower decay used with averaging (SGA, 17.1.4)."""

  def schedule(count):
    return learning_rate / (1.0 + jnp.sqrt(count / l0))

  return schedule


def strongly_convex_schedule(strong_convexity: ArrayLike) -> optax.Schedule:
  """tau_l = 1 / (mu (l + 1)), the step of Theorem 52 for a mu-strongly convex objective."""

  def schedule(count):
    return 1.0 / (strong_convexity * (count + 1.0))

  return schedule


def make_schedule(
    kind: str,
    learning_rate: ArrayLike,
    l0: ArrayLike = 1.0,
    strong_convexity: ArrayLike = 1.0,
) -> optax.Schedule:
  """Returns the schedule named ``kind`` (one of ``SCHEDULES``)."""
  if kind == "constant":
    return constant_schedule(learning_rate)
  if kind == "inverse_time":
    return inverse_time_schedule(learning_rate, l0)
  if kind == "inverse_sqrt":
    return inverse_sqrt_schedule(learning_rate, l0)
  if kind == "strongly_convex":
    return strongly_convex_schedule(strong_convexity)
  raise ValueError(f"unknown schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")


def rate_and_schedule(
    kind: str,
    learning_rate: ArrayLike,
    l0: ArrayLike = 1.0,
    strong_convexity: ArrayLike = 1.0,
) -> tuple[optax.ScalarOrSchedule, optax.Schedule]:
  """(what a rule takes as its step size, the schedule): the schedule named ``kind``, and for
  the rule the number itself when the schedule is constant.

  A constant rate goes in as a number, not a schedule: a schedule's step counter is one more
  kernel in the loop body, and on CPU XLA runs bodies of more than 8 kernels through a slower
  concurrent executor (measured: 0.2 vs 0.6-0.9 us per SAG step). The schedule is still what log
  points report.
  """
  schedule = make_schedule(kind, learning_rate, l0, strong_convexity)
  return (learning_rate if kind == "constant" else schedule), schedule
