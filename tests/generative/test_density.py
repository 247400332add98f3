"""The density models of 17.4: exact log-determinants and inverses of the flow, the mixture's
log-density against SciPy, and maximum likelihood of one Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from flax import nnx

from deepfound.models.density import GaussianMixtureModel, RealNVP, coupling_partitions, split


@jax.jit
def perturb(params, key, size):
  """size * N(0, 1) added to every parameter."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [leaf + size * jax.random.normal(k, leaf.shape)
                                      for leaf, k in zip(leaves, keys, strict=True)])


def perturbed(model, key, size):
  """The model with size * N(0, 1) added to every parameter (the couplings' zero last layers
  included, so that no layer is the identity)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return nnx.merge(graphdef, perturb(params, key, size), rest)


def test_partitions():
  assert coupling_partitions(2, 3) == [((0,), (1,)), ((1,), (0,)), ((0,), (1,))]
  assert coupling_partitions(5, 2) == [((0, 1, 2), (3, 4)), ((3, 4), (0, 1, 2))]
  assert coupling_partitions(4, 1, "checkerboard") == [((0, 2), (1, 3))]


@pytest.mark.slow
@pytest.mark.parametrize("dim, mask", [(2, "halves"), (6, "checkerboard")])
def test_flow_log_det_and_inverse(dim, mask):
  rng = np.random.default_rng(dim)
  model = RealNVP(dim, 4, hidden=(16, 16), activation="tanh", mask=mask, rngs=nnx.Rngs(dim),
                  data_loc=rng.normal(size=dim), data_scale=rng.uniform(0.5, 3.0, size=dim))
  x = jnp.asarray(rng.normal(size=(5, dim)), jnp.float32)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def everything(params, x):
    model = nnx.merge(graphdef, params, rest)
    z, log_det = model.inverse(x)
    jacobians = jax.vmap(jax.jacfwd(lambda v: model.inverse(v)[0]))(x)
    return z, log_det, jacobians, model.forward(z), model.log_density(x)

  # Zero last layers: the couplings start as the identity, only the standardization acts.
  z0 = everything(params, x)[0]
  np.testing.assert_allclose(z0, (x - model.loc[...]) / model.scale[...], rtol=1e-6)
  z, log_det, jacobians, x_again, log_p = everything(perturb(params, jax.random.key(dim), 0.3), x)
  assert z.shape == (5, dim) and log_det.shape == (5,)
  sign, expected = np.linalg.slogdet(np.asarray(jacobians, np.float64))
  assert np.all(sign != 0)
  assert np.std(expected) > 0.05  # the layers do act, and differently at each x
  np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(x_again, x, rtol=1e-4, atol=1e-4)
  expected_log_p = scipy.stats.multivariate_normal(np.zeros(dim)).logpdf(np.asarray(z, np.float64))
  np.testing.assert_allclose(log_p, expected_log_p + expected, rtol=1e-4, atol=1e-4)
  assert model.sample(jax.random.key(0), 7).shape == (7, dim)


@pytest.mark.slow
def test_flow_is_normalized_and_splits():
  model = perturbed(RealNVP(2, 4, hidden=(16,), activation="tanh", rngs=nnx.Rngs(0),
                            data_loc=[1.0, -1.0], data_scale=[0.5, 2.0]), jax.random.key(1), 0.1)
  graphdef, params, log_density = split(model)
  assert all(isinstance(v, nnx.Param) for v in jax.tree.leaves(params, is_leaf=lambda v: isinstance(
      v, nnx.Variable)))
  # The integral of p over a box [-9, 11] x [-21, 19] (a Riemann sum) is the share of the flow's
  # samples in it: this checks the base density's constant, the log-det and sample() together.
  a, b = np.meshgrid(np.linspace(-9, 11, 401), np.linspace(-21, 19, 401), indexing="ij")
  points = jnp.asarray(np.stack([a.ravel(), b.ravel()], axis=1), jnp.float32)
  mass = np.exp(np.asarray(jax.jit(log_density)(params, points), np.float64)).sum() * 0.05 * 0.1
  samples = np.asarray(model.sample(jax.random.key(5), 100_000))
  inside = np.mean((np.abs(samples[:, 0] - 1) < 10) & (np.abs(samples[:, 1] + 1) < 20))
  assert inside > 0.99
  assert mass == pytest.approx(inside, abs=2e-3)


@pytest.mark.slow
def test_gmm_log_density_against_scipy():
  rng = np.random.default_rng(0)
  num_components, dim = 3, 2
  model = perturbed(GaussianMixtureModel(num_components, dim, rngs=nnx.Rngs(0),
                                         init_points=rng.normal(size=(num_components, dim))),
                    jax.random.key(2), 0.5)
  x = rng.normal(size=(10, dim))
  weights = np.asarray(model.weights(), np.float64)
  factor = np.asarray(model.precision_cholesky(), np.float64)
  assert np.allclose(np.triu(factor, 1), 0) and np.all(np.diagonal(factor, axis1=1, axis2=2) > 0)
  covariances = np.linalg.inv(factor @ np.swapaxes(factor, 1, 2))
  np.testing.assert_allclose(model.covariances(), covariances, rtol=1e-4)
  means = np.asarray(model.means[...], np.float64)
  expected = np.log(sum(w * scipy.stats.multivariate_normal(m, c).pdf(x)
                        for w, m, c in zip(weights, means, covariances, strict=True)))
  np.testing.assert_allclose(model.log_density(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5,
                             atol=1e-5)
  samples = model.sample(jax.random.key(3), 20_000)
  assert samples.shape == (20_000, dim)
  # The sample mean is the mixture mean sum_k pi_k mu_k.
  np.testing.assert_allclose(samples.mean(axis=0), weights @ means, atol=0.1)


def test_gmm_maximum_likelihood_of_one_gaussian():
  rng = np.random.default_rng(1)
  x = rng.multivariate_normal([1.0, -2.0], [[2.0, 0.6], [0.6, 0.5]], size=500).astype(np.float32)
  model = GaussianMixtureModel(1, 2, rngs=nnx.Rngs(0), init_points=x[:1])
  graphdef, params, log_density = split(model)
  optimizer = optax.adam(0.05)
  data = jnp.asarray(x)

  def step(carry, _):
    params, state = carry
    loss, grads = jax.value_and_grad(lambda p: -jnp.mean(log_density(p, data)))(params)
    updates, state = optimizer.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), loss

  (params, _), losses = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=600))(params)
  fitted = nnx.merge(graphdef, params)
  mean = x.astype(np.float64).mean(axis=0)
  covariance = np.cov(x.astype(np.float64), rowvar=False, bias=True)  # the MLE divides by n
  np.testing.assert_allclose(fitted.means[...][0], mean, atol=1e-2)
  np.testing.assert_allclose(fitted.covariances()[0], covariance, atol=1e-2)
  assert losses[-1] < losses[0]
