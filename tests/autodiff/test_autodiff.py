"""Section 17.2: the graph, forward and reverse mode, the linear chain, flops, checkpointing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepfound.autodiff import (
    UnsupportedPrimitiveError,
    checkpointing,
    forward_gradient,
    reverse_gradient,
    trace_graph,
)
from deepfound.autodiff.chain import chain_gradient
from deepfound.autodiff.flops import flops

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
BINARY = jnp.asarray(rng.integers(0, 2, 8), jnp.float32)
CLASSES = jax.nn.one_hot(jnp.asarray(rng.integers(0, 3, 8)), 3)
PARAMS = dict(w1=jnp.asarray(rng.normal(size=(5, 6)), jnp.float32) * 0.5, b1=jnp.zeros(6),
              w2=jnp.asarray(rng.normal(size=(6, 3)), jnp.float32) * 0.5, b2=jnp.zeros(3))
ACTIVATIONS = dict(relu=jax.nn.relu, sigmoid=jax.nn.sigmoid, tanh=jnp.tanh)
LOSSES = {
    "optax_softmax_cross_entropy": lambda z: optax.softmax_cross_entropy(z, CLASSES).mean(),
    "log_softmax": lambda z: -jnp.mean(jnp.sum(jax.nn.log_softmax(z) * CLASSES, axis=1)),
    "softmax_then_log": lambda z: -jnp.mean(jnp.log(jnp.sum(jax.nn.softmax(z) * CLASSES, axis=1))),
    "optax_sigmoid_bce": lambda z: optax.sigmoid_binary_cross_entropy(z[:, 0], BINARY).mean(),
    "logistic_logaddexp": lambda z: jnp.mean(jnp.logaddexp(0.0, -(2 * BINARY - 1) * z[:, 0])),
}


def mlp_loss(activation, loss):
  def f(params):
    hidden = ACTIVATIONS[activation](X @ params["w1"] + params["b1"])
    return LOSSES[loss](hidden @ params["w2"] + params["b2"])
  return f


@pytest.mark.slow
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_both_modes_match_jax_grad_for_every_loss_spelling(activation):
  for loss in LOSSES:
    f = mlp_loss(activation, loss)
    want = jax.grad(f)(PARAMS)
    reverse, forward = reverse_gradient(f, PARAMS), forward_gradient(f, PARAMS)
    for key in want:
      np.testing.assert_allclose(reverse[key], want[key], atol=1e-6, err_msg=f"{loss} reverse")
      np.testing.assert_allclose(forward[key], want[key], atol=1e-6, err_msg=f"{loss} forward")
      np.testing.assert_allclose(forward[key], reverse[key], atol=1e-6)


def test_each_call_site_gets_fresh_nodes():
  """optax's sigmoid_binary_cross_entropy calls log_sigmoid twice (for y and 1 - y)."""
  graph = trace_graph(lambda z: optax.sigmoid_binary_cross_entropy(z, 1.0), jnp.float32(0.3))
  assert graph.count("log1p") == 2 and graph.count("exp") == 2
  logs = [n for n in graph.nodes if n.name == "log1p"]
  assert logs[0].index != logs[1].index and logs[0].parents != logs[1].parents
  assert all(n.name not in ("jit", "custom_jvp_call") for n in graph.nodes)  # all inlined
  children = graph.children()
  assert graph.output not in {p for n in graph.nodes for p in n.parents}
  assert all(len(children[i]) >= 1 for i in graph.inputs)


def test_unsupported_primitive_is_named():
  with pytest.raises(UnsupportedPrimitiveError, match="'cumsum'"):
    reverse_gradient(lambda v: jnp.cumsum(v).sum(), jnp.ones(3))
  with pytest.raises(UnsupportedPrimitiveError, match="'sort'"):
    forward_gradient(lambda v: jnp.sort(v)[0], jnp.ones(3))


def test_integer_casts_carry_no_derivative():
  def f(v):
    return jnp.sum(v * v.astype(jnp.int32).astype(jnp.float32))

  x = jnp.array([1.5, 2.5])
  np.testing.assert_allclose(reverse_gradient(f, x), jax.grad(f)(x))
  np.testing.assert_allclose(forward_gradient(f, x), jax.grad(f)(x))


def test_flops_of_a_convolution():
  kernel = jnp.ones((3, 3, 2, 4))  # HWIO

  def conv(image):
    return jax.lax.conv_general_dilated(image, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()

  image = jnp.ones((1, 5, 5, 2))
  assert flops(conv, image) == 2 * (5 * 5 * 4) * (3 * 3 * 2) + 5 * 5 * 4


def test_linear_chain_backprop_matches_jax_grad():
  layers = [lambda x, p: jnp.tanh(p["w"] @ x + p["b"]), lambda x, p: jax.nn.relu(p["w"] @ x),
            lambda x, p: jax.nn.sigmoid(p @ x)]
  params = [dict(w=jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), b=jnp.ones(4)),
            dict(w=jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)),
            jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)]
  x = jnp.asarray(rng.normal(size=3), jnp.float32)

  def loss(out):
    return jnp.sum(out ** 2)

  def composed(params, x):
    for layer, p in zip(layers, params, strict=True):
      x = layer(x, p)
    return loss(x)

  grads, input_grad = chain_gradient(layers, params, x, loss)
  want_params, want_x = jax.grad(composed, argnums=(0, 1))(params, x)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_params), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(input_grad, want_x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("inputs", [16, 64])
def test_flop_ratios_of_the_two_modes(inputs):
  """Reverse mode costs a constant times f (<= 3); forward mode M sweeps (M to M + 4)."""
  w1 = jnp.asarray(rng.normal(size=(64, inputs)), jnp.float32)
  w2 = jnp.asarray(rng.normal(size=(64, 64)), jnp.float32)

  def f(v):
    return jnp.sum(jnp.tanh(w2 @ jnp.tanh(w1 @ v)))

  x = jnp.ones(inputs)
  base = flops(f, x)
  assert base == pytest.approx(2 * 64 * inputs + 2 * 64 * 64 + 3 * 64)  # 2 dots, 2 tanh, 1 sum
  assert flops(lambda v: reverse_gradient(f, v), x) / base <= 3.0
  assert inputs <= flops(lambda v: forward_gradient(f, v), x) / base <= inputs + 4


def test_flops_count_scan_bodies_length_times():
  weights = jnp.ones((10, 4, 4))
  per_layer = 2 * 4 * 4 + 4  # matvec + tanh
  assert flops(lambda w, v: checkpointing.chain_loss(w, v), weights, jnp.ones(4)) == (
      10 * per_layer + 4)


@pytest.mark.slow
def test_checkpointing_schemes_same_gradient_less_memory():
  x = jnp.asarray(rng.normal(size=16), jnp.float32)
  temp, ratio = {}, {}
  for layers in (16, 64):
    weights = jnp.asarray(rng.normal(size=(layers, 16, 16)) / 4.0, jnp.float32)
    plain = checkpointing.input_gradient("none")(weights, x)
    base = flops(lambda w, v: checkpointing.chain_loss(w, v), weights, x)
    for scheme in checkpointing.SCHEMES:
      gradient = checkpointing.input_gradient(scheme)
      np.testing.assert_allclose(jax.jit(gradient)(weights, x), plain, rtol=1e-6, atol=1e-7)
      temp[scheme, layers] = checkpointing.temp_bytes(scheme, weights, x)
      ratio[scheme, layers] = flops(gradient, weights, x) / base
  # Without checkpointing memory grows with L; the recursive scheme's barely does.
  assert temp["none", 64] > 2 * temp["none", 16]
  assert temp["recursive", 64] < 1.3 * temp["recursive", 16]
  assert temp["recursive", 64] < temp["none", 64]
  # Recomputation: about one extra forward pass per level of bisection, one for sqrt.
  assert ratio["sqrt", 64] == pytest.approx(ratio["none", 64] + 1, abs=0.1)
  assert ratio["recursive", 64] == pytest.approx(ratio["none", 64] + np.log2(64 / 2), abs=0.2)
