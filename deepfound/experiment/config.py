"""Experiment configs: the keys and defaults, derived from the registries, and validation at the
boundary (one clear line naming the key)."""

from __future__ import annotations

import contextlib
import copy

import jax
import ml_collections
from ml_collections import config_dict

from deepfound.data.registry import DATASETS
from deepfound.errors import ConfigError
from deepfound.experiment.checks import MAX_SEED, PRECISIONS  # noqa: F401
from deepfound.experiment.checks import number as _number
from deepfound.experiment.checks import one_of as _one_of
from deepfound.experiment.checks import positive as _positive
from deepfound.experiment.checks import positive_int as _positive_int
from deepfound.experiment.checks import seed as _seed
from deepfound.experiment.kinds import KINDS, get_kind
from deepfound.experiment.models import MODELS, SHARED_KEYS, check_shared_keys, problem_options
from deepfound.optim.driver import SAMPLINGS
from deepfound.optim.memory import LAYOUTS
from deepfound.optim.registry import RULES
from deepfound.optim.schedules import SCHEDULES
from deepfound.optim.schemes import SCHEMES
from deepfound.registry import MAX_STEPS

MEMORY_CHOICES = ("auto",) + LAYOUTS  # auto: the model's layout (scalar for linear models)


def precision_dtype(precision: str):
  """The float dtype of ``precision`` ("float32" or "float64")."""
  return PRECISIONS[precision]


def precision_scope(precision: str):
  """float64 runs trace and run with x64 enabled, within this scope only: JAX's dtype switch
  is process-wide state, and an experiment leaves it as it found it."""
  return jax.enable_x64(True) if precision == "float64" else contextlib.nullcontext()


def stored_config(stored: dict) -> ml_collections.ConfigDict:
  """A config read back from a run's config.json, with the keys added to ``base_config`` since
  that run was made at their defaults (so an older run resumes and restores), and keys renamed
  since under their new names (``KindSpec.upgrade`` of the model's kind)."""
  stored = copy.deepcopy(stored)
  name = (stored.get("model") or {}).get("name")
  if name in MODELS:
    upgrade = get_kind(MODELS.get(name).kind).upgrade
    if upgrade is not None:
      upgrade(stored)
  config = base_config()
  config.update(stored)
  return config


def base_config() -> ml_collections.ConfigDict:
  """Every key an experiment may set (a config file overrides some; flags override any),
  including the options of every registered rule (``optim.*``) and data set (``data.*``)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_steps = 1000
  config.log_every = 50
  config.precision = "float32"
  config.checkpoint_every = 20_000  # steps between checkpoints (rounded to whole log blocks)

  config.data = ml_collections.ConfigDict()
  config.data.name = "quantum"
  config.data.path = config_dict.placeholder(str)
  config.data.num_samples = 10_000
  config.data.num_features = 100
  config.data.seed = 0
  config.data.test_fraction = 0.25  # held-out share, for sets without a test split
  config.data.sparse = "auto"  # linear models: keep sparse data sparse (auto: below 10 % density)
  config.data.weights = config_dict.placeholder(str)  # sample weights: a file, or column:<j>
  for option in DATASETS.options().values():
    config.data[option.name] = option.config_default()

  config.model = ml_collections.ConfigDict()
  config.model.name = "linear"  # the linear models of 17.1; perceptron, mlp, cnn: 17.3
  for option in SHARED_KEYS.values():  # read by the models that name them in ModelSpec.uses
    config.model[option.name] = option.default
  config.model.seed = 0  # parameter initialization
  for option in MODELS.options().values():
    config.model[option.name] = option.config_default()

  config.problem = ml_collections.ConfigDict()
  config.problem.loss = "logistic"
  config.problem.l2 = 0.0
  for option in problem_options().values():
    config.problem[option.name] = option.config_default()

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "sgd"
  # A number, "auto" (scikit-learn's step for sag and saga), or None (the rule's default, if any).
  config.optim.learning_rate = config_dict.placeholder(object)
  config.optim.tol = config_dict.placeholder(float)  # stop at epoch ends (scikit-learn's test)
  config.optim.schedule = "constant"
  config.optim.l0 = 100.0
  config.optim.strong_convexity = config_dict.placeholder(float)  # None: problem.l2
  config.optim.batch_size = 1
  config.optim.sampling = "uniform"
  config.optim.memory = "auto"
  config.optim.max_memory_mb = config_dict.placeholder(float)  # None: see build.memory_budget
  for option in RULES.options().values():
    config.optim[option.name] = option.config_default()
  for kind in KINDS:  # the keys of each problem kind (a game's scheme and players)
    kind.add_keys(config)
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` naming the first bad key; checks what needs no data."""
  optim, data = config.optim, config.data
  _one_of("optim.name", optim.name, RULES.names())
  _one_of("data.name", data.name, DATASETS.names())
  _one_of("model.name", config.model.name, MODELS.names())
  _one_of("optim.schedule", optim.schedule, SCHEDULES)
  _one_of("optim.sampling", optim.sampling, SAMPLINGS)
  _one_of("optim.memory", optim.memory, MEMORY_CHOICES)
  _one_of("precision", config.precision, tuple(PRECISIONS))
  for key in ("num_steps", "log_every", "checkpoint_every"):
    _positive_int(key, config[key], largest=MAX_STEPS)
  for key in ("seed", "data.seed", "model.seed"):
    _seed(key, config[key])
  if config.num_steps % config.log_every:
    raise ConfigError(
        f"num_steps ({config.num_steps}) must be a multiple of log_every ({config.log_every})"
    )
  _positive_int("optim.batch_size", optim.batch_size)
  if config.problem.l2 is None or not _number("problem.l2", config.problem.l2) >= 0:
    raise ConfigError(f"problem.l2 must be >= 0, got {config.problem.l2!r}")
  if config.problem.l2 > 0:
    _positive("problem.l2", config.problem.l2, config.precision)
  if optim.max_memory_mb is not None:
    _positive("optim.max_memory_mb", optim.max_memory_mb)
  _validate_data(config)
  _validate_model(config)
  get_kind(MODELS.get(config.model.name).kind).validate(config)


def _validate_data(config) -> None:
  data, spec = config.data, DATASETS.get(config.data.name)
  for key in spec.requires:
    if not data[key]:
      raise ConfigError(f"data.{key} is required for data.name={spec.name}")
  for option in spec.options:
    option.validate("data", data[option.name])
  for key in ("num_samples", "num_features"):
    if key in spec.uses:
      _positive_int(f"data.{key}", data[key])
  _one_of("data.sparse", data.sparse, ("auto", "true", "false"))
  if data.weights is not None and not (isinstance(data.weights, str) and data.weights.strip()):
    raise ConfigError(f"data.weights must be a file or column:<j>, got {data.weights!r}")
  if data.weights and not MODELS.get(config.model.name).design_matrix:
    raise ConfigError(f"data.weights applies to model.name=linear, not {config.model.name}")
  rule = RULES.get(config.optim.name)
  if spec.stream:
    if data.weights:
      raise ConfigError(f"data.weights needs a finite data set; data.name={spec.name} is a stream")
    if rule.needs_finite_sum:
      raise ConfigError(
          f"optim.name={rule.name} needs a finite sum, but data.name={spec.name} draws a fresh "
          "sample every step (n = infinity); use a rule without one, e.g. sgd or sga")
    if not MODELS.get(config.model.name).streams or config.problem.loss != "logistic":
      raise ConfigError(f"data.name={spec.name} draws logistic samples for a linear model; use "
                        "model.name=linear and problem.loss=logistic")


def _validate_model(config) -> None:
  model, data = config.model, config.data
  spec = MODELS.get(model.name)
  _one_of("problem.loss", config.problem.loss, spec.losses)
  for option in spec.options:
    option.validate("model", model[option.name])
  for option in spec.problem_options:
    option.validate("problem", config.problem[option.name])
  own = {o.name for o in spec.problem_options}
  for option in problem_options().values():
    if option.name not in own and config.problem[option.name] not in (None, option.default):
      raise ConfigError(f"problem.{option.name} does not apply to model.name={model.name}")
  if DATASETS.get(data.name).stream:
    for option in spec.problem_options:
      if config.problem[option.name] not in (None, option.default):
        raise ConfigError(f"problem.{option.name} needs a finite data set; data.name="
                          f"{data.name} is a stream")
  if not 0 < _number("data.test_fraction", data.test_fraction) < 1:
    raise ConfigError(f"data.test_fraction must be in (0, 1), got {data.test_fraction}")
  check_shared_keys(spec, model)


KEY_HELP = {
    "seed": "PRNG seed of the sampling", "num_steps": "iterations to run",
    "log_every": "steps between objective evaluations (metrics lines)",
    "precision": "float32 or float64",
    "checkpoint_every": "steps between checkpoints (whole log blocks)",
    "data.name": "a registered data set (below)", "data.path": "the file or directory of file sets",
    "data.num_samples": "n of generated sets", "data.num_features": "p of generated sets",
    "data.seed": "seed of generated sets, shuffles and splits",
    "data.test_fraction": "held-out share for networks on sets without a test split",
    "model.name": "a registered model (below)", "model.seed": "parameter initialization seed",
    **{f"model.{o.name}": f"{o.help} (for the models that list it below)" for o in SHARED_KEYS.values()},
    "problem.loss": "the per-sample loss", "problem.l2": "weight of (l2/2)||b||^2",
    "optim.name": "a registered update rule (below)",
    "optim.learning_rate": "constant rate, tau0 of a schedule, or auto (scikit-learn's sag/saga "
                           "step); None: the rule's default",
    "optim.tol": "stop when max|change over an epoch| / max|weight| <= tol (checked at epoch "
                 "ends); None: run num_steps",
    "data.sparse": "linear models: auto (sparse input below 10% density stays sparse), true, "
                   "false",
    "data.weights": "sample weights: a file of one number per line, or column:<j> of the data",
    "optim.schedule": "the step-size schedule", "optim.l0": "warm-up length of the schedules",
    "optim.strong_convexity": "mu of strongly_convex (None: problem.l2)",
    "optim.scheme": "a game's scheme (below)",
    "optim.batch_size": "samples per step", "optim.sampling": "uniform or shuffle",
    "optim.memory": "SAG-family memory layout",
    "optim.max_memory_mb": "memory budget in MB (None: half the RAM on a CPU, 80% of an "
                           "accelerator's free memory)",
}


def describe() -> str:
  """The config keys with their defaults, the update rules, data sets and their options, for
  ``--help``."""
  base = base_config()
  options = ({f"optim.{o}" for o in RULES.options()} | {f"data.{o}" for o in DATASETS.options()}
             | {f"model.{o}" for o in MODELS.options()} | {f"problem.{o}" for o in problem_options()}
             | {f"optim.{o}" for o in SCHEMES.options()})
  lines = ["Config keys (--config.KEY=VALUE), default in brackets:"]
  for group in (None, "data", "model", "problem", "optim"):
    node = base if group is None else base[group]
    for key, value in node.items():
      name = key if group is None else f"{group}.{key}"
      if not isinstance(value, ml_collections.ConfigDict) and name not in options:
        lines.append(f"  {name:<24} [{value}] {KEY_HELP.get(name, '')}")
  lines += ["", "Update rules (optim.name):"]
  lines += [f"  {spec.name:<14} {spec.summary}" for spec in RULES]
  lines += [f"  optim.{o.name} (default {o.default}): {o.help}" for o in RULES.options().values()]
  lines += ["", "Data sets (data.name):"]
  lines += [f"  {spec.name:<14} {spec.summary}"
            + (f" [keys: {', '.join('data.' + k for k in spec.uses)}]" if spec.uses else "")
            for spec in DATASETS]
  lines += [f"  data.{o.name} (default {o.default}): {o.help}" for o in DATASETS.options().values()]
  lines += ["", "Models (model.name), with their losses (problem.loss, the first is the usual one):"]
  lines += [f"  {spec.name:<14} {spec.summary} [problem.loss: {', '.join(spec.losses)}]"
            + (f" [keys: {', '.join('model.' + k for k in spec.uses)}]" if spec.uses else "")
            for spec in MODELS]
  lines += [f"  model.{o.name} (default {o.default}): {o.help}" for o in MODELS.options().values()]
  lines += [f"  problem.{o.name} (default {o.default}): {o.help}" for o in problem_options().values()]
  lines += ["", "Problem kinds (a model's kind: its engine and keys):"]
  lines += [f"  {spec.name:<14} {spec.summary}" for spec in KINDS]
  lines += ["", "Game schemes (optim.scheme, for models of kind game):"]
  lines += [f"  {spec.name:<14} {spec.summary}" for spec in SCHEMES]
  lines += [f"  optim.{o.name} (default {o.default}): {o.help}" for o in SCHEMES.options().values()]
  lines += ["",
            f"Schedules (optim.schedule): {', '.join(SCHEDULES)}; sampling (optim.sampling): "
            f"{', '.join(SAMPLINGS)}; memory (optim.memory): {', '.join(MEMORY_CHOICES)}",
            "", "Every key and its default: python -c 'from deepfound.experiment import "
            "base_config; print(base_config())'"]
  return "\n".join(lines)
