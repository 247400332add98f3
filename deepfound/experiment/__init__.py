"""From a config to a finished run: data, problem, method, metrics, checkpoints, progress."""

from deepfound.experiment.config import ConfigError, base_config, validate
from deepfound.experiment.runner import DivergenceError, run_experiment
