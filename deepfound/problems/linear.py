"""Finite sums of linear models (17.1, 17.4):

    E(b) = (1/n) sum_i w_i L(<x_i, b>, y_i) + (l2/2) ||b||^2 + l1 ||b||_1,

with sample weights w_i normalized to mean 1 (so that E is (1/sum w) sum_i w_i L_i + penalties;
all ones without weights) and, with ``fit_intercept``, a last parameter row that multiplies a
column of ones and is not penalized (scikit-learn's convention).

Every per-sample gradient of the smooth part has the form grad E_i(b) = x_i (x) s_i + l2 b with
s_i = w_i L'(<x_i, b>, y_i) (a scalar for binary logistic and least squares, a vector of K logits
for multinomial), which is what the scalar gradient memory of SAG exploits. The L1 term is not
differentiated: the rules that support it (SGD, SAGA) take its proximal step, soft thresholding.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.numerics import batch_mean, soft_threshold
from deepfound.problems.kinds import SampleTerms

LOSSES = ("logistic", "multinomial", "least_squares")

# Bound on the second derivative of each loss in its score, so that L = c ||X||_2^2 / n + l2.
LOSS_CURVATURE = {"logistic": 0.25, "multinomial": 0.5, "least_squares": 1.0}


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


class PenalizedLinear:
  """What dense and sparse linear finite sums share: the parameter layout (an intercept as the
  last row), the penalties, per-sample scales, and the problem's variants. Needs the fields
  ``l2``, ``l1``, ``loss`` and ``fit_intercept``."""

  def with_l2(self, l2: jax.Array):
    return dataclasses.replace(self, l2=l2)

  def metrics(self, params: jax.Array) -> dict[str, jax.Array]:
    del params
    return {}

  def penalized(self, params: jax.Array) -> jax.Array:
    """``params`` with the intercept row (if any) zeroed: the part the penalties apply to."""
    return params.at[-1].set(0.0) if self.fit_intercept else params

  def coefficients(self, params: jax.Array) -> jax.Array:
    """The weights without the intercept (what scikit-learn's stopping criterion looks at)."""
    return params[:-1] if self.fit_intercept else params

  def intercept(self, params: jax.Array) -> jax.Array:
    """The intercept row (zeros without one), shaped like one score."""
    return params[-1] if self.fit_intercept else jnp.zeros(params.shape[1:], params.dtype)

  def proximal(self, params: jax.Array, step: jax.Array) -> jax.Array:
    """The proximal step of step * l1 ||.||_1 on the penalized rows (soft thresholding)."""
    thresholded = soft_threshold(params, step * self.l1)
    return thresholded.at[-1].set(params[-1]) if self.fit_intercept else thresholded

  def sample_scale(self, scores: jax.Array, targets: jax.Array, weights: jax.Array | None):
    """s = w L'(score, y) per sample (scores (b,) or (b, K))."""
    scale = loss_derivative(self.loss, scores, targets)
    if weights is None:
      return scale
    return scale * weights.reshape(weights.shape + (1,) * (scale.ndim - weights.ndim))

  def penalty(self, params: jax.Array) -> jax.Array:
    """(l2/2) ||b||^2 + l1 ||b||_1 over the penalized rows."""
    penalized = self.penalized(params)
    value = 0.5 * self.l2 * jnp.sum(jnp.square(penalized))
    return value + self.l1 * jnp.sum(jnp.abs(penalized)) if self.l1 else value

  def regularizer_gradient(self, params: jax.Array) -> jax.Array:
    """The part of every grad E_i that is not x_i s_i: the L2 term (not on the intercept)."""
    return self.l2 * self.penalized(params)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearFiniteSum(PenalizedLinear):
  """E(b) = (1/n) sum_i w_i L(<x_i, b>, y_i) + (l2/2) ||b||^2 + l1 ||b||_1 on device arrays.

  ``l2`` is a pytree leaf so a sweep can ``vmap`` over it; ``loss``, ``num_classes``, ``l1`` and
  ``fit_intercept`` are static. Parameters have shape (p',) (binary logistic, least squares) or
  (p', K) (multinomial), p' = p + 1 with an intercept (the last row, which multiplies the column
  of ones that ``features`` then ends with), else p.
  """

  features: jax.Array  # (n, p'): the data, with a last column of ones when fit_intercept
  targets: jax.Array  # (n,): +-1 (logistic), reals (least squares), class ids (multinomial)
  l2: jax.Array  # scalar, weight of (l2/2)||b||^2
  weights: jax.Array | None = None  # (n,) sample weights of mean 1; None: all ones
  loss: str = dataclasses.field(default="logistic", metadata=dict(static=True))
  num_classes: int = dataclasses.field(default=0, metadata=dict(static=True))
  l1: float = dataclasses.field(default=0.0, metadata=dict(static=True))
  fit_intercept: bool = dataclasses.field(default=False, metadata=dict(static=True))

  @property
  def num_samples(self) -> int:
    return self.features.shape[0]

  @property
  def num_features(self) -> int:
    """p', the parameter rows (the intercept's included)."""
    return self.features.shape[1]

  @property
  def param_shape(self) -> tuple[int, ...]:
    if self.loss == "multinomial":
      return (self.num_features, self.num_classes)
    return (self.num_features,)

  def init_params(self) -> jax.Array:
    """The chapter starts every method at b = 0."""
    return jnp.zeros(self.param_shape, self.features.dtype)

  def batch(self, indices: jax.Array) -> tuple[jax.Array, ...]:
    """(x_b (b, p'), y_b (b,)) and, with sample weights, w_b (b,): the rows at ``indices``."""
    rows = (self.features[indices], self.targets[indices])
    return rows if self.weights is None else rows + (self.weights[indices],)

  def terms(self, params: jax.Array, batch: tuple[jax.Array, ...]) -> SampleTerms:
    """Per-sample gradients x_k (x) s_k + l2 b, (b, *param_shape), their scales s_k (b, *slot)
    and the rows x_k."""
    x_b, y_b = batch[:2]
    # Broadcast products instead of dots: for one sample they fuse into a single XLA kernel.
    if params.ndim == 1:
      scores_b = jnp.sum(x_b * params, axis=-1)
    else:
      scores_b = jnp.sum(x_b[..., None] * params, axis=-2)
    scale_b = self.sample_scale(scores_b, y_b, batch[2] if len(batch) > 2 else None)
    scale_bp = scale_b.reshape(scale_b.shape[:1] + (1,) + scale_b.shape[1:])
    gradients_b = (x_b.reshape(x_b.shape + (1,) * (params.ndim - 1)) * scale_bp
                   + self.regularizer_gradient(params))
    return SampleTerms(gradients_b, scale_b, x_b)

  def mean_gradient(self, params: jax.Array, batch: tuple[jax.Array, ...]) -> jax.Array:
    """The minibatch's mean gradient, (1/b) sum_k grad E_k(b)."""
    return batch_mean(self.terms(params, batch).gradients)

  def objective(self, params: jax.Array) -> jax.Array:
    losses = loss_value(self.loss, self.features @ params, self.targets)
    return jnp.mean(losses if self.weights is None else losses * self.weights) + self.penalty(params)

  def gradient(self, params: jax.Array) -> jax.Array:
    """grad E (17.5) of the smooth part, computed as X^T s / n + l2 b."""
    scale = self.scale_table(params)
    return (jnp.tensordot(self.features, scale, axes=(0, 0)) / self.num_samples
            + self.regularizer_gradient(params))

  def snapshot(self, params: jax.Array, memory: str):
    """Every sample's stored gradient at ``params`` (the memory layout's rows) and their mean:
    SVRG's refresh. The scalar layout stores s_i; its mean is X^T s / n (no L2 part)."""
    scales = self.scale_table(params)
    if memory == "scalar":
      return scales, jnp.tensordot(self.features, scales, axes=(0, 0)) / self.num_samples
    table = jnp.einsum("np,n...->np...", self.features, scales) + self.regularizer_gradient(params)
    return table, jnp.mean(table, axis=0)

  def scale_table(self, params: jax.Array) -> jax.Array:
    """s_i for every sample, (n, *slot): the scalar-layout gradient memory at ``params``."""
    return self.sample_scale(self.features @ params, self.targets, self.weights)

  def _host_weights(self) -> np.ndarray | None:
    return None if self.weights is None else np.asarray(self.weights, np.float64)

  def lipschitz(self) -> float:
    """L, the Lipschitz constant of grad E: c ||W^(1/2) X||_2^2 / n + l2 (c bounds L'')."""
    x = np.asarray(self.features, np.float64)
    weights = self._host_weights()
    if weights is not None:
      x = x * np.sqrt(weights)[:, None]
    top = float(np.linalg.eigvalsh(x.T @ x)[-1])
    return LOSS_CURVATURE[self.loss] * top / self.num_samples + float(self.l2)

  def sample_lipschitz(self) -> np.ndarray:
    """L_i, the Lipschitz constant of each grad E_i, (n,) float64: c w_i ||x_i||^2 + l2 (the
    intercept's column of ones included, as scikit-learn counts it)."""
    x = np.asarray(self.features, np.float64)
    norms = np.sum(x * x, axis=1)
    weights = self._host_weights()
    if weights is not None:
      norms = norms * weights
    return LOSS_CURVATURE[self.loss] * norms + float(self.l2)

  def max_sample_lipschitz(self) -> float:
    """L_max = max_i L_i (``sample_lipschitz``)."""
    return float(np.max(self.sample_lipschitz()))


  def _design(self):
    return self.features[:, :-1] if self.fit_intercept else self.features

  def host_design(self) -> dict:
    """The host-side description ``solve_optimum`` works from (float64, no column of ones)."""
    return dict(design=np.asarray(self._design(), np.float64),
                targets=np.asarray(self.targets), loss=self.loss, num_classes=self.num_classes,
                l2=float(self.l2), l1=float(self.l1), weights=self._host_weights(),
                fit_intercept=self.fit_intercept)


def binary_targets(targets) -> tuple[np.ndarray, str | None]:
  """Labels of a binary logistic model as -1/+1: {-1, +1} as they are, {0, 1} mapped (with a
  note to report); anything else raises ``ValueError`` (a 0/1 vector read as -1/+1 would
  silently fit another model, since log(1 + e^{-s y}) is constant at y = 0)."""
  targets = np.asarray(targets, np.float64)
  values = set(np.unique(targets).tolist())
  if values <= {-1.0, 1.0}:
    return targets, None
  if values <= {0.0, 1.0}:
    return 2.0 * targets - 1.0, "labels {0, 1} mapped to {-1, +1} for the logistic loss"
  shown = ", ".join(f"{v:g}" for v in sorted(values)[:5]) + (", ..." if len(values) > 5 else "")
  raise ValueError(f"binary logistic labels must be -1/+1 or 0/1, got {shown}")


def normalized_weights(sample_weight, num_samples: int) -> np.ndarray | None:
  """Sample weights as float64 of mean 1 (None stays None); refuses bad ones.

  Only their ratios matter: they are scaled by their largest first, so that weights near the
  float64 limit (1e308 on every line) do not overflow their sum.
  """
  if sample_weight is None:
    return None
  weights = np.asarray(sample_weight, np.float64).reshape(-1)
  if weights.shape != (num_samples,):
    raise ValueError(f"sample_weight has {weights.size} values for {num_samples} samples")
  if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
    raise ValueError("sample_weight must be finite, >= 0 and not all zero")
  weights = weights / weights.max()
  return weights * (num_samples / weights.sum())


def make_problem(
    features, targets, l2: float = 0.0, loss: str = "logistic", dtype=jnp.float32, *,
    l1: float = 0.0, fit_intercept: bool = False, sample_weight=None,
) -> LinearFiniteSum:
  """Builds a problem from host arrays (copied to the device in ``dtype``).

  Binary logistic labels must be -1/+1 or 0/1 (mapped to -1/+1); ``sample_weight`` (n,) gives
  the weighted sum (1/sum w) sum_i w_i L_i; ``fit_intercept`` appends the unpenalized intercept
  as the last parameter row. A scipy.sparse matrix is densified here: ``make_sparse_problem``
  keeps it sparse.
  """
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
  if hasattr(features, "toarray"):
    features = features.toarray()
  features = np.asarray(features)
  targets = np.asarray(targets)
  if not (np.isfinite(l1) and l1 >= 0):
    raise ValueError(f"l1 must be >= 0, got {l1!r}")
  num_classes, targets, target_dtype = prepare_targets(targets, loss, dtype)
  weights = normalized_weights(sample_weight, len(targets))
  if fit_intercept:
    features = np.concatenate([features, np.ones((len(features), 1), features.dtype)], axis=1)
  return LinearFiniteSum(
      features=jnp.asarray(features, dtype),
      targets=jnp.asarray(targets, target_dtype),
      l2=jnp.asarray(l2, dtype),
      weights=None if weights is None else jnp.asarray(weights, dtype),
      loss=loss,
      num_classes=num_classes,
      l1=float(l1),
      fit_intercept=bool(fit_intercept),
  )


def prepare_targets(targets: np.ndarray, loss: str, dtype):
  """(num_classes, targets, their dtype) for ``loss``: class ids 0..K-1 for multinomial, -1/+1
  for logistic (see ``binary_targets``), reals for least squares."""
  if loss == "multinomial":
    # Class ids 0..K-1 whatever the labels were (LIBSVM files often use 1..K or -1/+1).
    classes, targets = np.unique(targets, return_inverse=True)
    return len(classes), targets.astype(np.int32), jnp.int32
  if loss == "logistic":
    targets, _ = binary_targets(targets)
  return 0, targets, dtype
