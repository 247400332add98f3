"""Auto-encoders of 17.4.2: the linear one trained by gradient descent finds PCA (Baldi & Hornik)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.decomposition
from flax import nnx

from deepfound.models.autoencoder import AutoEncoder, pca_reconstruction_mse, reconstruction_mse


def low_rank_data(seed, n=200, d=10, rank=3, noise=0.1):
  """Rows mu + U diag(3, 2, 1) g + noise: a rank-3 signal with separated spectrum plus isotropic noise."""
  rng = np.random.default_rng(seed)
  basis = np.linalg.qr(rng.normal(size=(d, rank)))[0]
  signal = (rng.normal(size=(n, rank)) * np.array([3.0, 2.0, 1.0])) @ basis.T
  return (signal + noise * rng.normal(size=(n, d)) + rng.normal(size=d)).astype(np.float32)


def test_pca_reconstruction_matches_sklearn():
  rng = np.random.default_rng(1)
  x_train, x_eval = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(12, 6))
  for code_size in (1, 3):
    pca = sklearn.decomposition.PCA(n_components=code_size).fit(x_train)
    expected = np.mean(np.square(pca.inverse_transform(pca.transform(x_eval)) - x_eval))
    np.testing.assert_allclose(pca_reconstruction_mse(x_train, x_eval, code_size), expected, rtol=1e-10)
  assert pca_reconstruction_mse(x_train, x_eval, 6) < 1e-20  # full code: exact reconstruction


@pytest.mark.slow
def test_shapes_and_nonlinear_layers():
  model = AutoEncoder(10, 3, hidden=(8, 5), rngs=nnx.Rngs(0))
  x = jnp.ones((4, 10))
  assert model.encode(x).shape == (4, 3) and model(x).shape == (4, 10)
  assert [layer.kernel.shape for layer in model.decoder.layers] == [(3, 5), (5, 8), (8, 10)]
  linear = AutoEncoder(10, 3, rngs=nnx.Rngs(0))
  (enc,), (dec,) = linear.encoder.layers, linear.decoder.layers
  expected = (x @ enc.kernel[...] + enc.bias[...]) @ dec.kernel[...] + dec.bias[...]
  np.testing.assert_allclose(linear(x), expected, rtol=1e-6)


def test_linear_autoencoder_reaches_pca_error():
  x = low_rank_data(0)
  code_size, steps = 3, 5000
  target = pca_reconstruction_mse(x, x, code_size)
  graphdef, params = nnx.split(AutoEncoder(x.shape[1], code_size, rngs=nnx.Rngs(0)), nnx.Param)
  optimizer = optax.adam(optax.cosine_decay_schedule(0.1, steps))
  data = jnp.asarray(x)

  def loss(p):
    return reconstruction_mse(nnx.merge(graphdef, p), data)

  @jax.jit
  def train(p):
    def step(carry, _):
      p, state = carry
      updates, state = optimizer.update(jax.grad(loss)(p), state, p)
      return (optax.apply_updates(p, updates), state), None

    (p, _), _ = jax.lax.scan(step, (p, optimizer.init(p)), None, length=steps)
    return p, loss(p)

  assert float(loss(params)) > 2 * target  # the untrained start is far away
  params, final = train(params)
  assert target * (1 - 1e-4) <= float(final) <= target * 1.01
  # The decoder's range is the principal subspace: projecting its columns off U_3 leaves ~nothing.
  decoder = np.asarray(nnx.merge(graphdef, params).decoder.layers[0].kernel[...]).T  # (d, m)
  top = np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:code_size].T
  off = decoder - top @ (top.T @ decoder)
  assert np.linalg.norm(off) < 1e-2 * np.linalg.norm(decoder)
