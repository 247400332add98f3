"""The registry of problem kinds on the experiment side: what a kind adds to configs and how a
config of its kind becomes a run's ``Setup``.

A problem kind has three parts, each registered where it belongs:

* its protocol, in ``deepfound.problems.kinds`` (e.g. ``FiniteSum``, ``Game``);
* its engine, which runs it on the device (``deepfound.optim.engine.register_engine``);
* a ``KindSpec`` here: its config keys, their validation and its ``Setup`` (``register_kind``).

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
class KindSpec:
  """A problem kind as configs and the runner see it.

  ``add_keys(config)`` adds the kind's own config keys at their defaults to ``base_config``;
  ``validate(config)`` checks, without data, what a config of this kind sets (``ConfigError``
  naming the key); ``build(config, problem, notes)`` makes the run's ``build.Setup`` from the
  built problem; ``upgrade(stored)`` rewrites a config dict stored by an older version (keys
  renamed since) in place, before ``stored_config`` fills in new keys.
  """

  name: str
  summary: str
  add_keys: Callable[[ml_collections.ConfigDict], None]
  validate: Callable[[ml_collections.ConfigDict], None]
  build: Callable[[ml_collections.ConfigDict, Any, tuple[str, ...]], Any]
  upgrade: Callable[[dict], None] | None = None
  options: tuple[Option, ...] = ()  # (the Registry's interface; kinds add keys by add_keys)


KINDS: Registry[KindSpec] = Registry("problem kind")


def register_kind(spec: KindSpec, *, replace: bool = False) -> KindSpec:
  """Makes ``ModelSpec(kind=<spec.name>)`` available; call it at import time of its module."""
  return KINDS.register(spec, replace=replace)


def get_kind(name: str) -> KindSpec:
  return KINDS.get(name)
