"""From a config to a finished run: data, problem, rule, metrics, checkpoints, progress."""

from deepfound.errors import ConfigError
from deepfound.experiment.config import base_config, describe, precision_dtype, validate
from deepfound.experiment.runner import DivergenceError, precision_scope, run_experiment
