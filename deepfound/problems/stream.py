"""The expectation setting (17.2): a fresh sample z ~ pi at every step, n = infinity."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from deepfound.problems.linear import LinearFiniteSum, make_problem


def _draw(true_params: jax.Array, key: jax.Array, batch: int):
  key_x, key_y = jax.random.split(key)
  x = jax.random.normal(key_x, (batch, true_params.shape[0]), true_params.dtype)
  positive = jax.random.uniform(key_y, (batch,), true_params.dtype) < jax.nn.sigmoid(x @ true_params)
  return x, jnp.where(positive, 1.0, -1.0).astype(true_params.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LogisticStream:
  """E(b) = E_{(x,y) ~ pi} log(1 + exp(-y <x, b>)) + (l2/2)||b||^2 with x ~ N(0, I_p) and
  P(y = +1 | x) = sigmoid(<x, b_true>).

  SGD and SGA apply verbatim; SAG, SAGA and SVRG need a finite n and refuse. E is estimated on a
  held-out sample drawn once (``evaluation``), so reported objectives are Monte-Carlo estimates.
  """

  true_params: jax.Array  # (p,)
  evaluation: LinearFiniteSum  # held-out sample for estimating E

  @property
  def num_features(self) -> int:
    return self.true_params.shape[0]

  @property
  def l2(self) -> jax.Array:
    return self.evaluation.l2

  def init_params(self) -> jax.Array:
    return jnp.zeros_like(self.true_params)

  def draw(self, key: jax.Array, batch: int):
    """A fresh minibatch (x (b, p), y (b,)) from pi."""
    return _draw(self.true_params, key, batch)

  def terms(self, params, batch):
    return self.evaluation.terms(params, batch)

  def metrics(self, params):
    return self.evaluation.metrics(params)

  def with_l2(self, l2: jax.Array) -> LogisticStream:
    return dataclasses.replace(self, evaluation=self.evaluation.with_l2(l2))

  def objective(self, params):
    return self.evaluation.objective(params)

  def mean_gradient(self, params, batch):
    return self.evaluation.mean_gradient(params, batch)

  def regularizer_gradient(self, params):
    return self.evaluation.regularizer_gradient(params)


def make_logistic_stream(
    num_features: int, seed: int, l2: float = 0.0, num_eval: int = 20_000, dtype=jnp.float32
) -> LogisticStream:
  key_true, key_eval = jax.random.split(jax.random.key(seed))
  true_params = jax.random.normal(key_true, (num_features,), dtype) * (2.0 / jnp.sqrt(num_features))
  x, y = _draw(true_params, key_eval, num_eval)
  return LogisticStream(true_params, make_problem(x, y, l2=l2, loss="logistic", dtype=dtype))
