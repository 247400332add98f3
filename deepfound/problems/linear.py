"""Finite sums of linear models, E(b) = (1/n) sum_i L(<x_i, b>, y_i) + (l2/2) ||b||^2 (17.1, 17.4).

Every per-sample gradient has the form grad E_i(b) = x_i (x) s_i + l2 b with s_i = L'(<x_i, b>, y_i)
(a scalar for binary logistic and least squares, a vector of K logits for multinomial), which is
what the scalar gradient memory of SAG exploits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.optim.memory import batch_mean
from deepfound.problems.kinds import SampleTerms

LOSSES = ("logistic", "multinomial", "least_squares")

# Bound on the second derivative of each loss in its score, so that L = c ||X||_2^2 / n + l2.
_CURVATURE = {"logistic": 0.25, "multinomial": 0.5, "least_squares": 1.0}


def loss_value(loss: str, scores: jax.Array, targets: jax.Array) -> jax.Array:
  """L(s, y) per sample. Logistic: log(1 + exp(-s y)) with y in {-1, +1} (17.4)."""
  if loss == "logistic":
    return jnp.logaddexp(0.0, -scores * targets)
  if loss == "least_squares":
    return 0.5 * jnp.square(scores - targets)
  if loss == "multinomial":
    picked = jnp.take_along_axis(scores, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jax.nn.logsumexp(scores, axis=-1) - picked
  raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")


def loss_derivative(loss: str, scores: jax.Array, targets: jax.Array) -> jax.Array:
  """dL/ds per sample. Logistic: -y e^{-sy} / (1 + e^{-sy}) = -y sigmoid(-s y)."""
  if loss == "logistic":
    return -targets * jax.nn.sigmoid(-scores * targets)
  if loss == "least_squares":
    return scores - targets
  if loss == "multinomial":
    num_classes = scores.shape[-1]
    return jax.nn.softmax(scores, axis=-1) - jax.nn.one_hot(targets, num_classes, dtype=scores.dtype)
  raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearFiniteSum:
  """E(b) = (1/n) sum_i L(<x_i, b>, y_i) + (l2/2) ||b||^2 on arrays held on the device.

  ``l2`` is a pytree leaf so a sweep can ``vmap`` over it; ``loss`` and ``num_classes`` are static.
  Parameters have shape (p,) (binary logistic, least squares) or (p, K) (multinomial).
  """

  features: jax.Array  # (n, p)
  targets: jax.Array  # (n,): +-1 (logistic), reals (least squares), class ids (multinomial)
  l2: jax.Array  # scalar, weight of (l2/2)||b||^2
  loss: str = dataclasses.field(default="logistic", metadata=dict(static=True))
  num_classes: int = dataclasses.field(default=0, metadata=dict(static=True))

  @property
  def num_samples(self) -> int:
    return self.features.shape[0]

  @property
  def num_features(self) -> int:
    return self.features.shape[1]

  @property
  def param_shape(self) -> tuple[int, ...]:
    if self.loss == "multinomial":
      return (self.num_features, self.num_classes)
    return (self.num_features,)

  def init_params(self) -> jax.Array:
    """The chapter starts every method at b = 0."""
    return jnp.zeros(self.param_shape, self.features.dtype)

  def batch(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x_b (b, p), y_b (b,)): the rows at ``indices``."""
    return self.features[indices], self.targets[indices]

  def with_l2(self, l2: jax.Array) -> LinearFiniteSum:
    return dataclasses.replace(self, l2=l2)

  def metrics(self, params: jax.Array) -> dict[str, jax.Array]:
    del params
    return {}

  def terms(self, params: jax.Array, batch: tuple[jax.Array, jax.Array]) -> SampleTerms:
    """Per-sample gradients x_k (x) s_k + l2 b, (b, *param_shape), their scales s_k (b, *slot)
    and the rows x_k."""
    x_b, y_b = batch
    # Broadcast products instead of dots: for one sample they fuse into a single XLA kernel.
    if params.ndim == 1:
      scores_b = jnp.sum(x_b * params, axis=-1)
    else:
      scores_b = jnp.sum(x_b[..., None] * params, axis=-2)
    scale_b = loss_derivative(self.loss, scores_b, y_b)
    scale_bp = scale_b.reshape(scale_b.shape[:1] + (1,) + scale_b.shape[1:])
    gradients_b = x_b.reshape(x_b.shape + (1,) * (params.ndim - 1)) * scale_bp + self.l2 * params
    return SampleTerms(gradients_b, scale_b, x_b)

  def mean_gradient(self, params: jax.Array, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """The minibatch's mean gradient, (1/b) sum_k grad E_k(b)."""
    return batch_mean(self.terms(params, batch).gradients)

  def objective(self, params: jax.Array) -> jax.Array:
    data_term = jnp.mean(loss_value(self.loss, self.features @ params, self.targets))
    return data_term + 0.5 * self.l2 * jnp.sum(jnp.square(params))

  def gradient(self, params: jax.Array) -> jax.Array:
    """grad E (17.5), computed as X^T s / n + l2 b."""
    scale = loss_derivative(self.loss, self.features @ params, self.targets)
    return jnp.tensordot(self.features, scale, axes=(0, 0)) / self.num_samples + self.l2 * params

  def regularizer_gradient(self, params: jax.Array) -> jax.Array:
    """The part of every grad E_i that is not x_i s_i: the L2 term."""
    return self.l2 * params

  def snapshot(self, params: jax.Array, memory: str):
    """Every sample's stored gradient at ``params`` (the memory layout's rows) and their mean:
    SVRG's refresh. The scalar layout stores s_i; its mean is X^T s / n (no L2 part)."""
    scales = self.scale_table(params)
    if memory == "scalar":
      return scales, jnp.tensordot(self.features, scales, axes=(0, 0)) / self.num_samples
    table = jnp.einsum("np,n...->np...", self.features, scales) + self.l2 * params
    return table, jnp.mean(table, axis=0)

  def scale_table(self, params: jax.Array) -> jax.Array:
    """s_i for every sample, (n, *slot): the scalar-layout gradient memory at ``params``."""
    return loss_derivative(self.loss, self.features @ params, self.targets)

  def lipschitz(self) -> float:
    """L, the Lipschitz constant of grad E: c ||X||_2^2 / n + l2 (c bounds L'')."""
    x = np.asarray(self.features, np.float64)
    top = float(np.linalg.eigvalsh(x.T @ x)[-1])
    return _CURVATURE[self.loss] * top / self.num_samples + float(self.l2)

  def max_sample_lipschitz(self) -> float:
    """L_max = max_i of the Lipschitz constant of grad E_i: c max_i ||x_i||^2 + l2."""
    x = np.asarray(self.features, np.float64)
    return _CURVATURE[self.loss] * float(np.max(np.sum(x * x, axis=1))) + float(self.l2)


def make_problem(
    features, targets, l2: float = 0.0, loss: str = "logistic", dtype=jnp.float32
) -> LinearFiniteSum:
  """Builds a problem from host arrays (copied to the device in ``dtype``)."""
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
  features = np.asarray(features)
  targets = np.asarray(targets)
  num_classes = 0
  if loss == "multinomial":
    # Class ids 0..K-1 whatever the labels were (LIBSVM files often use 1..K or -1/+1).
    classes, targets = np.unique(targets, return_inverse=True)
    targets = targets.astype(np.int32)
    num_classes = len(classes)
    target_dtype = jnp.int32
  else:
    target_dtype = dtype
  return LinearFiniteSum(
      features=jnp.asarray(features, dtype),
      targets=jnp.asarray(targets, target_dtype),
      l2=jnp.asarray(l2, dtype),
      loss=loss,
      num_classes=num_classes,
  )
