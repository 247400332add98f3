"""Auto-encoders x -> D(E(x)) with a code of size m < d, and the PCA they reduce to (17.4.2).

The encoder E : R^d -> R^m and the decoder D : R^m -> R^d are feedforward networks (17.3.1),
trained to minimize the reconstruction error

  R(E, D) = (1 / (n d)) sum_{i=1}^n ||x_i - D(E(x_i))||^2,

the mean squared error per coordinate (the mean over all n x d entries; the convention of both
:func:`reconstruction_mse` and :func:`pca_reconstruction_mse`). Without hidden layers the
auto-encoder is linear, x -> B_D (B_E x + b_E) + b_D with rank(B_D B_E) <= m, and (Baldi & Hornik,
1989) every local minimum of R is global and its range is the principal subspace: the optimal
reconstruction is mu + U_m U_m^T (x - mu), with mu the mean of the x_i and U_m their top m
principal directions, so the optimal R equals PCA's reconstruction error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from deepfound.models.networks import MLP


class AutoEncoder(nnx.Module):
  """Encoder MLP d -> hidden[0] -> ... -> hidden[-1] -> m and the mirrored decoder
  m -> hidden[-1] -> ... -> hidden[0] -> d, with ``activation`` after each hidden layer only (the
  code and the reconstruction are affine in the last hidden layer). With ``hidden=()`` this is the
  linear auto-encoder x -> B_D (B_E x + b_E) + b_D."""

  def __init__(self, data_dim: int, code_size: int, hidden: Sequence[int] = (), activation: str = "tanh",
               *, rngs: nnx.Rngs):
    hidden = tuple(hidden)
    self.encoder = MLP([data_dim, *hidden, code_size], activation, rngs=rngs)
    self.decoder = MLP([code_size, *reversed(hidden), data_dim], activation, rngs=rngs)

  def encode(self, x: jax.Array) -> jax.Array:
    """The code E(x), of shape (..., code_size)."""
    return self.encoder(x)

  def decode(self, code: jax.Array) -> jax.Array:
    """The reconstruction D(code), of shape (..., data_dim)."""
    return self.decoder(code)

  def __call__(self, x: jax.Array) -> jax.Array:
    """The reconstruction D(E(x))."""
    return self.decode(self.encode(x))


def reconstruction_mse(model_apply: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """(1 / (n d)) sum_i ||x_i - xhat_i||^2 with xhat = model_apply(x) for x of shape (n, d): the mean
  over all entries, a differentiable scalar (``float(...)`` it to compare with
  :func:`pca_reconstruction_mse`)."""
  return jnp.mean(jnp.square(model_apply(x) - x))


def pca_reconstruction_mse(x_train: np.ndarray, x_eval: np.ndarray, code_size: int) -> float:
  """Reconstruction error of PCA with ``code_size`` components fitted on ``x_train``, on ``x_eval``.

  With mu the mean of the training rows and U_m (d x m) the top m right singular vectors of the
  centered training matrix X - 1 mu^T (its principal directions), each x is reconstructed as
  xhat = mu + U_m U_m^T (x - mu), and the error is (1 / (n d)) sum_i ||x_i - xhat_i||^2, the mean
  over all entries of ``x_eval`` (the convention of :func:`reconstruction_mse`). Computed in float64.
  """
  x_train = np.asarray(x_train, dtype=np.float64)
  x_eval = np.asarray(x_eval, dtype=np.float64)
  if not 0 <= code_size <= min(x_train.shape):
    raise ValueError(f"code_size {code_size} must lie in [0, {min(x_train.shape)}]")
  mean = x_train.mean(axis=0)
  _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
  directions = vt[:code_size].T  # (d, m), orthonormal columns
  centered = x_eval - mean
  residual = centered - (centered @ directions) @ directions.T
  return float(np.mean(np.square(residual)))
