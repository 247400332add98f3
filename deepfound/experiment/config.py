"""Experiment configs: the shared defaults, and validation at the boundary (one clear line)."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from deepfound.data import DATASETS
from deepfound.optim import METHODS, SCHEDULES
from deepfound.optim.driver import MEMORY_METHODS, SAMPLINGS
from deepfound.optim.memory import LAYOUTS
from deepfound.problems import LOSSES

PRECISIONS = ("float32", "float64")


class ConfigError(ValueError):
  """A config value is missing, out of range or inconsistent with another."""


def base_config() -> ml_collections.ConfigDict:
  """Every key an experiment may set (a config file overrides some; flags override any)."""
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

  config.problem = ml_collections.ConfigDict()
  config.problem.loss = "logistic"
  config.problem.l2 = 0.0

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "sgd"
  config.optim.learning_rate = config_dict.placeholder(float)  # bgd: None means 1/L
  config.optim.schedule = "constant"
  config.optim.l0 = 100.0
  config.optim.strong_convexity = config_dict.placeholder(float)  # None: problem.l2
  config.optim.batch_size = 1
  config.optim.sampling = "uniform"
  config.optim.memory = "scalar"
  config.optim.average_over_seen = False
  config.optim.svrg_frequency = config_dict.placeholder(int)
  return config


def _one_of(key: str, value, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _positive(key: str, value) -> None:
  if value is None or not value > 0:
    raise ConfigError(f"{key} must be > 0, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` naming the first bad key; checks what needs no data."""
  optim, data = config.optim, config.data
  _one_of("optim.name", optim.name, METHODS)
  _one_of("optim.schedule", optim.schedule, SCHEDULES)
  _one_of("optim.sampling", optim.sampling, SAMPLINGS)
  _one_of("optim.memory", optim.memory, LAYOUTS)
  _one_of("precision", config.precision, PRECISIONS)
  _one_of("data.name", data.name, DATASETS)
  _one_of("problem.loss", config.problem.loss, LOSSES)
  for key in ("num_steps", "log_every", "checkpoint_every"):
    if not isinstance(config[key], int) or config[key] < 1:
      raise ConfigError(f"{key} must be a positive integer, got {config[key]!r}")
  if config.num_steps % config.log_every:
    raise ConfigError(
        f"num_steps ({config.num_steps}) must be a multiple of log_every ({config.log_every})"
    )
  if optim.schedule == "strongly_convex":
    if optim.strong_convexity is None and not config.problem.l2 > 0:
      raise ConfigError("optim.strong_convexity must be > 0 for the strongly_convex schedule "
                        "(or set problem.l2 > 0 to use it as mu)")
    if optim.strong_convexity is not None:
      _positive("optim.strong_convexity", optim.strong_convexity)
  elif optim.learning_rate is None:
    if optim.name != "bgd":
      raise ConfigError(f"optim.learning_rate is required for {optim.name} (a float > 0)")
  else:
    _positive("optim.learning_rate", optim.learning_rate)
  if optim.schedule in ("inverse_time", "inverse_sqrt"):
    _positive("optim.l0", optim.l0)
  if not isinstance(optim.batch_size, int) or optim.batch_size < 1:
    raise ConfigError(f"optim.batch_size must be a positive integer, got {optim.batch_size!r}")
  if optim.svrg_frequency is not None and optim.svrg_frequency < 1:
    raise ConfigError(f"optim.svrg_frequency must be a positive integer, got {optim.svrg_frequency}")
  if config.problem.l2 is None or config.problem.l2 < 0:
    raise ConfigError(f"problem.l2 must be >= 0, got {config.problem.l2!r}")
  if data.name == "stream" and optim.name in MEMORY_METHODS + ("bgd",):
    raise ConfigError(
        f"optim.name={optim.name} needs a finite sum, but data.name=stream draws a fresh sample "
        "every step (n = infinity); use sgd or sga"
    )
  if data.name == "libsvm" and not data.path:
    raise ConfigError("data.path is required for data.name=libsvm")
  if data.name in ("synthetic", "stream"):
    _positive("data.num_features", data.num_features)
    if data.name == "synthetic":
      _positive("data.num_samples", data.num_samples)
  if config.problem.loss == "multinomial" and data.name != "libsvm":
    raise ConfigError(f"problem.loss=multinomial needs class labels; data.name={data.name} is "
                      "binary (multinomial works with data.name=libsvm)")
  if config.problem.loss != "logistic" and data.name == "stream":
    raise ConfigError("data.name=stream draws logistic samples; use problem.loss=logistic")
