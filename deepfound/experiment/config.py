"""Experiment configs: the keys and defaults, derived from the registries, and validation at the
boundary (one clear line naming the key)."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_dict

from deepfound.data.registry import DATASETS
from deepfound.errors import ConfigError
from deepfound.experiment.models import MODELS, problem_options
from deepfound.models.activations import ACTIVATIONS
from deepfound.optim.driver import SAMPLINGS
from deepfound.optim.game import PLAYERS, SCHEMES
from deepfound.optim.memory import LAYOUTS
from deepfound.optim.registry import RULES
from deepfound.optim.schedules import SCHEDULES
from deepfound.registry import MAX_STEPS, Option

PRECISIONS = {"float32": jnp.float32, "float64": jnp.float64}
MEMORY_CHOICES = ("auto",) + LAYOUTS  # auto: the model's layout (scalar for linear models)


def precision_dtype(precision: str):
  """The float dtype of ``precision`` ("float32" or "float64")."""
  return PRECISIONS[precision]


def _placeholder(option: Option):
  return config_dict.placeholder(option.kind) if option.default is None else option.default


def stored_config(stored: dict) -> ml_collections.ConfigDict:
  """A config read back from a run's config.json, with the keys added to ``base_config`` since
  that run was made at their defaults (so an older run resumes and restores)."""
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
    config.data[option.name] = _placeholder(option)

  config.model = ml_collections.ConfigDict()
  config.model.name = "linear"  # the linear models of 17.1; perceptron, mlp, cnn: 17.3
  config.model.hidden = (64,)  # mlp: hidden layer widths
  config.model.activation = "relu"  # mlp: one of models.ACTIVATIONS
  config.model.channels = (8, 16)  # cnn: channels of the two convolutions
  config.model.seed = 0  # parameter initialization
  for option in MODELS.options().values():
    config.model[option.name] = _placeholder(option)

  config.problem = ml_collections.ConfigDict()
  config.problem.loss = "logistic"
  config.problem.l2 = 0.0
  for option in problem_options().values():
    config.problem[option.name] = _placeholder(option)

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
    config.optim[option.name] = _placeholder(option)
  # Games (model.name=gan): each player's rule, a full optim group of its own, and the scheme
  # (scheme=svre takes its snapshot every optim.svrg_frequency steps, default one epoch).
  config.optim.scheme = "alternating"
  config.optim.discriminator_steps = 1
  for player in PLAYERS:
    group = ml_collections.ConfigDict()
    group.name = "adam"
    group.learning_rate = config_dict.placeholder(float)
    group.schedule = "constant"
    group.l0 = 100.0
    group.strong_convexity = config_dict.placeholder(float)
    for option in RULES.options().values():
      group[option.name] = _placeholder(option)
    config.optim[player] = group
  return config


def _one_of(key: str, value, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")


MAX_SEED = 2**32 - 1  # jax.random.PRNGKey takes a uint32 seed


def _number(key: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
    raise ConfigError(f"{key} must be a finite number, got {value!r}")
  return float(value)


def _positive(key: str, value, precision: str | None = None) -> None:
  """A finite number > 0 that stays > 0 and finite in the run's precision."""
  if value is None or not _number(key, value) > 0:
    raise ConfigError(f"{key} must be > 0, got {value!r}")
  if precision is not None:
    with np.errstate(over="ignore", under="ignore"):
      rounded = np.asarray(value, PRECISIONS[precision])
    if not (np.isfinite(rounded) and rounded > 0):
      raise ConfigError(f"{key} = {value!r} is not representable in {precision} (it becomes "
                        f"{rounded.item()!r})")


def _positive_int(key: str, value, largest: int | None = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{key} must be a positive integer, got {value!r}")
  if largest is not None and value > largest:
    raise ConfigError(f"{key} must be at most {largest:,}, got {value!r}")


def _seed(key: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
    raise ConfigError(f"{key} must be an integer in [0, {MAX_SEED}], got {value!r}")


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
  if MODELS.get(config.model.name).game:
    _validate_game(config)
  else:
    _validate_rule(config)
  _validate_data(config)
  _validate_model(config)


def _validate_game(config) -> None:
  optim = config.optim
  _one_of("optim.scheme", optim.scheme, SCHEMES)
  _positive_int("optim.discriminator_steps", optim.discriminator_steps)
  if optim.scheme == "svre":  # the snapshot period, as for svrg (default: one epoch)
    period, = (o for o in RULES.get("svrg").options if o.name == "svrg_frequency")
    period.validate("optim", optim.svrg_frequency)
  elif optim.svrg_frequency is not None:
    raise ConfigError(f"optim.svrg_frequency={optim.svrg_frequency} is the snapshot period of "
                      f"optim.scheme=svre; the game's scheme is {optim.scheme}")
  if optim.scheme != "alternating" and optim.discriminator_steps != 1:
    raise ConfigError(f"optim.discriminator_steps={optim.discriminator_steps} applies to "
                      f"optim.scheme=alternating only (the scheme is {optim.scheme})")
  for player in PLAYERS:
    group, prefix = optim[player], f"optim.{player}"
    _one_of(f"{prefix}.name", group.name, RULES.names())
    spec = RULES.get(group.name)
    if spec.needs_finite_sum or spec.oracle != "minibatch":
      raise ConfigError(f"{prefix}.name={group.name} needs a finite sum or its own gradient "
                        "oracle; a game draws fresh samples every step: use sgd, sga or adam")
    for option in spec.options:
      option.validate(prefix, group[option.name])
    _one_of(f"{prefix}.schedule", group.schedule, SCHEDULES)
    if group.schedule == "strongly_convex":
      raise ConfigError(f"{prefix}.schedule=strongly_convex needs a strongly convex objective; "
                        "a game has none")
    if group.learning_rate is None:
      raise ConfigError(f"{prefix}.learning_rate is required (a float > 0)")
    _positive(f"{prefix}.learning_rate", group.learning_rate, config.precision)
    if group.schedule in ("inverse_time", "inverse_sqrt"):
      _positive(f"{prefix}.l0", group.l0, config.precision)


def _validate_rule(config) -> None:
  optim = config.optim
  spec = RULES.get(optim.name)
  for option in spec.options:
    option.validate("optim", optim[option.name])
  if optim.schedule == "strongly_convex":
    if optim.strong_convexity is None and not config.problem.l2 > 0:
      raise ConfigError("optim.strong_convexity must be > 0 for the strongly_convex schedule "
                        "(or set problem.l2 > 0 to use it as mu)")
    if optim.strong_convexity is not None:
      _positive("optim.strong_convexity", optim.strong_convexity, config.precision)
  elif optim.learning_rate is None:
    if spec.default_learning_rate is None or config.model.name != "linear":
      raise ConfigError(f"optim.learning_rate is required for {optim.name} (a float > 0)")
  elif isinstance(optim.learning_rate, str):
    if optim.learning_rate != "auto":
      raise ConfigError(f"optim.learning_rate must be a number > 0 or auto, got "
                        f"{optim.learning_rate!r}")
    if spec.auto_learning_rate is None or not MODELS.get(config.model.name).design_matrix:
      raise ConfigError(f"optim.learning_rate=auto is scikit-learn's step of sag and saga on "
                        f"model.name=linear; give {optim.name} a number")
    if optim.schedule != "constant":
      raise ConfigError("optim.learning_rate=auto is a constant step; use optim.schedule=constant")
  else:
    _positive("optim.learning_rate", optim.learning_rate, config.precision)
  if optim.tol is not None:
    _positive("optim.tol", optim.tol)
  l1 = config.problem.get("l1") or 0.0
  if l1 and not spec.proximal:
    raise ConfigError(f"problem.l1 > 0 needs a rule that takes proximal steps (sgd, saga); "
                      f"{optim.name} does not")
  if optim.schedule in ("inverse_time", "inverse_sqrt"):
    _positive("optim.l0", optim.l0, config.precision)


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
  rule = RULES.get(config.optim.name)
  if not spec.game and not spec.finite_sum and rule.needs_finite_sum:
    raise ConfigError(f"optim.name={rule.name} needs a finite sum, but model.name={spec.name} "
                      "draws fresh latents and data every step; use sgd, sga or adam")
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
  if config.optim.memory not in ("auto", spec.memory) and rule.keeps_memory and not spec.game:
    raise ConfigError(f"optim.memory={config.optim.memory} does not fit model.name={model.name}; "
                      f"use optim.memory={spec.memory} (or auto)")
  if not 0 < _number("data.test_fraction", data.test_fraction) < 1:
    raise ConfigError(f"data.test_fraction must be in (0, 1), got {data.test_fraction}")
  for key in ("hidden", "channels"):
    widths = model[key]
    if not isinstance(widths, tuple | list) or any(
        isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
      raise ConfigError(f"model.{key} must be a tuple of positive integers, got {widths!r}")
  _one_of("model.activation", model.activation, tuple(ACTIVATIONS))


KEY_HELP = {
    "seed": "PRNG seed of the sampling", "num_steps": "iterations to run",
    "log_every": "steps between objective evaluations (metrics lines)",
    "precision": "float32 or float64",
    "checkpoint_every": "steps between checkpoints (whole log blocks)",
    "data.name": "a registered data set (below)", "data.path": "the file or directory of file sets",
    "data.num_samples": "n of generated sets", "data.num_features": "p of generated sets",
    "data.seed": "seed of generated sets, shuffles and splits",
    "data.test_fraction": "held-out share for networks on sets without a test split",
    "model.name": "a registered model (below)", "model.hidden": "hidden widths (mlp and 17.4's nets)",
    "model.activation": "activation of the hidden layers", "model.channels": "cnn channels",
    "model.seed": "parameter initialization seed",
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
             | {f"model.{o}" for o in MODELS.options()} | {f"problem.{o}" for o in problem_options()})
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
            for spec in MODELS]
  lines += [f"  model.{o.name} (default {o.default}): {o.help}" for o in MODELS.options().values()]
  lines += [f"  problem.{o.name} (default {o.default}): {o.help}" for o in problem_options().values()]
  lines += ["",
            f"Schedules (optim.schedule): {', '.join(SCHEDULES)}; sampling (optim.sampling): "
            f"{', '.join(SAMPLINGS)}; memory (optim.memory): {', '.join(MEMORY_CHOICES)}",
            "", "Every key and its default: python -c 'from deepfound.experiment import "
            "base_config; print(base_config())'"]
  return "\n".join(lines)
