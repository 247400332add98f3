"""Name registries: the units of extension (update rules, data sets) and their config options.

A registry maps a name to a small frozen spec. Lists, checks, config keys and help text are
derived from the registries, so adding a rule or a data set is one definition plus one
``register`` call, also from a user's own module (see the README's "Architecture").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from deepfound.errors import ConfigError


class UnknownNameError(ValueError):
  """A name that no registry entry has; the message lists the registered ones."""


@dataclasses.dataclass(frozen=True)
class Option:
  """A config key that an entry adds (``optim.<name>`` for a rule, ``data.<name>`` for a data set).

  ``kind`` is the Python type of the value (``int``, ``float``, ``bool``, ``str``); a ``default``
  of ``None`` makes the key a placeholder of that type. ``check(value)`` returns an error text
  (what is allowed) or ``None``; it is not called on ``None``.
  """

  name: str
  kind: type
  default: Any
  help: str
  check: Callable[[Any], str | None] | None = None

  def config_default(self) -> Any:
    """The config key's initial value: ``default``, or a placeholder of ``kind`` for None."""
    from ml_collections import config_dict

    return config_dict.placeholder(self.kind) if self.default is None else self.default

  def validate(self, group: str, value: Any) -> None:
    if value is None:
      return
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(self.kind, (self.kind,))
    if not isinstance(value, kinds) or (self.kind is not bool and isinstance(value, bool)):
      raise ConfigError(f"{group}.{self.name} must be a {self.kind.__name__}, got {value!r}")
    if self.check is not None and (problem := self.check(value)):
      raise ConfigError(f"{group}.{self.name} {problem}, got {value!r}")


MAX_STEPS = 2**31 - 1  # the driver's step counter is int32


def positive(value) -> str | None:
  """For counts of steps: > 0 and within the int32 step counter."""
  return None if 0 < value <= MAX_STEPS else "must be in [1, 2^31)"


def one_of(choices) -> Callable[[Any], str | None]:
  """An ``Option.check`` that allows the values of ``choices`` only."""
  return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


class Spec(Protocol):
  name: str
  options: tuple[Option, ...]


S = TypeVar("S", bound=Spec)


class Registry(Generic[S]):
  """Name -> spec, in registration order."""

  def __init__(self, kind: str):
    self.kind = kind  # "update rule", "data set": for messages
    self._specs: dict[str, S] = {}

  def register(self, spec: S, *, replace: bool = False) -> S:
    """Adds ``spec``; a name registered twice is an error unless ``replace``."""
    if spec.name in self._specs and not replace:
      raise ValueError(f"{self.kind} {spec.name!r} is already registered (pass replace=True)")
    shared = {o.name: o for s in self._specs.values() if s.name != spec.name for o in s.options}
    for option in spec.options:
      other = shared.get(option.name)
      if other is not None and (other.kind, other.default) != (option.kind, option.default):
        raise ValueError(f"{self.kind} {spec.name!r}: option {option.name!r} clashes with the one "
                         "of the same name of another entry (different type or default)")
    self._specs[spec.name] = spec
    return spec

  def get(self, name: str) -> S:
    if name not in self._specs:
      raise UnknownNameError(f"unknown {self.kind} {name!r}; registered: {', '.join(self._specs)}")
    return self._specs[name]

  def names(self) -> tuple[str, ...]:
    return tuple(self._specs)

  def options(self) -> dict[str, Option]:
    """Every option of every entry, by name (entries that share an option share its key)."""
    return {o.name: o for spec in self._specs.values() for o in spec.options}

  def __contains__(self, name: object) -> bool:
    return name in self._specs

  def __iter__(self) -> Iterator[S]:
    return iter(tuple(self._specs.values()))
