"""Empirical risk of a network as a finite sum (17.3): E(b) = (1/n) sum_i L(f(x_i, b), y_i)
+ (l2/2) ||b||^2, with b the network's parameter pytree."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from deepfound.problems.kinds import SampleTerms

NET_LOSSES = ("cross_entropy", "logistic")


def _loss(kind: str, scores: jax.Array, targets: jax.Array) -> jax.Array:
  if kind == "cross_entropy":  # targets: class ids
    return optax.softmax_cross_entropy_with_integer_labels(scores, targets.astype(jnp.int32))
  if kind == "logistic":  # one score, targets +-1: log(1 + exp(-y s)), as (17.4)
    return jnp.logaddexp(0.0, -targets * scores[..., 0])
  raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(NET_LOSSES)}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NetFiniteSum:
  """The training loss of ``apply(params, x)`` on (features, targets); the test set rides along
  for accuracies. Used by the same driver and update rules as the linear problems, with the
  pytree gradient memory for the SAG family (one gradient per sample for every parameter)."""

  features: jax.Array  # (n, *input_shape)
  targets: jax.Array  # (n,)
  test_features: jax.Array
  test_targets: jax.Array
  initial_params: Any  # parameter pytree (e.g. an nnx.State) at initialization
  l2: jax.Array
  apply: Callable = dataclasses.field(metadata=dict(static=True))
  loss: str = dataclasses.field(default="cross_entropy", metadata=dict(static=True))

  @property
  def num_samples(self) -> int:
    return self.features.shape[0]

  @property
  def num_features(self) -> int:
    return int(jnp.size(self.features[0]))

  def init_params(self):
    return self.initial_params

  def _sample_loss(self, params, x, y):
    penalty = 0.5 * self.l2 * optax.tree.norm(params, squared=True)
    return _loss(self.loss, self.apply(params, x), y) + penalty

  def batch(self, indices):
    """(x_b, y_b): the samples at ``indices``."""
    return self.features[indices], self.targets[indices]

  def with_l2(self, l2: jax.Array) -> NetFiniteSum:
    return dataclasses.replace(self, l2=l2)

  def terms(self, params, batch) -> SampleTerms:
    """Per-sample gradients with a leading batch axis (nets have no scalar memory form)."""
    x_b, y_b = batch
    return SampleTerms(jax.vmap(jax.grad(self._sample_loss), (None, 0, 0))(params, x_b, y_b))

  def mean_gradient(self, params, batch):
    """Gradient of the minibatch's mean loss, without per-sample gradients (SGD, SGA, adam)."""
    x_b, y_b = batch

    def batch_loss(p):
      return jnp.mean(jax.vmap(self._sample_loss, (None, 0, 0))(p, x_b, y_b))
    return jax.grad(batch_loss)(params)

  def objective(self, params) -> jax.Array:
    data = jnp.mean(_loss(self.loss, self.apply(params, self.features), self.targets))
    return data + 0.5 * self.l2 * optax.tree.norm(params, squared=True)

  def gradient(self, params):
    return jax.grad(self.objective)(params)

  def regularizer_gradient(self, params):
    return jax.tree.map(lambda p: self.l2 * p, params)

  def snapshot(self, params, memory: str):
    """Every per-sample gradient at ``params`` and their mean (SVRG's refresh)."""
    if memory != "pytree":
      raise ValueError("networks need memory='pytree'")
    table = jax.vmap(jax.grad(self._sample_loss), (None, 0, 0))(params, self.features,
                                                                 self.targets)
    return table, jax.tree.map(lambda t: jnp.mean(t, axis=0), table)

  def metrics(self, params) -> dict[str, jax.Array]:
    """Logged beside the objective: the data loss and the train and test accuracies."""
    loss = jnp.mean(_loss(self.loss, self.apply(params, self.features), self.targets))
    return dict(loss=loss, train_accuracy=self.accuracy(params, self.features, self.targets),
                test_accuracy=self.accuracy(params, self.test_features, self.test_targets))

  def accuracy(self, params, features, targets) -> jax.Array:
    scores = self.apply(params, features)
    if self.loss == "logistic":
      return jnp.mean(jnp.where(scores[..., 0] > 0, 1.0, -1.0) == targets)
    return jnp.mean(jnp.argmax(scores, axis=-1) == targets)
