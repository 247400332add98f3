"""From a config to a finished run: data, problem, rule, metrics, checkpoints, progress.

Importing the package registers the built-in problem kinds (``kinds.py``: ``objectives.py``,
``games.py``) and the built-in models (``models.py``): those of 17.1-17.3
(``discriminative.py``) and of 17.4 (``generative.py``, ``gan.py``) and beyond it
(``flow_matching.py``), in the order ``--help`` lists them."""
# ruff: noqa: I001

from deepfound.errors import ConfigError
from deepfound.experiment.kinds import KINDS, KindSpec, get_kind, register_kind
from deepfound.experiment.models import MODELS, ModelSpec, get_model, register_model
from deepfound.experiment import objectives
from deepfound.experiment import games
from deepfound.experiment import discriminative
from deepfound.experiment import generative
from deepfound.experiment import gan
from deepfound.experiment import flow_matching
from deepfound.experiment.config import (
    base_config,
    describe,
    precision_dtype,
    precision_scope,
    stored_config,
    validate,
)
from deepfound.experiment.runner import DivergenceError, run_experiment
