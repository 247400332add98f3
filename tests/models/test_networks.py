"""Networks of 17.3 as pure parameter pytrees, trained by our update rules and driver."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.datasets
from flax import nnx

from deepfound import optim
from deepfound.models import CNN, MLP, perceptron, split
from deepfound.optim import driver
from deepfound.optim.memory import memory_bytes
from deepfound.problems import NetFiniteSum, make_problem


def digits(num_train=600, num_test=300):
  x, y = sklearn.datasets.load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  order = np.random.default_rng(0).permutation(len(y))
  x, y = x[order], y[order]
  return (x[:num_train], y[:num_train]), (x[num_train:num_train + num_test],
                                           y[num_train:num_train + num_test])


def net_problem(model, train, test, loss="cross_entropy", l2=0.0):
  _, params, apply = split(model)
  return NetFiniteSum(jnp.asarray(train[0]), jnp.asarray(train[1]), jnp.asarray(test[0]),
                      jnp.asarray(test[1]), params, jnp.asarray(l2, jnp.float32), apply, loss)


@pytest.mark.slow
def test_shapes_and_dtypes():
  rngs = nnx.Rngs(0)
  for model, x, out in ((MLP([64, 32, 16, 10], "tanh", rngs=rngs), jnp.ones((5, 64)), (5, 10)),
                        (perceptron(7, rngs=rngs), jnp.ones((3, 7)), (3, 1)),
                        (CNN((8, 8, 1), 10, rngs=rngs), jnp.ones((2, 8, 8, 1)), (2, 10))):
    _, params, apply = split(model)
    scores = apply(params, x)
    assert scores.shape == out and scores.dtype == jnp.float32
    assert apply(params, x[0]).shape == out[1:]  # one sample, no batch axis (per-sample grads)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


@pytest.mark.slow
def test_perceptron_is_the_logistic_problem():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(30, 4)).astype(np.float32)
  y = np.where(rng.random(30) < 0.5, -1.0, 1.0).astype(np.float32)
  linear = make_problem(x, y, l2=0.1)
  net = net_problem(perceptron(4, rngs=nnx.Rngs(0)), (x, y), (x, y), loss="logistic", l2=0.1)
  w = jnp.asarray(rng.normal(size=4), jnp.float32)
  params = jax.tree.map(jnp.zeros_like, net.initial_params)
  assert [leaf.shape for leaf in jax.tree.leaves(params)] == [(4, 1)]  # no bias: w only
  params["layers"][0]["kernel"][...] = w[:, None]
  assert float(net.objective(params)) == pytest.approx(float(linear.objective(w)), rel=1e-6)
  grad = net.gradient(params)
  np.testing.assert_allclose(grad["layers"][0]["kernel"][...][:, 0], linear.gradient(w),
                             rtol=1e-5, atol=1e-7)
  sample = net.terms(params, (jnp.asarray(x[:3]), jnp.asarray(y[:3]))).gradients
  linear_sample = linear.terms(w, (jnp.asarray(x[:3]), jnp.asarray(y[:3]))).gradients
  np.testing.assert_allclose(sample["layers"][0]["kernel"][...][..., 0], linear_sample,
                             rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("name, rate", [("sgd", 0.1), ("sag", 0.05), ("adam", 3e-3)])
def test_mlp_learns_digits(name, rate):
  train, test = digits()
  problem = net_problem(MLP([64, 32, 10], rngs=nnx.Rngs(0)), train, test)
  method = driver.Method(name, memory="pytree", batch_size=8)
  state, points = driver.run(problem, method, driver.hyperparameters(rate), jax.random.PRNGKey(0),
                             num_steps=600, log_every=300)
  accuracy = float(problem.accuracy(state.params, problem.test_features, problem.test_targets))
  assert accuracy > 0.6, accuracy  # chance is 0.1
  assert float(points.objective[-1]) < 0.5 * float(problem.objective(problem.initial_params))


@pytest.mark.slow
def test_sag_on_a_net_matches_numpy():
  train, _ = digits(12, 1)
  problem = net_problem(MLP([64, 5, 10], rngs=nnx.Rngs(0)), train, train)
  params = problem.initial_params
  flat0, unravel = jax.flatten_util.ravel_pytree(params)

  def sample_grad(flat, i):
    g = problem.terms(unravel(flat), problem.batch(jnp.arange(i, i + 1))).gradients
    return np.asarray(jax.flatten_util.ravel_pytree(jax.tree.map(lambda a: a[0], g))[0])

  n, tau, indices = 12, 0.5, [3, 7, 3, 0, 11, 7]
  opt = optim.sag(tau, n)  # pytree memory
  state = opt.init(params)
  memory, g, b = np.zeros((n, flat0.size)), np.zeros(flat0.size), np.asarray(flat0)
  for i in indices:
    h = sample_grad(b, i)  # NumPy SAG on the flattened parameters (17.1.5)
    g, memory[i] = g - memory[i] + h, h
    b = b - tau * g / n
    grads = problem.terms(params, problem.batch(jnp.arange(i, i + 1))).gradients
    updates, state = opt.update(jax.tree.map(lambda a: a[0], grads), state, params, index=i)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(params)[0], b, rtol=1e-4, atol=1e-6)
  assert memory_bytes("pytree", problem.initial_params, n) == 4 * n * flat0.size


@pytest.mark.slow
def test_vmap_over_seeds_on_a_net():
  train, test = digits(200, 50)
  problem = net_problem(MLP([64, 16, 10], rngs=nnx.Rngs(0)), train, test)
  method = driver.Method("sgd", batch_size=4)
  hyper = driver.hyperparameters(0.1)
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
  run = lambda key: driver.run(problem, method, hyper, key, num_steps=100, log_every=50)[1]  # noqa: E731
  batched = jax.vmap(run)(keys)
  single = run(keys[2])
  np.testing.assert_allclose(batched.objective[2], single.objective, rtol=1e-5)
  assert len({float(v) for v in batched.objective[:, -1]}) == 3


def test_a_model_checks_the_shared_model_keys_it_reads_and_no_others():
  """model.activation and model.hidden are checked for the models whose ModelSpec.uses names
  them (mlp), not for the others (linear, cnn); a spec cannot name a key that is not shared."""
  from deepfound.experiment import ConfigError, ModelSpec, base_config, get_model, validate
  from deepfound.experiment.models import SHARED_KEYS, register_model

  assert get_model("mlp").uses == ("hidden", "activation") and get_model("linear").uses == ()
  assert set(get_model("cnn").uses) <= set(SHARED_KEYS)
  config = base_config()
  config.optim.learning_rate, config.model.activation, config.model.hidden = 0.1, "swish", (0,)
  with pytest.raises(ConfigError, match=r"model.activation='swish' is ignored by model.name=linear"):
    validate(config)  # linear reads neither key: setting one is refused, not checked
  config.model.name, config.data.name, config.problem.loss = "cnn", "digits", "cross_entropy"
  with pytest.raises(ConfigError, match=r"is ignored by model.name=cnn"):
    validate(config)
  config.model.name = "mlp"
  with pytest.raises(ConfigError, match=r"model.hidden must be a tuple of positive integers"):
    validate(config)
  config.model.hidden = (8,)
  with pytest.raises(ConfigError, match=r"model.activation must be one of .*relu.*got 'swish'"):
    validate(config)
  with pytest.raises(ValueError, match="not shared model keys"):
    register_model(ModelSpec(name="bad", build=None, summary="", losses=("nll",),
                             uses=("widths",)))


def test_batch_norm_standardizes_each_hidden_layer_over_the_batch_and_drops_its_bias():
  net = MLP([3, 8, 5, 2], batch_norm=True, rngs=nnx.Rngs(0))
  x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(1), (256, 3))
  hidden = net.norms[0](net.layers[0](x))  # gamma 1, beta 0 at the start
  np.testing.assert_allclose(hidden.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(hidden.var(0), 1.0, rtol=1e-3)
  assert net.layers[0].bias is None and net.layers[1].bias is None
  assert net.layers[2].bias is not None  # the output layer keeps its bias
  # the statistics are the call's own batch: a sample's output depends on the others
  alone = net(x[:2])
  assert not np.allclose(alone, net(x)[:2])
  # and are computed over every axis but the last
  np.testing.assert_allclose(net(x.reshape(16, 16, 3)).reshape(256, 2), net(x), atol=1e-5)


def test_init_stddev_draws_weights_from_that_normal_and_zero_biases():
  net = MLP([400, 400, 1], init_stddev=0.02, rngs=nnx.Rngs(0))
  kernel = np.asarray(net.layers[0].kernel[...])
  assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001
  assert not np.any(np.asarray(net.layers[0].bias[...]))
  default = MLP([400, 400, 1], rngs=nnx.Rngs(0))
  assert abs(np.asarray(default.layers[0].kernel[...]).std() - 0.05) < 0.003  # LeCun: 1/sqrt(400)
  with pytest.raises(ValueError, match="init_stddev"):
    MLP([2, 2], init_stddev=0.0, rngs=nnx.Rngs(0))
