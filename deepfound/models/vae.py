"""The variational auto-encoder and its importance-weighted bound (17.4.2), as in the IWAE paper
(Burda, Grosse & Salakhutdinov, 2016), one stochastic layer.

Generative model: z ~ p(z) = N(0, I_m), and x in {0, 1}^d given z has independent Bernoulli
coordinates, p(x | z) = prod_i sigma(l_i)^{x_i} (1 - sigma(l_i))^{1 - x_i} with logits l = D(z), D a
tanh network m -> hidden[-1] -> ... -> hidden[0] -> d. Recognition model (encoder):
q(z | x) = N(mu(x), diag(exp v(x))), with (mu, v) = E(x) the two halves of the output of a tanh network
d -> hidden[0] -> ... -> hidden[-1] -> 2m; v is the LOG-VARIANCE, sigma_j = exp(v_j / 2).

With z = mu + sigma * eps, eps ~ N(0, I) (reparameterization), the log-weight of a sample is

  log w = log p(x | z) + log p(z) - log q(z | x),
  log p(x | z) = sum_i [x_i l_i - softplus(l_i)],
  log p(z) - log q(z | x) = (1/2) sum_j [eps_j^2 + v_j - z_j^2],

(the (1/2) log(2 pi) terms cancel). The ELBO is E[log w] <= log p(x) and, for k independent samples,
the IWAE bound L_k = E[log (1/k) sum_j w_j] satisfies L_1 = ELBO <= L_k <= L_{k+1} -> log p(x); L_k
with large k (5000 in the paper) is the log-likelihood estimate used for evaluation.

Initialization: the paper's heuristic (Glorot & Bengio, 2010): every weight matrix is drawn uniform on
[-r, r] with r = sqrt(6 / (fan_in + fan_out)); biases are zero (Flax's default would be LeCun normal).

Every function below is pure in ``model``: pass ``nnx.merge(graphdef, params)`` inside a transformation.
Batches are arrays of shape (..., d); per-sample results have shape (...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from deepfound.models.networks import MLP


class VAE(nnx.Module):
  """Encoder d -> hidden -> 2m (mean and log-variance of q(z | x)) and decoder
  m -> reversed(hidden) -> d (Bernoulli logits of p(x | z)), tanh after every hidden layer; the
  paper's MNIST architecture 784-200-200-50 by default."""

  def __init__(self, data_dim: int = 784, hidden: Sequence[int] = (200, 200), latent_size: int = 50,
               *, rngs: nnx.Rngs):
    hidden = tuple(hidden)
    self.latent_size = latent_size
    self.encoder = MLP([data_dim, *hidden, 2 * latent_size], "tanh", rngs=rngs)
    self.decoder = MLP([latent_size, *reversed(hidden), data_dim], "tanh", rngs=rngs)
    glorot = nnx.initializers.glorot_uniform()
    for layer in (*self.encoder.layers, *self.decoder.layers):
      layer.kernel[...] = glorot(rngs.params(), layer.kernel.shape, layer.kernel.dtype)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mu(x), v(x)): mean and log-variance of q(z | x), each of shape (..., latent_size)."""
    out = self.encoder(x)
    return out[..., :self.latent_size], out[..., self.latent_size:]

  def decode(self, z: jax.Array) -> jax.Array:
    """The logits l = D(z) of p(x | z), of shape (..., data_dim)."""
    return self.decoder(z)


def binarize(key: jax.Array, x: jax.Array) -> jax.Array:
  """Dynamic binarization: independent x_i' ~ Bernoulli(x_i) for intensities x in [0, 1], same dtype."""
  return jax.random.bernoulli(key, x).astype(x.dtype)


def bernoulli_log_likelihood(x: jax.Array, logits: jax.Array) -> jax.Array:
  """log p(x | l) = sum_i [x_i l_i - log(1 + e^{l_i})], summed over the last axis."""
  return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def log_weights(model: VAE, x: jax.Array, eps: jax.Array) -> jax.Array:
  """log w_j = log p(x, z_j) - log q(z_j | x) for z_j = mu(x) + exp(v(x) / 2) eps_j.

  ``eps`` has shape (k, ..., latent_size) (standard normal noise, one slice per sample j) for ``x`` of
  shape (..., d); the result has shape (k, ...). Explicit noise makes the bounds below reproducible."""
  mean, log_var = model.encode(x)
  z = mean + jnp.exp(0.5 * log_var) * eps
  log_prior_minus_posterior = 0.5 * jnp.sum(jnp.square(eps) + log_var - jnp.square(z), axis=-1)
  return bernoulli_log_likelihood(x, model.decode(z)) + log_prior_minus_posterior


def _noise(model: VAE, x: jax.Array, key: jax.Array, num_samples: int) -> jax.Array:
  return jax.random.normal(key, (num_samples, *x.shape[:-1], model.latent_size), x.dtype)


def elbo(model: VAE, x: jax.Array, key: jax.Array) -> jax.Array:
  """One-sample estimate log w of the ELBO E_q[log p(x, z) - log q(z | x)], per sample (x binary).
  Uses the same noise as ``iwae_bound(model, x, key, 1)``, so the two agree exactly."""
  return log_weights(model, x, _noise(model, x, key, 1))[0]


def elbo_analytic_kl(model: VAE, x: jax.Array, key: jax.Array) -> jax.Array:
  """ELBO = E_q[log p(x | z)] - KL(q(z | x) || p(z)) with the Gaussian KL in closed form,
  KL = (1/2) sum_j [mu_j^2 + e^{v_j} - 1 - v_j], and one reparameterized z for the first term: the
  same expectation as :func:`elbo` (same noise), with lower variance."""
  mean, log_var = model.encode(x)
  z = mean + jnp.exp(0.5 * log_var) * _noise(model, x, key, 1)[0]
  kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
  return bernoulli_log_likelihood(x, model.decode(z)) - kl


def iwae_bound(model: VAE, x: jax.Array, key: jax.Array, num_samples: int) -> jax.Array:
  """log (1/k) sum_{j=1}^k w_j with z_1..z_k ~ q(z | x) independent and reparameterized, per sample:
  an unbiased estimate of L_k, differentiable in the parameters (the IWAE objective). Memory is
  O(k * batch * d): for large k at evaluation use :func:`log_likelihood_estimate`."""
  lw = log_weights(model, x, _noise(model, x, key, num_samples))
  return jax.nn.logsumexp(lw, axis=0) - math.log(num_samples)


def log_likelihood_estimate(model: VAE, x: jax.Array, key: jax.Array, num_samples: int = 5000,
                            chunk: int = 100) -> jax.Array:
  """The IWAE estimate log (1/k) sum_j w_j of log p(x) with k = ``num_samples``, computed ``chunk``
  samples at a time: a ``lax.scan`` over the k / chunk chunks carries the running
  a = log sum_{j seen} w_j, updated by a <- logaddexp(a, logsumexp of the chunk's log-weights), so the
  memory is O(chunk * batch * d) whatever k. Chunk c draws its noise (chunk, ..., latent_size) from the
  c-th key of ``jax.random.split(key, k / chunk)``."""
  if num_samples % chunk:
    raise ValueError(f"chunk {chunk} must divide num_samples {num_samples}")
  keys = jax.random.split(key, num_samples // chunk)

  def step(acc, chunk_key):
    lw = log_weights(model, x, _noise(model, x, chunk_key, chunk))
    return jnp.logaddexp(acc, jax.nn.logsumexp(lw, axis=0)), None

  init = jnp.full(x.shape[:-1], -jnp.inf, x.dtype)
  total, _ = jax.lax.scan(step, init, keys)
  return total - math.log(num_samples)


def training_loss(model: VAE, x: jax.Array, key: jax.Array, num_samples: int = 1) -> jax.Array:
  """Minus the batch mean of the k-sample bound on dynamically binarized x (intensities in [0, 1]):
  the VAE objective for k = 1, the IWAE objective for k > 1."""
  binarize_key, noise_key = jax.random.split(key)
  return -jnp.mean(iwae_bound(model, binarize(binarize_key, x), noise_key, num_samples))


def encode_mean(model: VAE, x: jax.Array) -> jax.Array:
  """The posterior mean mu(x), shape (..., latent_size)."""
  return model.encode(x)[0]


def reconstruct(model: VAE, x: jax.Array) -> jax.Array:
  """The Bernoulli means sigma(D(mu(x))) of the decoder at the posterior mean, shape (..., d)."""
  return jax.nn.sigmoid(model.decode(encode_mean(model, x)))


def sample(model: VAE, key: jax.Array, num: int) -> jax.Array:
  """Bernoulli means sigma(D(z)) for ``num`` draws z ~ N(0, I) of the prior, shape (num, d)."""
  z = jax.random.normal(key, (num, model.latent_size))
  return jax.nn.sigmoid(model.decode(z))
