"""The registry of models (``model.name``): how a config and a data set become a problem.

A model is one builder plus one registration: its name, the losses it takes (``problem.loss``,
the first is its default in the configs), the shared ``model.*`` keys it reads (``SHARED_KEYS``),
its own config keys (``model.<option>``, and ``problem.<option>`` for its loss), and the memory
layout of the SAG family. Validation, the
config keys and ``--help`` derive from the registry; a user's module can register a model, and
``model.name=<name>`` then works in ``scripts/train.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import ml_collections

from deepfound import data as data_lib
from deepfound.data import Dataset
from deepfound.errors import ConfigError
from deepfound.models.activations import ACTIVATIONS
from deepfound.registry import Option, Registry


def _widths(value) -> str | None:
  if not isinstance(value, tuple | list) or any(
      isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in value):
    return "must be a tuple of positive integers"
  return None


def _activation(value) -> str | None:
  return None if value in ACTIVATIONS else f"must be one of {', '.join(ACTIVATIONS)}"


# model.<key>s that several models read (``base_config`` defines them, in this order; a model
# names those it reads in ``ModelSpec.uses`` and adds keys of its own through ``options``).
SHARED_KEYS: dict[str, Option] = {o.name: o for o in (
    Option("hidden", tuple, (64,), "hidden layer widths", _widths),
    Option("activation", str, "relu", "activation of the hidden layers", _activation),
    Option("channels", tuple, (8, 16), "channels of the two convolutions", _widths),
)}


class Built(NamedTuple):
  """What a builder may return instead of a bare problem: the problem and notes for
  config.json (e.g. how labels were mapped)."""

  problem: Any
  notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """``build(config, dataset) -> problem`` (a kind of ``deepfound.problems.kinds``, or a
  ``Built``), called in the run's precision scope with a loaded, checked data set (``None`` for
  a stream)."""

  name: str
  build: Callable[[ml_collections.ConfigDict, Dataset | None], Any]
  summary: str  # one line for --help
  losses: tuple[str, ...]  # the problem.loss values it takes
  uses: tuple[str, ...] = ()  # the shared model.<key>s it reads (``SHARED_KEYS``)
  options: tuple[Option, ...] = ()  # model.<name> keys of its own
  problem_options: tuple[Option, ...] = ()  # problem.<name> keys of its own
  memory: str = "pytree"  # the SAG-family memory layout that optim.memory=auto picks
  streams: bool = False  # takes a stream data set (draws its samples)
  finite_sum: bool = True  # False: its problem is an expectation (fresh draws every step)
  # The registered problem kind of its problems (``experiment.kinds``): "objective" (one rule
  # minimizes it: finite sums, expectations) or "game" (two players, each with its own rule
  # under optim.scheme), or a kind of a user's own.
  kind: str = "objective"
  # True: a linear model on a design matrix (17.1): sparse data stay sparse, data.weights and
  # optim.learning_rate=auto apply; other models get sparse data densified.
  design_matrix: bool = False


MODELS: Registry[ModelSpec] = Registry("model")


def problem_options() -> dict[str, Option]:
  """The problem.<name> keys of every model, by name (models that share one share its key)."""
  return {o.name: o for spec in MODELS for o in spec.problem_options}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
  """Makes ``model.name=<spec.name>`` available; call it at import time of the builder's module."""
  if not spec.losses:
    raise ValueError(f"model {spec.name!r} must take at least one problem.loss")
  unknown = set(spec.uses) - set(SHARED_KEYS)
  if unknown:
    raise ValueError(f"model {spec.name!r}: uses {sorted(unknown)} are not shared model keys "
                     f"({', '.join(SHARED_KEYS)}); declare a key of its own in options")
  taken = {o.name for o in spec.options} & (set(SHARED_KEYS) | {"name", "seed"})
  if taken:
    raise ValueError(f"model {spec.name!r}: options {sorted(taken)} are shared model keys; "
                     "name them in uses")
  shared = {o.name: o for s in MODELS if s.name != spec.name for o in s.problem_options}
  for option in spec.problem_options:
    other = shared.get(option.name)
    if other is not None and (other.kind, other.default) != (option.kind, option.default):
      raise ValueError(f"model {spec.name!r}: problem option {option.name!r} clashes with the one "
                       "of the same name of another model (different type or default)")
  return MODELS.register(spec, replace=replace)


def get_model(name: str) -> ModelSpec:
  return MODELS.get(name)


def check_shared_keys(spec: ModelSpec, model_config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` for a shared ``model.<key>`` that ``spec`` reads and that fails its
  check; the keys it does not read are not looked at."""
  for key in spec.uses:
    value = model_config[key]
    if problem := SHARED_KEYS[key].check(value):
      raise ConfigError(f"model.{key} {problem}, got {value!r}")


def source_name(config) -> str:
  """How messages name the data: data.name=libsvm (path)."""
  return f"data.name={config.data.name}" + (f" ({config.data.path})" if config.data.path else "")


def check_batch_size(config, num_samples: int) -> None:
  if config.optim.batch_size > num_samples:
    raise ConfigError(f"optim.batch_size must be <= the number of training samples "
                      f"({num_samples}), got {config.optim.batch_size}")


def train_test(config, dataset: Dataset, standardize: bool = True):
  """((x, y), (x_test, y_test)): the set's own test split, else one drawn (data.test_fraction,
  data.seed); features standardized by the training set's statistics if ``standardize``."""
  if dataset.test is None:
    train_set, test_set = data_lib.split(dataset.features, dataset.targets,
                                         config.data.test_fraction, config.data.seed)
    if not (len(train_set[1]) and len(test_set[1])):
      raise ConfigError(f"data.test_fraction = {config.data.test_fraction} leaves "
                        f"{len(train_set[1])} training and {len(test_set[1])} test samples of "
                        f"{len(dataset.targets)}")
  else:
    train_set, test_set = (dataset.features, dataset.targets), dataset.test
  return data_lib.standardize(train_set, test_set) if standardize else (train_set, test_set)
