"""Experiment configs: the shared defaults, and validation at the boundary (one clear line)."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from deepfound.data import DATASETS, NET_DATASETS
from deepfound.optim import METHODS, SCHEDULES
from deepfound.optim.driver import MEMORY_METHODS, SAMPLINGS
from deepfound.optim.memory import LAYOUTS
from deepfound.problems import LOSSES, NET_LOSSES

PRECISIONS = ("float32", "float64")
MODELS = ("linear", "perceptron", "mlp", "cnn")
OPTAX_BASELINES = ("adam",)


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
  config.data.test_fraction = 0.25  # held-out share, for sets without a test split

  config.model = ml_collections.ConfigDict()
  config.model.name = "linear"  # the linear models of 17.1; perceptron, mlp, cnn: 17.3
  config.model.hidden = (64,)  # mlp: hidden layer widths
  config.model.activation = "relu"  # mlp: relu, sigmoid or tanh
  config.model.channels = (8, 16)  # cnn: channels of the two convolutions
  config.model.seed = 0  # parameter initialization

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
  config.optim.max_memory_mb = config_dict.placeholder(float)  # SAG-family memory (default: RAM/2)
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
  _one_of("optim.name", optim.name, METHODS + OPTAX_BASELINES)
  _one_of("model.name", config.model.name, MODELS)
  _one_of("optim.schedule", optim.schedule, SCHEDULES)
  _one_of("optim.sampling", optim.sampling, SAMPLINGS)
  _one_of("optim.memory", optim.memory, LAYOUTS)
  _one_of("precision", config.precision, PRECISIONS)
  if config.model.name == "linear":
    _one_of("data.name", data.name, DATASETS)
    _one_of("problem.loss", config.problem.loss, LOSSES)
  else:
    _validate_net(config)
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


def _validate_net(config) -> None:
  model, data = config.model, config.data
  _one_of("data.name", data.name, NET_DATASETS)
  _one_of("problem.loss", config.problem.loss, NET_LOSSES)
  if model.name == "perceptron" and config.problem.loss != "logistic":
    raise ConfigError("model.name=perceptron takes problem.loss=logistic (one score)")
  if model.name != "perceptron" and config.problem.loss != "cross_entropy":
    raise ConfigError(f"model.name={model.name} takes problem.loss=cross_entropy")
  if model.name == "cnn" and data.name in ("moons", "spirals"):
    raise ConfigError(f"model.name=cnn needs images; data.name={data.name} is 2-D points")
  if config.optim.memory != "pytree":
    raise ConfigError("optim.memory=scalar is for linear models; networks need optim.memory=pytree")
  if config.optim.learning_rate is None:
    raise ConfigError(f"optim.learning_rate is required for networks (model.name={model.name})")
  if data.name in ("mnist_idx", "npz") and not data.path:
    raise ConfigError(f"data.path is required for data.name={data.name}")
  if not 0 < data.test_fraction < 1:
    raise ConfigError(f"data.test_fraction must be in (0, 1), got {data.test_fraction}")
  if any(int(width) < 1 for width in model.hidden) or any(int(c) < 1 for c in model.channels):
    raise ConfigError("model.hidden and model.channels must be positive integers")
  if model.activation not in ("relu", "sigmoid", "tanh"):
    raise ConfigError(f"model.activation must be one of relu, sigmoid, tanh, got "
                      f"{model.activation!r}")
