"""The registry of problem kinds on the experiment side: what a kind adds to configs and how a
config of its kind becomes a run's ``Setup``.

A problem kind has three parts, each registered where it belongs:

* its protocol, in ``deepfound.problems.kinds`` (e.g. ``FiniteSum``, ``Game``);
* its engine, which runs it on the device (``deepfound.optim.engine.register_engine``);
* a ``KindSpec`` here: its config keys, which of them a config reads, their validation and its
  ``Setup`` (``register_kind``).

A model names its kind (``ModelSpec.kind``); the runner and the sweep ask the registry, never
the kind's name. Built in: ``objective`` (one update rule on a finite sum or an expectation:
``objectives.py``) and ``game`` (two players under a scheme: ``games.py``). A sweep program for a
kind is registered in the sweep package (``deepfound.sweep.common.register_program``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from deepfound.registry import Option, Registry


@dataclasses.dataclass(frozen=True)
class KeyGroup:
  """Config keys of which ``reader`` (e.g. "model.name=gan") reads only ``read``: a config that
  sets another of ``keys`` away from its default, or gives it explicitly (on the command line, in
  a sweep), is refused (``config.check_read_keys``), with ``note`` added to the message.

  ``preset``: the keys belong to a choice that a flag switches (a rule's options, a schedule's
  numbers), which configs preset for the choice they make (configs/gan_2d.py: adam's b1 for each
  player); switched away, they are refused only when given explicitly.
  """

  reader: str
  keys: frozenset[str]  # dotted paths ("optim.tol")
  read: frozenset[str]
  note: str = ""
  preset: bool = False


@dataclasses.dataclass(frozen=True)
class KindSpec:
  """A problem kind as configs and the runner see it.

  ``add_keys(config)`` adds the kind's own config keys at their defaults to ``base_config``;
  ``validate(config)`` checks, without data, what a config of this kind sets (``ConfigError``
  naming the key); ``build(config, problem, notes)`` makes the run's ``build.Setup`` from the
  built problem; ``upgrade(stored)`` rewrites a config dict stored by an older version (keys
  renamed since) in place, before ``stored_config`` fills in new keys.

  Which keys a config of the kind reads: the single rule's keys of ``base_config`` (``optim.name``,
  ``optim.learning_rate``, ...) if ``reads_rule``, and the keys ``add_keys`` adds, of which
  ``key_groups(config)`` may say that its choices read only some (``KeyGroup``s, checked first:
  a game's player reads its own rule's options).
  """

  name: str
  summary: str
  add_keys: Callable[[ml_collections.ConfigDict], None]
  validate: Callable[[ml_collections.ConfigDict], None]
  build: Callable[[ml_collections.ConfigDict, Any, tuple[str, ...]], Any]
  upgrade: Callable[[dict], None] | None = None
  options: tuple[Option, ...] = ()  # (the Registry's interface; kinds add keys by add_keys)
  reads_rule: bool = True
  key_groups: Callable[[ml_collections.ConfigDict], list[KeyGroup]] | None = None


KINDS: Registry[KindSpec] = Registry("problem kind")


def register_kind(spec: KindSpec, *, replace: bool = False) -> KindSpec:
  """Makes ``ModelSpec(kind=<spec.name>)`` available; call it at import time of its module."""
  return KINDS.register(spec, replace=replace)


def get_kind(name: str) -> KindSpec:
  return KINDS.get(name)
