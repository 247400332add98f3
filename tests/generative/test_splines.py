"""Spline flows (issue 20): the rational-quadratic spline against its definition, jax.jacfwd and
flowjax's bijector; the coupling flow's inverse and log-determinant for every transform and
mixing; the best-iterate selection by a validation metric; bits per dimension."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from deepfound.experiment.generative import bits_per_dim
from deepfound.models import splines
from deepfound.models.density import MIXINGS, TRANSFORMS, CouplingFlow
from deepfound.optim import driver


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def random_knots(seed, num_bins=7, bound=2.5, size=3.0):
  raw = size * jax.random.normal(jax.random.key(seed), (splines.params_per_dimension(num_bins),),
                                 jnp.float64)
  return splines.knots(*splines.split_params(raw, num_bins), bound)


def broadcast(knots, shape):
  return jax.tree.map(lambda a: jnp.broadcast_to(a, shape + a.shape), knots)


def test_knots_span_the_bound_with_unit_end_slopes():
  knots = random_knots(0)
  for positions in (knots.x, knots.y):
    assert positions[0] == -2.5 and positions[-1] == 2.5
    assert np.all(np.diff(positions) >= 2 * 2.5 * splines.MIN_BIN * 0.999)
  assert knots.derivative[0] == 1 and knots.derivative[-1] == 1
  assert np.all(knots.derivative >= splines.MIN_DERIVATIVE)
  # all-zero raw numbers: equal bins and unit slopes, the identity
  zero = splines.knots(jnp.zeros(5), jnp.zeros(5), jnp.zeros(4), 3.0)
  x = jnp.linspace(-4.0, 4.0, 33)
  y, log_slope = splines.forward(x, broadcast(zero, x.shape))
  np.testing.assert_allclose(y, x, atol=1e-12)
  np.testing.assert_allclose(log_slope, 0.0, atol=1e-12)


def test_passes_through_its_knots_inverts_and_has_identity_tails():
  knots = random_knots(1)
  at_knots, _ = splines.forward(knots.x, broadcast(knots, knots.x.shape))
  np.testing.assert_allclose(at_knots, knots.y, atol=1e-12)
  x = jnp.concatenate([jnp.linspace(-6.0, 6.0, 401), jnp.array([-2.5, 2.5, 1e6, -1e6])])
  y, log_slope = splines.forward(x, broadcast(knots, x.shape))
  back, log_slope_back = splines.inverse(y, broadcast(knots, x.shape))
  np.testing.assert_allclose(back, x, atol=1e-10)
  np.testing.assert_allclose(log_slope_back, log_slope, atol=1e-9)
  assert np.all(np.diff(y[:401]) > 0)  # monotone
  outside = np.abs(x) > 2.5
  np.testing.assert_array_equal(y[outside], x[outside])
  np.testing.assert_array_equal(log_slope[outside], 0.0)
  inside = np.abs(np.asarray(x)) < 2.5
  assert np.max(np.abs(y[inside] - x[inside])) > 0.1  # it does transform inside


def test_log_slope_is_the_derivative():
  knots = random_knots(2)
  x = jnp.linspace(-3.0, 3.0, 241)
  _, log_slope = splines.forward(x, broadcast(knots, x.shape))
  slope = jax.vmap(jax.grad(lambda v: splines.forward(v, knots)[0]))(x)
  np.testing.assert_allclose(log_slope, jnp.log(slope), atol=1e-10)


@pytest.mark.slow
def test_agrees_with_flowjax():
  flowjax = pytest.importorskip("flowjax.bijections")
  equinox = pytest.importorskip("equinox")
  knots = random_knots(3, num_bins=9, bound=3.0)
  theirs = flowjax.RationalQuadraticSpline(knots=8, interval=3.0)  # 8 inner knots: 9 bins
  theirs = equinox.tree_at(lambda s: (s.x_pos, s.y_pos, s.derivatives), theirs,
                           (knots.x, knots.y, knots.derivative))
  x = jax.random.uniform(jax.random.key(4), (500,), jnp.float64, -4.0, 4.0)
  y, log_slope = splines.forward(x, broadcast(knots, x.shape))
  y_theirs, log_det_theirs = jax.vmap(theirs.transform_and_log_det)(x)
  np.testing.assert_allclose(y, y_theirs, atol=1e-12)
  np.testing.assert_allclose(log_slope, log_det_theirs, atol=1e-10)
  back, log_slope_back = splines.inverse(y, broadcast(knots, x.shape))
  back_theirs, log_det_back = jax.vmap(theirs.inverse_and_log_det)(y)
  np.testing.assert_allclose(back, back_theirs, atol=1e-10)
  np.testing.assert_allclose(-log_slope_back, log_det_back, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("mixing", MIXINGS)
def test_flow_inverse_and_log_det(transform, mixing):
  dim = 3
  model = CouplingFlow(dim, 4, (8,), rngs=nnx.Rngs(5), transform=transform, mixing=mixing,
                       num_bins=5, tail_bound=2.0, activation="tanh",
                       data_loc=[0.5, -1.0, 2.0], data_scale=[2.0, 0.5, 1.0])
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(6), len(leaves))
  params = jax.tree.unflatten(treedef, [leaf.astype(jnp.float64)
                                        + 0.2 * jax.random.normal(k, leaf.shape, jnp.float64)
                                        for leaf, k in zip(leaves, keys, strict=True)])
  rest = jax.tree.map(lambda r: r.astype(jnp.float64) if r.dtype == jnp.float32 else r, rest)

  @jax.jit  # one program: op by op, the Jacobians of the spline flow take seconds
  def everything(params, x):
    model = nnx.merge(graphdef, params, rest)
    z, log_det = model.inverse(x)
    jacobians = jax.vmap(jax.jacfwd(lambda v: model.inverse(v)[0]))(x)
    return z, log_det, jacobians, model.forward(z), model.log_density(x)

  x = 2.0 * jax.random.normal(jax.random.key(7), (6, dim), jnp.float64)
  z, log_det, jacobians, x_again, log_density = everything(params, x)
  np.testing.assert_allclose(x_again, x, atol=1e-9)
  sign, expected = np.linalg.slogdet(np.asarray(jacobians))
  assert np.all(sign != 0) and np.std(expected) > 1e-3
  np.testing.assert_allclose(log_det, expected, atol=1e-9)
  normal = -0.5 * np.sum(np.asarray(z) ** 2, axis=-1) - 0.5 * dim * math.log(2 * math.pi)
  np.testing.assert_allclose(log_density, normal + expected, atol=1e-9)


def test_best_iterate_is_the_smallest_logged_value():
  """A hand-made validation curve: the selection takes its minimum (2.0 at step 40), skips the
  NaN, keeps the first of equal values, and carries that log point's parameters."""
  curve = [5.0, 3.0, 4.0, float("nan"), 2.0, 2.0, 2.5]

  class Problem:
    select_by = "valid_nll"
    patience = None

  params = {"w": jnp.zeros(2)}
  best = driver.Best(jnp.asarray(jnp.inf), jnp.asarray(-1, jnp.int32), params)
  state = driver.RunState(params, (), jnp.asarray(0, jnp.int32), jnp.zeros((0,), jnp.int32),
                          jax.random.key(0), jnp.zeros((0,)), jnp.asarray(-1, jnp.int32), best)
  for k, value in enumerate(curve):
    state = state._replace(params={"w": jnp.full(2, float(k))},
                           step=jnp.asarray(10 * k, jnp.int32))
    point = driver.LogPoint(state.step, jnp.asarray(0.0), jnp.asarray(0.0), None,
                            {"valid_nll": jnp.asarray(value)})
    state = driver._track_best(Problem(), state, point)
  assert int(state.best.step) == 40 and float(state.best.value) == 2.0
  np.testing.assert_array_equal(driver.final_params(state)["w"], [4.0, 4.0])
  facts = driver.final_facts(Problem(), driver.Method("sgd"), state)
  assert facts == dict(selected_by="valid_nll", selected_step=40, selected_value=2.0)


def test_bits_per_dim():
  # The uniform density on [0, 1]^d (NLL 0) puts 1/17 on each of 17 levels: log2(17) bits.
  assert float(bits_per_dim(jnp.asarray(0.0), 64, 16)) == pytest.approx(math.log2(17))
  # A density 2^(-b d) times the uniform one's: b bits fewer.
  nll = 64 * 1.5 * math.log(2)  # 1.5 bits per dimension worse than uniform
  assert float(bits_per_dim(jnp.asarray(nll), 64, 255)) == pytest.approx(8 + 1.5)


def test_patience_stops_when_the_best_is_that_many_log_points_old():
  """Validation values 5, 3, 4, 3.5, 3.2 with patience 3 (log points every 10 steps): the best
  (3, step 20) is 3 log points old at step 50, where the run stops; a later value moves neither
  the stop nor the selection."""

  class Problem:
    select_by = "valid_nll"
    patience = 3

  params = {"w": jnp.zeros(1)}
  best = driver.Best(jnp.asarray(jnp.inf), jnp.asarray(-1, jnp.int32), params)
  state = driver.RunState(params, (), jnp.asarray(0, jnp.int32), jnp.zeros((0,), jnp.int32),
                          jax.random.key(0), jnp.zeros((0,)), jnp.asarray(-1, jnp.int32), best)
  stops = []
  for k, value in enumerate([5.0, 3.0, 4.0, 3.5, 3.2, 1.0], start=1):
    state = state._replace(step=jnp.asarray(10 * k, jnp.int32))
    point = driver.LogPoint(state.step, jnp.asarray(0.0), jnp.asarray(0.0), None,
                            {"valid_nll": jnp.asarray(value)})
    state = driver._track_best(Problem(), state, point, log_every=10)
    stops.append(int(state.stopped_at))
  assert stops == [-1, -1, -1, -1, 50, 50]
  assert int(state.best.step) == 20  # the selection is frozen once the run stopped
  facts = driver.final_facts(Problem(), driver.Method("sgd"), state)
  assert facts["stopped_early"] and facts["stopped_step"] == 50 and facts["patience"] == 3
