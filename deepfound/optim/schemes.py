"""The registry of game schemes (``optim.scheme``): how the two players of a game take turns.

A scheme is one ``SchemeSpec``: its name, the function that makes its step, whether it needs a
finite-sum game (``kinds.FiniteGame``), the snapshot it carries between steps (if any), an
optional wrapper of both players' rules, and its own config keys (``optim.<option>``) with their
validation. The built-in schemes (simultaneous, alternating, extragradient, optimistic, svre) are
registered by ``deepfound.optim.game``; a user's module registers its own the same way, and
``optim.scheme=<name>`` then works in ``scripts/train.py`` and ``scripts/sweep.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

from deepfound.registry import Option, Registry

# make_step(problem, method, optimizers) -> step(carry, key) -> carry, where carry is
# (params, opt_states), or (params, opt_states, snapshot) for a scheme with a snapshot.
StepMaker = Callable[[Any, Any, tuple[Any, Any]], Callable[[Any, Any], Any]]


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
  name: str
  summary: str  # one line for --help
  make_step: StepMaker
  finite_game: bool = False  # True: needs kinds.FiniteGame (num_samples, sample_batch)
  # init_snapshot(params) -> the snapshot the step carries (svre's w~ and mu); None: no snapshot.
  init_snapshot: Callable[[Any], Any] | None = None
  # Wraps each player's rule (optimistic: u_t -> 2 u_t - u_{t-1}); None: the rule as it is.
  wrap_rule: Callable[[optax.GradientTransformation], optax.GradientTransformation] | None = None
  options: tuple[Option, ...] = ()  # optim.<name> keys of its own (e.g. discriminator_steps)

  def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with the scheme's other options at their defaults; ``ValueError`` for a name
    the scheme does not have or a bad value."""
    names = {o.name for o in self.options}
    unknown = set(given) - names
    if unknown:
      raise ValueError(f"game scheme {self.name!r} has no option {', '.join(sorted(unknown))}; "
                       f"its options: {', '.join(sorted(names)) or 'none'}")
    resolved = {}
    for option in self.options:
      value = given.get(option.name, option.default)
      option.validate("optim", value)
      resolved[option.name] = value
    return resolved


SCHEMES: Registry[SchemeSpec] = Registry("game scheme")


def register_scheme(spec: SchemeSpec, *, replace: bool = False) -> SchemeSpec:
  """Makes ``optim.scheme=<spec.name>`` available; call it at import time of its module."""
  return SCHEMES.register(spec, replace=replace)


def get_scheme(name: str) -> SchemeSpec:
  return SCHEMES.get(name)
