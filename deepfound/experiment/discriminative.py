"""The models of sections 17.1-17.3: linear models (dense data or a stream) and networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from deepfound import data as data_lib
from deepfound.errors import ConfigError
from deepfound.experiment.config import precision_dtype
from deepfound.experiment.models import (
    Built,
    ModelSpec,
    check_batch_size,
    register_model,
    source_name,
    train_test,
)
from deepfound.problems import (
    LOSSES,
    NetFiniteSum,
    binary_targets,
    make_logistic_stream,
    make_problem,
    make_sparse_problem,
)
from deepfound.problems.sparse import SPARSE_DENSITY
from deepfound.registry import Option

STREAM_EVALUATION_SAMPLES = 20_000  # the held-out sample on which a stream's E is estimated
SPARSE_CHOICES = ("auto", "true", "false")


def use_sparse(config, features) -> bool:
  """data.sparse: true, false, or auto (sparse input below ``SPARSE_DENSITY`` stays sparse)."""
  if config.data.sparse == "auto":
    return data_lib.is_sparse(features) and data_lib.density(features) < SPARSE_DENSITY
  return config.data.sparse == "true"


def build_linear(config, dataset: data_lib.Dataset | None):
  """The linear models of 17.1 on a data set (dense or sparse rows, with sample weights, an
  intercept and an L1 term), or logistic regression on a stream (17.2)."""
  dtype = precision_dtype(config.precision)
  problem_config = config.problem
  if dataset is None:
    return make_logistic_stream(config.data.num_features, config.data.seed, problem_config.l2,
                                num_eval=STREAM_EVALUATION_SAMPLES, dtype=dtype)
  source = source_name(config)
  features, targets, notes = dataset.features, np.asarray(dataset.targets), []
  if not data_lib.is_sparse(features):
    features = np.asarray(features).reshape(len(features), -1)
  weights = None
  if config.data.weights:
    weights, features = data_lib.load_sample_weights(config.data.weights, features.shape[0],
                                                     features)
  if problem_config.loss == "logistic":
    try:
      targets, note = binary_targets(targets)
    except ValueError as e:
      raise data_lib.DataError(f"{source}: {e} (problem.loss=logistic; use "
                               "problem.loss=multinomial for classes)") from e
    if note:
      notes.append(note)
  check_batch_size(config, features.shape[0])
  sparse = use_sparse(config, features)
  if data_lib.is_sparse(features):
    notes.append(f"{source}: {features.shape[0]:,} x {features.shape[1]:,}, density "
                 f"{data_lib.density(features):.4%}, run {'sparse' if sparse else 'dense'} "
                 f"(data.sparse={config.data.sparse})")
  make = make_sparse_problem if sparse else make_problem
  problem = make(features, targets, problem_config.l2, problem_config.loss, dtype,
                 l1=problem_config.l1, fit_intercept=problem_config.fit_intercept,
                 sample_weight=weights)
  return Built(problem, tuple(notes))


def build_network(config, dataset: data_lib.Dataset) -> NetFiniteSum:
  """A perceptron, MLP or CNN (17.3) on standardized features, with its loss."""
  from flax import nnx

  from deepfound import models

  (x, y), (x_test, y_test) = train_test(config, dataset)
  check_batch_size(config, len(y))
  source = source_name(config)
  rngs = nnx.Rngs(config.model.seed)
  model_config = config.model
  if model_config.name == "perceptron":  # one score, labels -1/+1 as (17.4)
    y, y_test = (data_lib.binary_labels(t, source) for t in (y, y_test))
    num_classes = 0
  else:
    y, y_test, num_classes = data_lib.class_ids(y, y_test, source)
  if model_config.name == "cnn":
    if x.ndim != 4:
      raise ConfigError(f"model.name=cnn needs images; {source} has samples of shape {x.shape[1:]}")
    model = models.CNN(x.shape[1:], num_classes, tuple(model_config.channels), rngs=rngs)
  else:
    x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    if model_config.name == "perceptron":
      model = models.perceptron(x.shape[1], rngs=rngs)
    else:
      sizes = [x.shape[1], *map(int, model_config.hidden), num_classes]
      model = models.MLP(sizes, model_config.activation, rngs=rngs)
  _, params, apply = models.split(model)
  dtype = precision_dtype(config.precision)
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  target_dtype = dtype if config.problem.loss == "logistic" else jnp.int32
  return NetFiniteSum(jnp.asarray(x, dtype), jnp.asarray(y, target_dtype),
                      jnp.asarray(x_test, dtype), jnp.asarray(y_test, target_dtype), params,
                      jnp.asarray(config.problem.l2, dtype), apply, config.problem.loss)


FIT_INTERCEPT = Option(
    "fit_intercept", bool, False,
    "linear: an unpenalized intercept (the last parameter row), scikit-learn's convention")
L1 = Option("l1", float, 0.0, "linear: weight of l1 ||b||_1 (elastic net with problem.l2); "
            "sgd and saga take its proximal step",
            check=lambda v: None if v >= 0 and np.isfinite(v) else "must be >= 0")

register_model(ModelSpec(
    name="linear", build=build_linear, losses=LOSSES, memory="scalar", streams=True,
    design_matrix=True,
    summary="linear models of 17.1: logistic, least squares, multinomial (data sets or a stream)",
    problem_options=(FIT_INTERCEPT, L1)))
register_model(ModelSpec(
    name="perceptron", build=build_network, losses=("logistic",),
    summary="one layer, one score, no bias: logistic regression as a network (17.3.2)"))
register_model(ModelSpec(
    name="mlp", build=build_network, losses=("cross_entropy",),
    summary="fully connected layers (model.hidden, model.activation), class scores (17.3.1)"))
register_model(ModelSpec(
    name="cnn", build=build_network, losses=("cross_entropy",),
    summary="two 3x3 convolutions with pooling (model.channels), class scores (17.3.3)"))
