"""Gradient oracles: what the driver computes at a step and hands to a rule's ``update``.

An oracle is a function ``(problem, memory, params, drawn) -> (updates, extra_args)``, with
``drawn = (index_b, batch)`` the step's samples; an oracle that ``draws_samples=False`` (``full``)
gets ``None`` and the driver draws nothing for it. A rule's spec names its oracle; a rule with new
needs registers a new oracle here with ``register_oracle``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

from deepfound.problems.kinds import FiniteSum, Objective, Proximal

OracleFn = Callable[[Objective, str, optax.Params, Any], tuple[optax.Updates, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Oracle:
  compute: OracleFn
  draws_samples: bool = True  # False: the step needs no samples (full-gradient methods)


def full(problem: FiniteSum, memory: str, params: optax.Params, drawn: None):
  """grad E, the full gradient (batch gradient descent)."""
  del memory, drawn
  return problem.gradient(params), {}


def proximal_args(problem: Objective) -> dict[str, Any]:
  """``proximal_fn`` for a problem with an L1 term (l1 > 0), which proximal rules apply."""
  if isinstance(problem, Proximal) and problem.l1:
    return dict(proximal_fn=problem.proximal)
  return {}


def minibatch(problem: Objective, memory: str, params: optax.Params, drawn: Any):
  """The minibatch's mean gradient, without per-sample gradients (SGD, SGA, adam)."""
  del memory
  return problem.mean_gradient(params, drawn[1]), proximal_args(problem)


def per_sample(problem: FiniteSum, memory: str, params: optax.Params, drawn: Any):
  """Per-sample gradients with the sample indices, what the gradient memory of the SAG family
  stores (the scalar layout's s_k and x_k), the L2 gradient, and ``refresh_fn``: every sample's
  stored gradient and their mean at given params (SVRG's snapshot; traced only where used)."""
  index_b, batch = drawn
  terms = problem.terms(params, batch)
  extra = dict(index=index_b, sample_scale=terms.scale, sample_features=terms.features,
               regularizer_gradient=problem.regularizer_gradient(params),
               refresh_fn=lambda at: problem.snapshot(at, memory), **proximal_args(problem))
  return terms.gradients, extra


def two_point(problem: FiniteSum, memory: str, params: optax.Params, drawn: Any):
  """The minibatch gradient, ``gradient_fn`` (the same minibatch's mean gradient at other
  params) and ``full_gradient_fn`` (grad E at given params): SARAH's recursion."""
  del memory
  batch = drawn[1]
  extra = dict(gradient_fn=lambda at: problem.mean_gradient(at, batch),
               full_gradient_fn=problem.gradient)
  return problem.mean_gradient(params, batch), extra


ORACLES: dict[str, Oracle] = dict(
    full=Oracle(full, draws_samples=False), minibatch=Oracle(minibatch),
    per_sample=Oracle(per_sample), two_point=Oracle(two_point))


def register_oracle(name: str, compute: OracleFn, draws_samples: bool = True) -> None:
  if name in ORACLES:
    raise ValueError(f"gradient oracle {name!r} is already registered")
  ORACLES[name] = Oracle(compute, draws_samples)
