"""Linear finite sums on sparse data: the rows stay sparse on the device (17.1 on real data).

The standard benchmark sets (rcv1, news20, real-sim, url, the LIBSVM collection) are sparse:
rcv1 is 20,242 x 47,236 with 0.16 % non-zeros, 3.8 GB dense in float32 against a few MB here.
Each row is stored as its non-zeros, padded to the longest row's count m: ``indices`` (n, m)
int32 and ``values`` (n, m), the padding pointing at the out-of-range column p with value 0.
Padding to the longest row keeps every gather the same shape (what ``lax.scan`` needs); on
sets whose row lengths are very skewed it costs memory, which ``padding_overhead`` reports.

The objective is that of ``LinearFiniteSum`` (weights, intercept, L2, L1), and the parameter
layout too, so dense and sparse runs compare entry by entry. Evaluations (objective, full
gradient, SVRG's snapshot) cost O(nnz + p). A per-sample gradient handed to a generic rule is
dense, O(p); SGD, SAG and SAGA at batch size 1 instead take O(nnz of the row) steps through the
lazy updates of ``deepfound.optim.lazy``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from deepfound.numerics import batch_mean
from deepfound.problems.kinds import SampleTerms
from deepfound.problems.linear import (
    LOSS_CURVATURE,
    LOSSES,
    PenalizedLinear,
    loss_value,
    normalized_weights,
    prepare_targets,
)

# data.sparse=auto keeps a set sparse below this density (non-zeros / (n p)): beyond about 10 %,
# a padded sparse row costs about as much memory as a dense one (index and value per entry).
SPARSE_DENSITY = 0.1


def padded_rows(matrix) -> tuple[np.ndarray, np.ndarray]:
  """A CSR matrix as (indices (n, m), values (n, m)), m the largest row's non-zeros; padding
  entries have index p (one past the last column) and value 0."""
  matrix = scipy.sparse.csr_matrix(matrix)
  matrix.sum_duplicates()
  matrix.eliminate_zeros()
  n, p = matrix.shape
  counts = np.diff(matrix.indptr)
  width = max(int(counts.max()) if n else 0, 1)
  indices = np.full((n, width), p, np.int32)
  values = np.zeros((n, width), matrix.dtype)
  rows = np.repeat(np.arange(n), counts)
  slots = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
  indices[rows, slots] = matrix.indices
  values[rows, slots] = matrix.data
  return indices, values


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseLinearFiniteSum(PenalizedLinear):
  """E(b) = (1/n) sum_i w_i L(<x_i, b>, y_i) + (l2/2) ||b||^2 + l1 ||b||_1, with sparse x_i.

  Same parameters as ``LinearFiniteSum``: (p',) or (p', K), p' = p + 1 with an intercept (the
  last row).
  """

  indices: jax.Array  # (n, m) int32 column of each stored entry; p marks padding
  values: jax.Array  # (n, m) the entries; 0 on padding
  targets: jax.Array  # (n,)
  l2: jax.Array  # scalar
  weights: jax.Array | None = None  # (n,) of mean 1; None: all ones
  num_columns: int = dataclasses.field(default=0, metadata=dict(static=True))  # p
  loss: str = dataclasses.field(default="logistic", metadata=dict(static=True))
  num_classes: int = dataclasses.field(default=0, metadata=dict(static=True))
  l1: float = dataclasses.field(default=0.0, metadata=dict(static=True))
  fit_intercept: bool = dataclasses.field(default=False, metadata=dict(static=True))

  @property
  def num_samples(self) -> int:
    return self.indices.shape[0]

  @property
  def num_features(self) -> int:
    """p', the parameter rows (the intercept's included)."""
    return self.num_columns + int(self.fit_intercept)

  @property
  def param_shape(self) -> tuple[int, ...]:
    if self.loss == "multinomial":
      return (self.num_features, self.num_classes)
    return (self.num_features,)

  @property
  def dtype(self):
    return self.values.dtype

  def init_params(self) -> jax.Array:
    return jnp.zeros(self.param_shape, self.values.dtype)

  def batch(self, indices: jax.Array) -> tuple[jax.Array, ...]:
    """(columns (b, m), values (b, m), y (b,)) and, with sample weights, w (b,)."""
    rows = (self.indices[indices], self.values[indices], self.targets[indices])
    return rows if self.weights is None else rows + (self.weights[indices],)

  def scores(self, params: jax.Array, columns: jax.Array, values: jax.Array) -> jax.Array:
    """<x, b> for rows given as (columns (..., m), values (..., m)): (...,) or (..., K)."""
    coefficients = self.coefficients(params)
    picked = jnp.take(coefficients, columns, axis=0, mode="fill", fill_value=0)
    if params.ndim == 1:
      products = jnp.sum(picked * values, axis=-1)
    else:
      products = jnp.sum(picked * values[..., None], axis=-2)
    return products + self.intercept(params)

  def dense_rows(self, columns: jax.Array, values: jax.Array) -> jax.Array:
    """The rows as dense (b, p') arrays, the intercept's ones included: O(b p)."""
    batch = columns.shape[0]
    dense = jnp.zeros((batch, self.num_columns), values.dtype)
    dense = dense.at[jnp.arange(batch)[:, None], columns].add(values, mode="drop")
    if self.fit_intercept:
      dense = jnp.concatenate([dense, jnp.ones((batch, 1), values.dtype)], axis=1)
    return dense

  def transpose_times(self, scales: jax.Array, columns: jax.Array | None = None,
                      values: jax.Array | None = None) -> jax.Array:
    """X^T s over the given rows (default: all), (p', *slot), in O(nnz + p)."""
    columns = self.indices if columns is None else columns
    values = self.values if values is None else values
    contributions = values.reshape(values.shape + (1,) * (scales.ndim - 1)) * scales[:, None]
    total = jnp.zeros((self.num_columns,) + scales.shape[1:], values.dtype)
    total = total.at[columns.reshape(-1)].add(
        contributions.reshape((-1,) + scales.shape[1:]), mode="drop")
    if self.fit_intercept:
      total = jnp.concatenate([total, jnp.sum(scales, axis=0, keepdims=True)], axis=0)
    return total

  def terms(self, params: jax.Array, batch: tuple[jax.Array, ...]) -> SampleTerms:
    """Dense per-sample gradients (b, p'[, K]): what a generic rule needs (O(b p))."""
    columns, values, targets = batch[:3]
    scale = self.sample_scale(self.scores(params, columns, values), targets,
                              batch[3] if len(batch) > 3 else None)
    rows = self.dense_rows(columns, values)
    scale_p = scale.reshape(scale.shape[:1] + (1,) + scale.shape[1:])
    gradients = (rows.reshape(rows.shape + (1,) * (params.ndim - 1)) * scale_p
                 + self.regularizer_gradient(params))
    return SampleTerms(gradients, scale, rows)

  def mean_gradient(self, params: jax.Array, batch: tuple[jax.Array, ...]) -> jax.Array:
    columns, values, targets = batch[:3]
    if columns.shape[0] == 1:
      return batch_mean(self.terms(params, batch).gradients)
    scale = self.sample_scale(self.scores(params, columns, values), targets,
                              batch[3] if len(batch) > 3 else None)
    return (self.transpose_times(scale, columns, values) / columns.shape[0]
            + self.regularizer_gradient(params))

  def scale_table(self, params: jax.Array) -> jax.Array:
    return self.sample_scale(self.scores(params, self.indices, self.values), self.targets,
                             self.weights)

  def objective(self, params: jax.Array) -> jax.Array:
    losses = loss_value(self.loss, self.scores(params, self.indices, self.values), self.targets)
    return jnp.mean(losses if self.weights is None else losses * self.weights) + self.penalty(params)

  def gradient(self, params: jax.Array) -> jax.Array:
    return (self.transpose_times(self.scale_table(params)) / self.num_samples
            + self.regularizer_gradient(params))

  def snapshot(self, params: jax.Array, memory: str):
    scales = self.scale_table(params)
    mean = self.transpose_times(scales) / self.num_samples
    if memory == "scalar":
      return scales, mean
    rows = self.dense_rows(self.indices, self.values)
    table = jnp.einsum("np,n...->np...", rows, scales) + self.regularizer_gradient(params)
    return table, jnp.mean(table, axis=0)

  # Host-side facts, in float64.
  def host_matrix(self) -> scipy.sparse.csr_matrix:
    """The data as a float64 CSR matrix (n, p), without the intercept's column."""
    indices = np.asarray(self.indices)
    values = np.asarray(self.values, np.float64)
    n, width = indices.shape
    keep = indices < self.num_columns
    rows = np.repeat(np.arange(n), width).reshape(n, width)
    return scipy.sparse.csr_matrix((values[keep], (rows[keep], indices[keep])),
                                   shape=(n, self.num_columns))

  def _host_weights(self) -> np.ndarray | None:
    return None if self.weights is None else np.asarray(self.weights, np.float64)

  def _row_norms(self) -> np.ndarray:
    values = np.asarray(self.values, np.float64)
    return np.sum(values * values, axis=1)

  def lipschitz(self) -> float:
    """L = c ||W^(1/2) X'||_2^2 / n + l2, the top eigenvalue by Lanczos on the sparse matrix."""
    matrix = self.host_matrix()
    if self.fit_intercept:
      matrix = scipy.sparse.hstack([matrix, np.ones((matrix.shape[0], 1))], format="csr")
    weights = self._host_weights()
    if weights is not None:
      matrix = scipy.sparse.diags(np.sqrt(weights)) @ matrix
    n, p = matrix.shape
    if min(n, p) <= 2:
      top = float(np.linalg.norm(matrix.toarray(), 2) ** 2)
    else:
      top = float(scipy.sparse.linalg.svds(matrix, k=1, return_singular_vectors=False,
                                           random_state=0)[0] ** 2)
    return LOSS_CURVATURE[self.loss] * top / n + float(self.l2)

  def sample_lipschitz(self) -> np.ndarray:
    """L_i = c w_i ||x_i||^2 + l2, (n,) float64 (the intercept's 1 included)."""
    norms = self._row_norms() + float(self.fit_intercept)
    weights = self._host_weights()
    if weights is not None:
      norms = norms * weights
    return LOSS_CURVATURE[self.loss] * norms + float(self.l2)

  def max_sample_lipschitz(self) -> float:
    return float(np.max(self.sample_lipschitz()))


  def host_design(self) -> dict:
    return dict(design=self.host_matrix(), targets=np.asarray(self.targets), loss=self.loss,
                num_classes=self.num_classes, l2=float(self.l2), l1=float(self.l1),
                weights=self._host_weights(), fit_intercept=self.fit_intercept)

  def device_bytes(self) -> int:
    """Bytes of the data on the device (indices, values, targets, weights)."""
    return sum(leaf.size * leaf.dtype.itemsize for leaf in
               (self.indices, self.values, self.targets)
               + (() if self.weights is None else (self.weights,)))


def padding_overhead(matrix) -> float:
  """Stored entries of the padded layout over the non-zeros (1.0: no padding)."""
  matrix = scipy.sparse.csr_matrix(matrix)
  counts = np.diff(matrix.indptr)
  return float(counts.max() * matrix.shape[0] / max(matrix.nnz, 1))


def make_sparse_problem(
    features, targets, l2: float = 0.0, loss: str = "logistic", dtype=jnp.float32, *,
    l1: float = 0.0, fit_intercept: bool = False, sample_weight=None,
) -> SparseLinearFiniteSum:
  """``make_problem`` for a sparse (or dense) matrix, kept sparse on the device."""
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
  if not (np.isfinite(l1) and l1 >= 0):
    raise ValueError(f"l1 must be >= 0, got {l1!r}")
  matrix = scipy.sparse.csr_matrix(features)
  targets = np.asarray(targets)
  if matrix.shape[0] != len(targets):
    raise ValueError(f"{matrix.shape[0]} rows but {len(targets)} targets")
  num_classes, targets, target_dtype = prepare_targets(targets, loss, dtype)
  weights = normalized_weights(sample_weight, len(targets))
  indices, values = padded_rows(matrix)
  return SparseLinearFiniteSum(
      indices=jnp.asarray(indices),
      values=jnp.asarray(values, dtype),
      targets=jnp.asarray(targets, target_dtype),
      l2=jnp.asarray(l2, dtype),
      weights=None if weights is None else jnp.asarray(weights, dtype),
      num_columns=matrix.shape[1],
      loss=loss,
      num_classes=num_classes,
      l1=float(l1),
      fit_intercept=bool(fit_intercept),
  )
