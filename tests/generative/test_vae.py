"""The VAE and IWAE bounds of 17.4.2 against NumPy formulas and the exact log p(x) of a tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from deepfound.models import vae
from deepfound.models.vae import VAE


def tiny_vae(seed=0):
  """data_dim 6, hidden (5,), latent 2, with random (non-zero) biases too."""
  model = VAE(6, (5,), 2, rngs=nnx.Rngs(seed))
  rng = np.random.default_rng(seed)
  for layer in (*model.encoder.layers, *model.decoder.layers):
    layer.bias[...] = jnp.asarray(0.5 * rng.normal(size=layer.bias.shape), jnp.float32)
  return model


def tiny_data(seed=0, n=8):
  return jnp.asarray(np.random.default_rng(seed + 100).random((n, 6)) < 0.4, jnp.float32)


def np_mlp(layers, x):
  """tanh(x B_0 + b_0) ... B_{L-1} + b_{L-1} in float64 from the module's weights."""
  weights = [(np.asarray(a.kernel[...], np.float64), np.asarray(a.bias[...], np.float64)) for a in layers]
  for kernel, bias in weights[:-1]:
    x = np.tanh(x @ kernel + bias)
  return x @ weights[-1][0] + weights[-1][1]


def np_log_normal(z, mean, var):
  return np.sum(-0.5 * np.log(2 * np.pi * var) - 0.5 * (z - mean) ** 2 / var, axis=-1)


def np_log_bernoulli(x, logits):
  p = 1.0 / (1.0 + np.exp(-logits))
  return np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)


def np_terms(model, x, eps):
  """(log p(x|z), log p(z), log q(z|x), mean, var) from the definitions, z = mean + sqrt(var) eps."""
  x = np.asarray(x, np.float64)
  out = np_mlp(model.encoder.layers, x)
  mean, var = out[..., :2], np.exp(out[..., 2:])
  z = mean + np.sqrt(var) * eps
  return (np_log_bernoulli(x, np_mlp(model.decoder.layers, z)), np_log_normal(z, 0.0, 1.0),
          np_log_normal(z, mean, var), mean, var)


@pytest.mark.slow
def test_elbo_matches_numpy_formula():
  model, x = tiny_vae(), tiny_data()
  eps = np.random.default_rng(7).normal(size=(3, 8, 2))  # k = 3 samples of each of 8 images
  log_lik, log_prior, log_post, mean, var = np_terms(model, x, eps)
  np.testing.assert_allclose(vae.log_weights(model, x, jnp.asarray(eps, jnp.float32)),
                             log_lik + log_prior - log_post, rtol=1e-5, atol=1e-5)
  key = jax.random.key(3)
  eps = np.asarray(jax.random.normal(key, (1, 8, 2)), np.float64)  # the noise elbo draws from key
  log_lik, log_prior, log_post, mean, var = np_terms(model, x, eps)
  np.testing.assert_allclose(vae.elbo(model, x, key), (log_lik + log_prior - log_post)[0],
                             rtol=1e-5, atol=1e-5)
  kl = np.sum(0.5 * (mean**2 + var - 1 - np.log(var)), axis=-1)
  np.testing.assert_allclose(vae.elbo_analytic_kl(model, x, key), log_lik[0] - kl, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_iwae_bounds_and_chunked_estimate():
  model, x = tiny_vae(1), tiny_data(1)
  graphdef, params = nnx.split(model, nnx.Param)
  key = jax.random.key(0)
  np.testing.assert_array_equal(vae.iwae_bound(model, x, key, 1), vae.elbo(model, x, key))

  # Exact log p(x) = log int p(x|z) p(z) dz by quadrature on a grid (latent dimension 2).
  grid = np.linspace(-7.0, 7.0, 281)
  z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
  log_joint = (np_log_bernoulli(np.asarray(x, np.float64)[:, None], np_mlp(model.decoder.layers, z))
               + np_log_normal(z, 0.0, 1.0))
  top = log_joint.max(1)
  log_px = top + np.log(np.sum(np.exp(log_joint - top[:, None]), 1) * (grid[1] - grid[0]) ** 2)

  elbos = jnp.mean(jax.vmap(lambda k: vae.elbo(model, x, k))(jax.random.split(key, 400)), axis=0)
  iwae50 = jnp.mean(jax.vmap(lambda k: vae.iwae_bound(model, x, k, 50))(jax.random.split(key, 40)), axis=0)
  gap, above = log_px - np.asarray(elbos), np.asarray(iwae50) - log_px
  assert np.all(gap > 0.3)  # a random encoder is a poor posterior: the ELBO is loose ...
  assert np.all(above > -0.3 * gap)  # ... and L_50 closes most of the gap,
  assert np.mean(above) < 0.05  # without overshooting log p(x) (up to Monte-Carlo noise)

  estimate = jax.jit(lambda p, k: vae.log_likelihood_estimate(nnx.merge(graphdef, p), x, k, 2000, 250))
  chunked = estimate(params, key)
  eps = jnp.concatenate([jax.random.normal(k, (250, 8, 2)) for k in jax.random.split(key, 8)])
  unchunked = jax.nn.logsumexp(vae.log_weights(model, x, eps), axis=0) - np.log(2000)
  np.testing.assert_allclose(chunked, unchunked, rtol=1e-5, atol=1e-5)
  error = np.asarray(chunked) - log_px  # L_2000 ~ log p(x), up to heavy-tailed weights' noise
  assert np.all(np.abs(error) < 0.25) and abs(np.mean(error)) < 0.06


def test_binarize():
  probs = jnp.linspace(0.0, 1.0, 5)
  x = jnp.tile(probs, (20000, 1))
  b = vae.binarize(jax.random.key(0), x)
  assert b.dtype == x.dtype and set(np.unique(np.asarray(b))) <= {0.0, 1.0}
  np.testing.assert_allclose(jnp.mean(b, axis=0), probs, atol=0.015)


@pytest.mark.slow
def test_architecture_init_and_samplers():
  model = VAE(rngs=nnx.Rngs(0))
  shapes = [layer.kernel.shape for layer in (*model.encoder.layers, *model.decoder.layers)]
  assert shapes == [(784, 200), (200, 200), (200, 100), (50, 200), (200, 200), (200, 784)]
  kernel = np.asarray(model.decoder.layers[2].kernel[...])
  bound = np.sqrt(6.0 / (200 + 784))  # Glorot uniform
  assert np.abs(kernel).max() <= bound * (1 + 1e-6) and abs(kernel.std() - bound / np.sqrt(3)) < 0.02 * bound
  x = jnp.full((3, 784), 0.5)
  assert vae.encode_mean(model, x).shape == (3, 50)
  for means in (vae.reconstruct(model, x), vae.sample(model, jax.random.key(1), 4)):
    assert means.shape[-1] == 784 and bool(jnp.all((means > 0) & (means < 1)))
