"""Each update rule against a plain NumPy transcription of the chapter's iteration.

The JAX rules are driven exactly as a user would drive an optax optimizer: a per-sample gradient
in, ``opt.update(..., index=i)``, ``optax.apply_updates``. Indices are fixed (with repeats).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import INDICES, L2, np_full_gradient, np_sample_gradient, np_sample_scale

import deepfound
from deepfound import optim

TAU = 0.3


def run_rule(opt, x, y, indices, scalar=False, svrg=False, full=False):
  """Runs ``opt`` on the tiny logistic problem in float64; returns the iterates (and state)."""
  with jax.enable_x64(True):
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def sample_scale(b, i):
      return -yj[i] * jax.nn.sigmoid(-yj[i] * (xj[i] @ b))

    def sample_grad(b, i):
      return sample_scale(b, i) * xj[i] + L2 * b

    def refresh(b):
      if scalar:
        table = jax.vmap(sample_scale, (None, 0))(b, jnp.arange(len(y)))
        return table, xj.T @ table / len(y)
      table = jax.vmap(sample_grad, (None, 0))(b, jnp.arange(len(y)))
      return table, table.mean(axis=0)

    params = jnp.zeros(x.shape[1])
    state = opt.init(params)
    iterates = []
    for i in indices:
      if full:
        grad = jax.grad(lambda b: jnp.mean(jnp.logaddexp(0, -yj * (xj @ b))) + 0.5 * L2 * b @ b)(params)
        updates, state = opt.update(grad, state, params)
      else:
        extra = dict(index=jnp.asarray(i))
        if scalar:
          extra.update(sample_scale=sample_scale(params, i), sample_features=xj[i])
        if svrg:
          extra["refresh_fn"] = refresh
        updates, state = opt.update(sample_grad(params, i), state, params, **extra)
      params = optax.apply_updates(params, updates)
      iterates.append(np.asarray(params))
    return np.array(iterates), state


def np_sag(x, y, indices, tau, average_over_seen=False):
  n, p = x.shape
  memory, g, b = np.zeros((n, p)), np.zeros(p), np.zeros(p)
  seen, out = set(), []
  for i in indices:
    h = np_sample_gradient(x, y, b, i)
    g = g - memory[i] + h
    memory[i] = h
    seen.add(i)
    b = b - tau * g / (len(seen) if average_over_seen else n)
    out.append(b.copy())
  return np.array(out)


def np_sag_scalar(x, y, indices, tau):
  """SAG storing s_i only: the L2 part of grad E_i is not stored but taken at the current b."""
  n, p = x.shape
  scales, g, b, out = np.zeros(n), np.zeros(p), np.zeros(p), []
  for i in indices:
    s = np_sample_scale(x, y, b, i)
    g = g + (s - scales[i]) * x[i]
    scales[i] = s
    b = b - tau * (g / n + L2 * b)
    out.append(b.copy())
  return np.array(out)


def np_saga(x, y, indices, tau):
  n, p = x.shape
  memory, g, b, out = np.zeros((n, p)), np.zeros(p), np.zeros(p), []
  for i in indices:
    h = np_sample_gradient(x, y, b, i)
    direction = h - memory[i] + g / n
    g = g - memory[i] + h
    memory[i] = h
    b = b - tau * direction
    out.append(b.copy())
  return np.array(out)


def np_saga_scalar(x, y, indices, tau):
  """SAGA storing s_i only; the L2 gradient is exact (current b), not a stored stale copy."""
  n, p = x.shape
  scales, g, b, out = np.zeros(n), np.zeros(p), np.zeros(p), []
  for i in indices:
    s = np_sample_scale(x, y, b, i)
    direction = (s - scales[i]) * x[i] + g / n + L2 * b
    g = g + (s - scales[i]) * x[i]
    scales[i] = s
    b = b - tau * direction
    out.append(b.copy())
  return np.array(out)


def np_svrg(x, y, indices, tau, period):
  n, p = x.shape
  b, out = np.zeros(p), []
  for step, i in enumerate(indices):
    if step % period == 0:
      snapshot = b.copy()
      mean = np_full_gradient(x, y, snapshot)
    direction = np_sample_gradient(x, y, b, i) - np_sample_gradient(x, y, snapshot, i) + mean
    b = b - tau * direction
    out.append(b.copy())
  return np.array(out)


def np_sgd(x, y, indices, tau0, l0):
  b, out = np.zeros(x.shape[1]), []
  for step, i in enumerate(indices):
    b = b - tau0 / (1 + step / l0) * np_sample_gradient(x, y, b, i)  # (17.8)
    out.append(b.copy())
  return np.array(out)


def np_sga(x, y, indices, tau0, l0):
  """SGD on auxiliary iterates with tau0/(1 + sqrt(l/l0)); Cesaro average of iterates 1..l."""
  aux, total, out = np.zeros(x.shape[1]), np.zeros(x.shape[1]), []
  for step, i in enumerate(indices):
    aux = aux - tau0 / (1 + np.sqrt(step / l0)) * np_sample_gradient(x, y, aux, i)
    total += aux
    out.append(total / (step + 1))
  return np.array(out)


def np_bgd(x, y, steps, tau):
  b, out = np.zeros(x.shape[1]), []
  for _ in range(steps):
    b = b - tau * np_full_gradient(x, y, b)
    out.append(b.copy())
  return np.array(out)


N = 6


@pytest.mark.parametrize(
    "name, make_opt, reference, kwargs",
    [
        ("sag_pytree", lambda: optim.sag(TAU, N, memory="pytree"), np_sag, {}),
        ("sag_scalar", lambda: optim.sag(TAU, N, memory="scalar"), np_sag_scalar, dict(scalar=True)),
        ("sag_seen", lambda: optim.sag(TAU, N, average_over_seen=True),
         lambda x, y, idx, tau: np_sag(x, y, idx, tau, average_over_seen=True), {}),
        ("saga_pytree", lambda: optim.saga(TAU, N), np_saga, {}),
        ("saga_scalar", lambda: optim.saga(TAU, N, memory="scalar"), np_saga_scalar,
         dict(scalar=True)),
        ("svrg_pytree", lambda: optim.svrg(TAU, N, update_frequency=4),
         lambda x, y, idx, tau: np_svrg(x, y, idx, tau, 4), dict(svrg=True)),
        ("svrg_scalar", lambda: optim.svrg(TAU, N, update_frequency=4, memory="scalar"),
         lambda x, y, idx, tau: np_svrg(x, y, idx, tau, 4), dict(svrg=True, scalar=True)),
    ],
)
def test_memory_rules_match_numpy(tiny_data, name, make_opt, reference, kwargs):
  x, y = tiny_data
  got, _ = run_rule(make_opt(), x, y, INDICES, **kwargs)
  want = reference(x, y, INDICES, TAU)
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_sgd_and_sga_match_numpy(tiny_data):
  x, y = tiny_data
  got, _ = run_rule(optim.sgd(optim.inverse_time_schedule(0.5, 3.0)), x, y, INDICES)
  np.testing.assert_allclose(got, np_sgd(x, y, INDICES, 0.5, 3.0), rtol=1e-10)
  opt = optim.sga(optim.inverse_sqrt_schedule(0.5, 3.0))
  with jax.enable_x64(True):
    params = jnp.zeros(x.shape[1])
    state = opt.init(params)
    averages = []
    for i in INDICES:
      grad = jnp.asarray(np_sample_gradient(x, y, np.asarray(params), i))
      updates, state = opt.update(grad, state, params)
      params = optax.apply_updates(params, updates)
      averages.append(np.asarray(optim.averaged_params(state)))
  np.testing.assert_allclose(np.array(averages), np_sga(x, y, INDICES, 0.5, 3.0), rtol=1e-10)


def test_bgd_matches_numpy(tiny_data):
  x, y = tiny_data
  got, _ = run_rule(optim.bgd(TAU), x, y, range(8), full=True)
  np.testing.assert_allclose(got, np_bgd(x, y, 8, TAU), rtol=1e-10)


def np_sag_minibatch(x, y, batches, tau):
  """Minibatch SAG: each distinct sample of the batch stores its gradient once."""
  n, p = x.shape
  memory, b, out = np.zeros((n, p)), np.zeros(p), []
  for batch in batches:
    for i in dict.fromkeys(batch):  # distinct, in order
      memory[i] = np_sample_gradient(x, y, b, i)
    b = b - tau * memory.sum(axis=0) / n
    out.append(b.copy())
  return np.array(out)


def test_sag_minibatch_with_duplicates(tiny_data):
  x, y = tiny_data
  batches = [[0, 3, 3], [1, 5, 0], [2, 2, 2], [4, 3, 1]]
  opt = optim.sag(TAU, N, batch_size=3)
  with jax.enable_x64(True):
    params = jnp.zeros(x.shape[1])
    state = opt.init(params)
    got = []
    for batch in batches:
      grads = jnp.stack([jnp.asarray(np_sample_gradient(x, y, np.asarray(params), i)) for i in batch])
      updates, state = opt.update(grads, state, params, index=jnp.asarray(batch))
      params = optax.apply_updates(params, updates)
      got.append(np.asarray(params))
    # The memory as the chapter defines it (deferred write applied) holds the last gradients.
    table = np.asarray(optim.flushed_table(state[0]))
  np.testing.assert_allclose(np.array(got), np_sag_minibatch(x, y, batches, TAU), rtol=1e-10)
  assert np.count_nonzero(np.abs(table).sum(axis=1)) == 6


def test_state_shapes_and_dtypes(tiny_data):
  x, _ = tiny_data
  params = jnp.zeros(3, jnp.float32)
  pytree_state = optim.sag(0.1, 50).init(params)[0]
  scalar_state = optim.sag(0.1, 50, memory="scalar").init(params)[0]
  assert pytree_state.table.shape == (50, 3) and pytree_state.table.dtype == jnp.float32
  assert scalar_state.table.shape == (50,)
  assert optim.memory_bytes("scalar", params, 1000) == 4000
  assert optim.memory_bytes("pytree", {"w": jnp.zeros((4, 5)), "b": jnp.zeros(5)}, 10) == 1000
  multinomial = optim.saga(0.1, 7, memory="scalar").init(jnp.zeros((3, 4)))[0]
  assert multinomial.table.shape == (7, 4)


def test_rules_on_nested_pytree_and_in_chain():
  """A nested pytree gives the same iterates as its flattened vector, inside an optax.chain whose
  clipping really acts (global norm is the same for the tree and the vector)."""
  rng = np.random.default_rng(0)
  n = 5
  x = jnp.asarray(rng.normal(size=(n, 10)) * 3.0, jnp.float32)
  tree = {"layer": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}, "scale": jnp.zeros(())}
  flat, unravel = jax.flatten_util.ravel_pytree(tree)

  def loss(params, i):
    v = jax.flatten_util.ravel_pytree(params)[0]
    return jnp.logaddexp(0.0, -(x[i] @ v) * (1.0 - 2.0 * (i % 2)))

  for make in (lambda: optim.sag(0.1, n), lambda: optim.saga(0.1, n)):
    def chained():
      return optax.chain(optax.clip_by_global_norm(0.5), make())  # noqa: B023
    tree_opt, flat_opt = chained(), chained()
    tree_params, tree_state = tree, tree_opt.init(tree)
    flat_params, flat_state = flat, flat_opt.init(flat)
    clipped = 0
    for i in [0, 2, 2, 4, 1, 3]:
      g_tree = jax.grad(loss)(tree_params, i)
      clipped += float(optax.tree.norm(g_tree)) > 0.5
      updates, tree_state = tree_opt.update(g_tree, tree_state, tree_params, index=i)
      tree_params = optax.apply_updates(tree_params, updates)
      g_flat = jax.grad(lambda v, i=i: loss(unravel(v), i))(flat_params)
      updates, flat_state = flat_opt.update(g_flat, flat_state, flat_params, index=i)
      flat_params = optax.apply_updates(flat_params, updates)
    assert clipped >= 3
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(tree_params)[0], flat_params,
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(flat_params, 0.0)


def test_scalar_layout_rejects_pytrees():
  with pytest.raises(ValueError, match="one array"):
    optim.sag(0.1, 4, memory="scalar").init({"a": jnp.zeros(2), "b": jnp.zeros(2)})


def test_public_api():
  assert set(optim.METHODS) == {"bgd", "sgd", "sga", "sag", "saga", "svrg"}
  assert callable(deepfound.optim.driver.run)
