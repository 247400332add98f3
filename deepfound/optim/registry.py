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
class LazyForm:
  """How a rule steps in O(nnz of the row) on a sparse linear problem at batch size 1
  (``lazy.py``): the facts of the rule that the lazy path reads, so that a rule with a lazy form
  is one ``RuleSpec(lazy=LazyForm(...))`` and no edit of ``lazy.py``.

  With s_i the sampled row's new scale, s_i^old its stored one, g = sum_j x_j s_j^old the sum
  of the stored gradients and den = n (or the samples seen so far, see ``seen_option``), a step
  moves the weights along::

      x_i s_i                            memory=False (SGD)
      (g + x_i (s_i - s_i^old)) / den    memory=True (SAG)
      x_i (s_i - s_i^old) + g / den      memory=True, unbiased=True (SAGA)
  """

  # Keeps the per-sample scales s_i and their sum g (SAG, SAGA); False: no gradient memory.
  memory: bool = False
  # With memory: the fresh difference enters at full weight (SAGA), not divided by den (SAG).
  unbiased: bool = False
  # The rule's bool option (``RuleSpec.options``) that makes den the number of samples seen so
  # far instead of n (SAG's ``average_over_seen``); None: den is always n.
  seen_option: str | None = None

  def over_seen(self, options: Mapping[str, Any] | tuple[tuple[str, Any], ...]) -> bool:
    """Whether den counts the samples seen so far, under the rule's ``options``."""
    return self.seen_option is not None and bool(dict(options).get(self.seen_option))


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
  # The rule's O(nnz) form on sparse linear problems at batch size 1; None: sparse problems get
  # dense per-sample gradients (O(p) a step).
  lazy: LazyForm | None = None
  # Whether the rule takes the proximal step of an L1 term (problem.l1, ``kinds.Proximal``)
  # after each update; others refuse a problem with l1 > 0.
  proximal: bool = False
  # The step size of optim.learning_rate=auto (scikit-learn's get_auto_step_size), from the
  # problem's facts; None: the rule has no automatic step.
  auto_learning_rate: Callable[[Mapping[str, float]], float] | None = None
  # Whether the rule reports an average of its iterates itself (SGA's Cesaro average): such a
  # rule refuses a second average on top (``optim.ema``).
  averages: bool = False

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
  _check_lazy(spec)
  return RULES.register(spec, replace=replace)


def _check_lazy(spec: RuleSpec) -> None:
  form = spec.lazy
  if form is None:
    return
  if not isinstance(form, LazyForm):
    raise ValueError(f"update rule {spec.name!r}: lazy must be a LazyForm or None, got {form!r}")
  if (form.unbiased or form.seen_option) and not form.memory:
    raise ValueError(f"update rule {spec.name!r}: a lazy form without memory has no unbiased "
                     "difference or samples seen (set memory=True)")
  if form.seen_option is not None:
    bools = [o.name for o in spec.options if o.kind is bool]
    if form.seen_option not in bools:
      raise ValueError(f"update rule {spec.name!r}: the lazy form's seen_option "
                       f"{form.seen_option!r} is not one of the rule's bool options "
                       f"({', '.join(bools) or 'none'})")


def get_rule(name: str) -> RuleSpec:
  return RULES.get(name)
