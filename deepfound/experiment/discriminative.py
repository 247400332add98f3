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


def _labelled_data(config, dataset: data_lib.Dataset, binary: bool):
  """The standardized (x, y), (x_test, y_test) of a classifier and its number of classes:
  labels -1/+1 and 0 classes (one score, as (17.4)) if ``binary``, else class ids."""
  (x, y), (x_test, y_test) = train_test(config, dataset)
  check_batch_size(config, len(y))
  source = source_name(config)
  if binary:
    y, y_test = (data_lib.binary_labels(t, source) for t in (y, y_test))
    return (x, y), (x_test, y_test), 0
  y, y_test, num_classes = data_lib.class_ids(y, y_test, source)
  return (x, y), (x_test, y_test), num_classes


def _flat(x):
  return x.reshape(len(x), -1)


def _net_problem(config, model, train, test) -> NetFiniteSum:
  """The finite sum of ``model`` (an NNX module) on the train and test samples, in the run's
  precision, with the config's loss and L2 weight."""
  from deepfound import models

  (x, y), (x_test, y_test) = train, test
  _, params, apply = models.split(model)
  dtype = precision_dtype(config.precision)
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  target_dtype = dtype if config.problem.loss == "logistic" else jnp.int32
  return NetFiniteSum(jnp.asarray(x, dtype), jnp.asarray(y, target_dtype),
                      jnp.asarray(x_test, dtype), jnp.asarray(y_test, target_dtype), params,
                      jnp.asarray(config.problem.l2, dtype), apply, config.problem.loss)


def build_perceptron(config, dataset: data_lib.Dataset) -> NetFiniteSum:
  """One layer, one score, no bias (17.3.2) on standardized, flattened features, labels -1/+1."""
  from flax import nnx

  from deepfound import models

  (x, y), (x_test, y_test), _ = _labelled_data(config, dataset, binary=True)
  x, x_test = _flat(x), _flat(x_test)
  model = models.perceptron(x.shape[1], rngs=nnx.Rngs(config.model.seed))
  return _net_problem(config, model, (x, y), (x_test, y_test))


def build_mlp(config, dataset: data_lib.Dataset) -> NetFiniteSum:
  """Fully connected layers of widths ``model.hidden`` and activation ``model.activation``
  (17.3.1) on standardized, flattened features, with class scores."""
  from flax import nnx

  from deepfound import models

  (x, y), (x_test, y_test), num_classes = _labelled_data(config, dataset, binary=False)
  x, x_test = _flat(x), _flat(x_test)
  sizes = [x.shape[1], *map(int, config.model.hidden), num_classes]
  model = models.MLP(sizes, config.model.activation, rngs=nnx.Rngs(config.model.seed))
  return _net_problem(config, model, (x, y), (x_test, y_test))


def build_cnn(config, dataset: data_lib.Dataset) -> NetFiniteSum:
  """Two 3x3 convolutions of ``model.channels`` channels with pooling (17.3.3) on standardized
  images, with class scores."""
  from flax import nnx

  from deepfound import models

  (x, y), (x_test, y_test), num_classes = _labelled_data(config, dataset, binary=False)
  if x.ndim != 4:
    raise ConfigError(f"model.name=cnn needs images; {source_name(config)} has samples of shape "
                      f"{x.shape[1:]}")
  channels = tuple(config.model.channels)
  height, width = x.shape[1:3]
  if 2 ** len(channels) > min(height, width):  # each convolution halves the image
    raise ConfigError(f"model.channels={channels}: {len(channels)} convolutions with 2x2 pooling "
                      f"leave nothing of {height} x {width} images; at most "
                      f"{int(np.log2(min(height, width)))}")
  model = models.CNN(x.shape[1:], num_classes, channels, rngs=nnx.Rngs(config.model.seed))
  return _net_problem(config, model, (x, y), (x_test, y_test))


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
    name="perceptron", build=build_perceptron, losses=("logistic",),
    summary="one layer, one score, no bias: logistic regression as a network (17.3.2)"))
register_model(ModelSpec(
    name="mlp", build=build_mlp, losses=("cross_entropy",), uses=("hidden", "activation"),
    summary="fully connected layers (model.hidden, model.activation), class scores (17.3.1)"))
def _check_cnn(config) -> None:
  if not config.model.channels:
    raise ConfigError("model.channels must name at least one convolution's channels, got ()")


register_model(ModelSpec(
    name="cnn", build=build_cnn, losses=("cross_entropy",), uses=("channels",), check=_check_cnn,
    summary="two 3x3 convolutions with pooling (model.channels), class scores (17.3.3)"))
