"""2-D Gaussian mixtures of section 17.4 (PacGAN's ring and grid) and the mode metrics.

A ``Mixture`` is the law p(x) = (1/K) sum_k N(x; mu_k, sd^2 I) on R^2: K equally weighted
isotropic Gaussians of common standard deviation ``sd``. Its log-density is exact; its entropy
H(p) = -E log p(X) has no closed form and is estimated by Monte Carlo. When the modes are far
apart compared with sd (both sets below: neighbours are >= 76 sd apart), the components do not
overlap and H(p) = log K + log(2 pi e sd^2), the entropy of the mode label plus that of one
2-D Gaussian.

The data sets ``ring`` and ``grid`` draw ``data.num_samples`` training points with ``data.seed``,
and a held-out test set of their own from an independent stream of the same seed; the targets are
the mode ids. ``MIXTURES[name]`` is the true law of the data set ``name``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from deepfound.data.registry import Dataset, DatasetSpec, register_dataset

_ENTROPY_CHUNK = 65_536  # points per log-density evaluation in ``Mixture.entropy``


@dataclasses.dataclass(frozen=True, eq=False)
class Mixture:
  """p(x) = (1/K) sum_k N(x; means[k], sd^2 I) on R^2 (equal weights, isotropic components).

  Compared (and hashed) by identity: ``means`` is an array.
  """

  means: np.ndarray  # (K, 2) float64
  sd: float

  def __post_init__(self):
    means = np.array(self.means, dtype=np.float64)  # a private copy, read-only
    if means.ndim != 2 or means.shape[1] != 2 or len(means) == 0:
      raise ValueError(f"means must have shape (K, 2), got {means.shape}")
    if not self.sd > 0:
      raise ValueError(f"sd must be positive, got {self.sd}")
    means.flags.writeable = False
    object.__setattr__(self, "means", means)
    object.__setattr__(self, "sd", float(self.sd))

  @property
  def num_modes(self) -> int:
    return len(self.means)

  def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points X_i = mu_{k_i} + sd eps_i, k_i uniform on {0..K-1}, eps_i ~ N(0, I):
    (points float32 (n, 2), mode ids k_i int32 (n,))."""
    points, ids = self._draw(rng, n)
    return points.astype(np.float32), ids.astype(np.int32)

  def _draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(self.num_modes, size=n)
    return self.means[ids] + self.sd * rng.standard_normal((n, 2)), ids

  def log_density(self, x: jax.Array | np.ndarray) -> jax.Array:
    """log p(x) = logsumexp_k(-|x - mu_k|^2 / (2 sd^2)) - log K - log(2 pi sd^2), (..., 2) -> (...),
    in x's float precision (float32 unless x64 is enabled)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
    means = jnp.asarray(self.means, x.dtype)
    squared = jnp.sum((x[..., None, :] - means) ** 2, axis=-1)  # (..., K)
    normalizer = math.log(self.num_modes) + math.log(2 * math.pi * self.sd ** 2)
    return logsumexp(-squared / (2 * self.sd ** 2), axis=-1) - normalizer

  def entropy(self, num: int = 1_000_000, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo estimate of H(p) = -E log p(X), in nats, from ``num`` samples drawn with
    ``seed``: (mean of -log p(X_i), its standard error s / sqrt(num)) as float64 numbers.
    The log-densities are evaluated in float64."""
    if num < 2:
      raise ValueError(f"num must be at least 2 (a standard error needs two samples), got {num}")
    x, _ = self._draw(np.random.default_rng(seed), num)  # float64 points
    with jax.enable_x64(True):
      log_p = np.concatenate([np.asarray(self.log_density(x[i:i + _ENTROPY_CHUNK]))
                              for i in range(0, num, _ENTROPY_CHUNK)])
    values = -log_p.astype(np.float64)
    return np.float64(values.mean()), np.float64(values.std(ddof=1) / np.sqrt(num))

  def separated_entropy(self) -> float:
    """log K + log(2 pi e sd^2): H(p) when the components do not overlap."""
    return math.log(self.num_modes) + math.log(2 * math.pi * math.e * self.sd ** 2)


def ring(num_modes: int = 8, radius: float = 1.0, sd: float = 0.01) -> Mixture:
  """PacGAN's ring: 8 Gaussians, sd 0.01, at mu_k = radius (cos 2 pi k/8, sin 2 pi k/8)."""
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  return Mixture(radius * np.stack([np.cos(angles), np.sin(angles)], axis=1), sd)


def grid(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0), sd: float = 0.05) -> Mixture:
  """PacGAN's grid: 25 Gaussians, sd 0.05, at {-4, -2, 0, 2, 4}^2 (mode id 5 i + j at
  (values[i], values[j]))."""
  a, b = np.meshgrid(np.asarray(values, np.float64), np.asarray(values, np.float64), indexing="ij")
  return Mixture(np.stack([a.ravel(), b.ravel()], axis=1), sd)


MIXTURES: dict[str, Mixture] = {"ring": ring(), "grid": grid()}


def held_out_size(num_samples: int) -> int:
  """The size of a mixture set's held-out test set: max(10 000, n // 10)."""
  return max(10_000, num_samples // 10)


def load_mixture(name: str, num_samples: int, seed: int) -> Dataset:
  """``num_samples`` points of ``MIXTURES[name]`` (targets: mode ids) and a test set of
  ``held_out_size(num_samples)`` points; the two come from independent streams spawned from ``seed``,
  so the training points do not depend on the test size and vice versa."""
  if num_samples < 1:
    raise ValueError(f"data set {name!r}: num_samples must be positive, got {num_samples}")
  train_stream, test_stream = np.random.SeedSequence(seed).spawn(2)
  mixture = MIXTURES[name]
  x, ids = mixture.sample(np.random.default_rng(train_stream), num_samples)
  x_test, ids_test = mixture.sample(np.random.default_rng(test_stream), held_out_size(num_samples))
  return Dataset(x, ids, test=(x_test, ids_test))


def mode_metrics(samples: jax.Array, means: jax.Array, sd: float | jax.Array) -> dict[str, jax.Array]:
  """Mode coverage of ``samples`` (n, 2) against the modes ``means`` (K, 2) of standard deviation
  ``sd`` (VEEGAN's and PacGAN's definitions). Pure jax.numpy: jit and vmap apply.

  A sample is *high quality* if the distance to its nearest mode k(x) = argmin_k |x - mu_k| is at
  most 3 sd. With n_k the number of high-quality samples whose nearest mode is k, and
  q_k = n_k / sum_j n_j:

    high_quality_fraction = sum_k n_k / n,
    modes_captured        = #{k : n_k > 0}   (as a float),
    mode_kl               = KL(q || uniform) = sum_k q_k log(q_k K),   0 log 0 = 0,

  mode_kl is 0 for a perfectly balanced sampler and log K when every good sample hits one mode;
  it is NaN when there is no high-quality sample (q is undefined).
  """
  samples = jnp.asarray(samples)
  dtype = samples.dtype if jnp.issubdtype(samples.dtype, jnp.floating) else jnp.float32
  samples = samples.astype(dtype)
  means = jnp.asarray(means, dtype)
  num_modes = means.shape[0]
  squared = jnp.sum((samples[:, None, :] - means[None, :, :]) ** 2, axis=-1)  # (n, K)
  nearest = jnp.argmin(squared, axis=-1)
  good = jnp.min(squared, axis=-1) <= (3 * sd) ** 2
  counts = jnp.sum(jax.nn.one_hot(nearest, num_modes, dtype=dtype) * good[:, None].astype(dtype),
                   axis=0)  # (K,) the n_k
  total = jnp.sum(counts)
  q = counts / jnp.maximum(total, 1)
  terms = jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q * num_modes, 1)), 0)
  return {
      "high_quality_fraction": total / samples.shape[0],
      "modes_captured": jnp.sum(counts > 0).astype(dtype),
      "mode_kl": jnp.where(total > 0, jnp.sum(terms), jnp.nan).astype(dtype),
  }


register_dataset(DatasetSpec(
    name="ring", load=lambda data: load_mixture("ring", data.num_samples, data.seed),
    summary="PacGAN's ring: 8 Gaussians (sd 0.01) on the unit circle, 2-D points, own test set",
    uses=("num_samples", "seed")))
register_dataset(DatasetSpec(
    name="grid", load=lambda data: load_mixture("grid", data.num_samples, data.seed),
    summary="PacGAN's grid: 25 Gaussians (sd 0.05) at {-4,-2,0,2,4}^2, 2-D points, own test set",
    uses=("num_samples", "seed")))
