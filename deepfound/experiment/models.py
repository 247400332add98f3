"""The registry of models (``model.name``): how a config and a data set become a problem.

A model is one builder plus one registration: its name, the losses it takes (``problem.loss``,
the first is its default in the configs), the shared ``model.*`` keys it reads (``SHARED_KEYS``),
its own config keys (``model.<option>``, and ``problem.<option>`` for its loss) with the losses
that read each (``loss_keys``), whether it reads ``problem.l2``, and the memory layout of the SAG
family. Validation, the config keys and ``--help`` derive from the registry: a key that the model
(or its loss) does not read is refused when set (``config.check_read_keys``), and each key it
reads is checked by its own check and by the generic check of its type (``KEY_CHECKS``). A
user's module can register a model, and ``model.name=<name>`` then works in
``scripts/train.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from deepfound import data as data_lib
from deepfound.data import Dataset
from deepfound.errors import ConfigError
from deepfound.experiment.checks import PRECISIONS
from deepfound.models.activations import ACTIVATIONS
from deepfound.registry import Option, Registry


def _widths(value) -> str | None:
  if not isinstance(value, tuple | list) or any(
      isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in value):
    return "must be a tuple of positive integers"
  return None


def _finite(value) -> str | None:
  try:
    return None if math.isfinite(value) else "must be finite"
  except OverflowError:  # an int beyond any float
    return "must be finite"


def _activation(value) -> str | None:
  return None if value in ACTIVATIONS else f"must be one of {', '.join(ACTIVATIONS)}"


# model.<key>s that several models read (``base_config`` defines them, in this order; a model
# names those it reads in ``ModelSpec.uses`` and adds keys of its own through ``options``).
SHARED_KEYS: dict[str, Option] = {o.name: o for o in (
    Option("hidden", tuple, (64,), "hidden layer widths", _widths),
    Option("activation", str, "relu", "activation of the hidden layers", _activation),
    Option("channels", tuple, (8, 16), "channels of the two convolutions", _widths),
)}


# The generic check of every model.<key> and problem.<key> of a type, besides the key's own: a
# tuple is a list of layer widths (or channels), a float is finite (and, ``check_keys``, stays
# finite and nonzero in the run's precision).
KEY_CHECKS: dict[type, Callable[[Any], str | None]] = {tuple: _widths, float: _finite}


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
  # The problem.<option>s of its own that only some losses read: loss -> those it reads. An
  # option that no loss names here is read by every loss; the others are refused when set.
  loss_keys: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, hash=False)
  # The model.<option>s of its own that only some values of another of its options read:
  # option -> {value: the options that value reads}. An option named under no value is read
  # always; the others are refused when set, as per-loss keys are (e.g. the flow's model.num_bins
  # is read by model.transform=spline only).
  variant_keys: Mapping[str, Mapping[str, tuple[str, ...]]] = dataclasses.field(
      default_factory=dict, hash=False)
  # upgrade(stored) rewrites the model's keys in a config dict that an older version stored, e.g.
  # a default that changed since (so old runs resume as they were made); None: nothing to do.
  upgrade: Callable[[dict], None] | None = None
  penalized: bool = True  # reads problem.l2 (a weight of (l2/2)||params||^2 in its objective)
  # check(config) -> None: the model's own checks of values it reads that need more than one key
  # or the run's precision (``ConfigError`` naming the key); None: none.
  check: Callable[[ml_collections.ConfigDict], None] | None = None

  def variant_reads(self, config) -> list[tuple[str, frozenset[str], frozenset[str]]]:
    """(reader, its keys, those it reads) per entry of ``variant_keys``, for ``config``."""
    out = []
    for option, by_value in self.variant_keys.items():
      value = config.model[option]
      every = frozenset(f"model.{k}" for keys in by_value.values() for k in keys)
      read = frozenset(f"model.{k}" for k in by_value.get(value, ()))
      out.append((f"model.{option}={value} (model.name={self.name})", every, read))
    return out

  def loss_reads(self, loss: str) -> tuple[str, ...]:
    """The names of its problem options that ``loss`` reads."""
    per_loss = {key for keys in self.loss_keys.values() for key in keys}
    return tuple(o.name for o in self.problem_options
                 if o.name not in per_loss or o.name in self.loss_keys.get(loss, ()))


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
  own = {o.name for o in spec.options}
  unknown = (set(spec.variant_keys) | {k for by_value in spec.variant_keys.values()
                                       for keys in by_value.values() for k in keys}) - own
  if unknown:
    raise ValueError(f"model {spec.name!r}: variant_keys names {sorted(unknown)}, which are not "
                     "its options")
  unknown = (set(spec.loss_keys) - set(spec.losses)) | (
      {k for keys in spec.loss_keys.values() for k in keys} - {o.name for o in spec.problem_options})
  if unknown:
    raise ValueError(f"model {spec.name!r}: loss_keys names {sorted(unknown)}, which are not its "
                     "losses or problem options")
  shared = {o.name: o for s in MODELS if s.name != spec.name for o in s.problem_options}
  for option in spec.problem_options:
    other = shared.get(option.name)
    if other is not None and (other.kind, other.default) != (option.kind, option.default):
      raise ValueError(f"model {spec.name!r}: problem option {option.name!r} clashes with the one "
                       "of the same name of another model (different type or default)")
  return MODELS.register(spec, replace=replace)


def get_model(name: str) -> ModelSpec:
  return MODELS.get(name)


def read_options(spec: ModelSpec, loss: str) -> list[tuple[str, Option]]:
  """(group, option) of every model.<key> and problem.<key> that ``spec`` reads with ``loss``."""
  own = {o.name: o for o in spec.problem_options}
  return ([("model", SHARED_KEYS[key]) for key in spec.uses]
          + [("model", option) for option in spec.options]
          + [("problem", own[name]) for name in spec.loss_reads(loss)])


def check_keys(spec: ModelSpec, config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` for a key that ``spec`` reads (with the config's loss) and that fails
  its own check or the generic check of its type (``KEY_CHECKS``; a float must also stay finite,
  and nonzero if it is, in the run's precision); the keys it does not read are not looked at.
  Then the model's own ``check``."""
  dtype = PRECISIONS[config.precision]
  for group, option in read_options(spec, config.problem.loss):
    key, value = f"{group}.{option.name}", config[group][option.name]
    if value is None:
      continue
    option.validate(group, tuple(value) if isinstance(value, list) else value)
    generic = KEY_CHECKS.get(option.kind)
    if generic is not None and (problem := generic(value)):
      raise ConfigError(f"{key} {problem}, got {value!r}")
    if option.kind is float:
      with np.errstate(over="ignore", under="ignore"):
        rounded = np.asarray(float(value), dtype)
      if not np.isfinite(rounded) or (value != 0 and rounded == 0):
        raise ConfigError(f"{key} = {value!r} is not representable in {config.precision} (it "
                          f"becomes {rounded.item()!r})")
  if spec.check is not None:
    spec.check(config)


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
