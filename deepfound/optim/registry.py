"""The registry of update rules: what the driver, the configs and ``--help`` know of a rule.

Each rule file exports its optax transformation and a ``RuleSpec``, and registers the spec with
``register_rule`` (a user's own module does the same). The driver builds the transformation from
the spec, feeds it the gradient oracle the spec names (see ``oracles.py``) and counts epochs with
it; config validation, the config keys ``optim.<option>`` and the help text derive from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import optax

from deepfound.registry import Option, Registry


class RuleContext(NamedTuple):
  """What a rule is built from: its step size and the facts of the problem and the run."""

  learning_rate: optax.ScalarOrSchedule  # a (traced) number, or a schedule of the step count
  num_samples: int | None  # n of a finite sum; None for a stream
  batch_size: int  # samples per step
  memory: str  # gradient-memory layout ("pytree" or "scalar"), for rules that keep one
  options: Mapping[str, Any]  # the rule's options (``RuleSpec.options``), defaults filled in
  proximal: bool = False  # the problem has an L1 term: take its proximal step (``proximal_fn``)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
  """Steps of ``batch_size`` samples in one pass over n samples (at least one)."""
  return max(num_samples // batch_size, 1)


def snapshot_period(num_samples: int, batch_size: int = 1, update_frequency: int | None = None
                    ) -> int:
  """m, the steps between two full passes of SVRG or SARAH: ``update_frequency``, by default
  one epoch."""
  return update_frequency or steps_per_epoch(num_samples, batch_size)


def one_batch_per_step(steps: np.ndarray, context: RuleContext) -> np.ndarray:
  """Sample gradients after ``steps`` steps of a rule that takes one minibatch gradient a step."""
  return steps * context.batch_size


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """An update rule as the rest of the package sees it.

  ``oracle`` names the gradients the driver hands to ``update`` (``oracles.ORACLES``: ``full``,
  ``minibatch``, ``per_sample``, ``two_point``). ``sample_gradients(steps, context)`` counts the
  per-sample gradients evaluated after ``steps`` steps (an array), from which epochs follow.
  """

  name: str
  build: Callable[[RuleContext], optax.GradientTransformationExtraArgs]
  summary: str  # one line for --help
  oracle: str = "minibatch"
  needs_finite_sum: bool = False  # refuses a stream (n = infinity)
  keeps_memory: bool = False  # one gradient per sample: optim.memory applies, memory is checked
  sample_gradients: Callable[[np.ndarray, RuleContext], np.ndarray] = one_batch_per_step
  options: tuple[Option, ...] = ()
  # Step size when optim.learning_rate is None, from the problem's constants (L, L_max); None:
  # the rate is required.
  default_learning_rate: Callable[[Mapping[str, float]], float] | None = None
  # The step-size bound quoted when a run diverges: "2/L" (gradient descent) or "1/L_max"
  # (methods whose steps follow one sample's gradient at full weight).
  stable_step: str = "2/L"
  # The rule's O(nnz) form on sparse linear problems at batch size 1, one of ``lazy.FORMS``
  # ("sgd", "sag", "saga"); None: sparse problems get dense per-sample gradients (O(p) a step).
  lazy: str | None = None
  # Whether the rule takes the proximal step of an L1 term (problem.l1, ``kinds.Proximal``)
  # after each update; others refuse a problem with l1 > 0.
  proximal: bool = False
  # The step size of optim.learning_rate=auto (scikit-learn's get_auto_step_size), from the
  # problem's facts; None: the rule has no automatic step.
  auto_learning_rate: Callable[[Mapping[str, float]], float] | None = None

  def resolve_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
    """This rule's options from ``values`` (a config group or dict), defaults for missing ones."""
    return {o.name: values.get(o.name, o.default) for o in self.options}


RULES: Registry[RuleSpec] = Registry("update rule")


def register_rule(spec: RuleSpec, *, replace: bool = False) -> RuleSpec:
  """Makes ``spec`` available to the driver, ``scripts/train.py`` and ``scripts/sweep.py``
  (``optim.name=<spec.name>``); call it at import time of the module defining the rule."""
  from deepfound.optim import oracles  # the oracle names are checked at the boundary

  if spec.oracle not in oracles.ORACLES:
    raise ValueError(f"update rule {spec.name!r}: unknown oracle {spec.oracle!r}; expected one of "
                     f"{', '.join(oracles.ORACLES)}")
  return RULES.register(spec, replace=replace)


def get_rule(name: str) -> RuleSpec:
  return RULES.get(name)
