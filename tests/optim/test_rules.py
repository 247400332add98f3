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
from deepfound.optim.memory import flushed_table, memory_bytes

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
        # A list of indices is a minibatch: per-sample values get a leading batch axis.
        index = jnp.asarray(i)
        scale_fn, grad_fn = sample_scale, sample_grad
        if index.ndim:
          scale_fn, grad_fn = jax.vmap(sample_scale, (None, 0)), jax.vmap(sample_grad, (None, 0))
        extra = dict(index=index)
        if scalar:
          extra.update(sample_scale=scale_fn(params, index), sample_features=xj[index])
        if svrg:
          extra["refresh_fn"] = refresh
        updates, state = opt.update(grad_fn(params, index), state, params, **extra)
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    table = np.asarray(flushed_table(state[0]))
  np.testing.assert_allclose(np.array(got), np_sag_minibatch(x, y, batches, TAU), rtol=1e-10)
  assert np.count_nonzero(np.abs(table).sum(axis=1)) == 6


# Minibatches of 3, with a sample repeated within a batch ([0, 3, 3], [2, 2, 2], [3, 3, 1]).
BATCHES = [[0, 3, 3], [1, 5, 0], [2, 2, 2], [4, 3, 1], [3, 3, 1], [5, 0, 2], [1, 4, 4]]


def np_saga_minibatch(x, y, batches, tau, scalar=False):
  """Minibatch SAGA: direction = mean over the batch positions k of (h_k - G_{i_k}) + g / n, with
  G read before the step; then each distinct sample of the batch stores its gradient once.

  ``scalar``: the memory holds s_i only, G_i = s_i x_i, and the L2 term is exact (current b)."""
  n, p = x.shape
  memory, g, b, out = np.zeros((n, p)), np.zeros(p), np.zeros(p), []
  for batch in batches:
    if scalar:
      new = {i: np_sample_scale(x, y, b, i) * x[i] for i in batch}
    else:
      new = {i: np_sample_gradient(x, y, b, i) for i in batch}
    direction = np.mean([new[i] - memory[i] for i in batch], axis=0) + g / n
    if scalar:
      direction = direction + L2 * b
    for i in dict.fromkeys(batch):  # distinct, in order
      g = g + new[i] - memory[i]
      memory[i] = new[i]
    b = b - tau * direction
    out.append(b.copy())
  return np.array(out)


def np_svrg_minibatch(x, y, batches, tau, period):
  """Minibatch SVRG: direction = mean over the batch of (h_k - G~_k) + mean_j G~_j, with the
  snapshot b~ (G~_j = grad E_j(b~)) reset to the current iterate every ``period`` steps."""
  n, p = x.shape
  b, out = np.zeros(p), []
  for step, batch in enumerate(batches):
    if step % period == 0:
      snapshot = b.copy()
      mean = np.mean([np_sample_gradient(x, y, snapshot, j) for j in range(n)], axis=0)
    correction = [np_sample_gradient(x, y, b, i) - np_sample_gradient(x, y, snapshot, i) for i in batch]
    b = b - tau * (np.mean(correction, axis=0) + mean)
    out.append(b.copy())
  return np.array(out)


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["pytree", "scalar"])
def test_saga_minibatch_with_duplicates(tiny_data, memory):
  x, y = tiny_data
  scalar = memory == "scalar"
  opt = optim.saga(TAU, N, memory=memory, batch_size=3)
  got, state = run_rule(opt, x, y, BATCHES, scalar=scalar)
  want = np_saga_minibatch(x, y, BATCHES, TAU, scalar=scalar)
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
  # The memory's sum counts each sample once: g = sum_i G_i over the flushed table.
  with jax.enable_x64(True):
    table = np.asarray(flushed_table(state[0]))
    stored = table @ x if scalar else table.sum(axis=0)  # sum_i s_i x_i, or sum_i G_i
    np.testing.assert_allclose(np.asarray(state[0].gradient_sum), stored, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["pytree", "scalar"])
def test_svrg_minibatch_matches_numpy(tiny_data, memory):
  x, y = tiny_data
  opt = optim.svrg(TAU, N, update_frequency=3, memory=memory)
  got, _ = run_rule(opt, x, y, BATCHES, scalar=memory == "scalar", svrg=True)
  np.testing.assert_allclose(got, np_svrg_minibatch(x, y, BATCHES, TAU, 3), rtol=1e-10, atol=1e-12)


def test_cesaro_average_after_scaling_is_the_mean_of_the_iterates(tiny_data):
  """cesaro_average() at the end of a chain keeps (1/l) sum_{k=1..l} of the iterates; before any
  update it is the starting point; it leaves the updates (plain SGD here) unchanged."""
  x, y = tiny_data
  start = np.array([0.5, -1.0, 2.0])
  opt = optax.chain(optax.scale(-TAU), optim.cesaro_average())
  b, want_iterates = start.copy(), []
  for i in INDICES:
    b = b - TAU * np_sample_gradient(x, y, b, i)
    want_iterates.append(b.copy())
  want_iterates = np.array(want_iterates)
  want_averages = np.cumsum(want_iterates, axis=0) / np.arange(1, len(INDICES) + 1)[:, None]
  with jax.enable_x64(True):
    params = jnp.asarray(start)
    state = opt.init(params)
    np.testing.assert_array_equal(np.asarray(optim.averaged_params(state)), start)
    iterates, averages = [], []
    for i in INDICES:
      grad = jnp.asarray(np_sample_gradient(x, y, np.asarray(params), i))
      updates, state = opt.update(grad, state, params)
      params = optax.apply_updates(params, updates)
      iterates.append(np.asarray(params))
      averages.append(np.asarray(optim.averaged_params(state)))
  np.testing.assert_allclose(np.array(iterates), want_iterates, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(np.array(averages), want_averages, rtol=1e-10, atol=1e-12)
  assert not np.allclose(averages[-1], iterates[-1])  # the average is not the last iterate


def test_state_shapes_and_dtypes(tiny_data):
  x, _ = tiny_data
  params = jnp.zeros(3, jnp.float32)
  pytree_state = optim.sag(0.1, 50).init(params)[0]
  scalar_state = optim.sag(0.1, 50, memory="scalar").init(params)[0]
  assert pytree_state.table.shape == (50, 3) and pytree_state.table.dtype == jnp.float32
  assert scalar_state.table.shape == (50,)
  assert memory_bytes("scalar", params, 1000) == 4000
  assert memory_bytes("pytree", {"w": jnp.zeros((4, 5)), "b": jnp.zeros(5)}, 10) == 1000
  multinomial = optim.saga(0.1, 7, memory="scalar").init(jnp.zeros((3, 4)))[0]
  assert multinomial.table.shape == (7, 4)


@pytest.mark.slow
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


def test_registry_lists_the_built_in_rules_and_refuses_unknown_names():
  assert {"bgd", "sgd", "sga", "sag", "saga", "svrg", "adam"} <= set(optim.RULES.names())
  assert optim.get_rule("sag").keeps_memory and not optim.get_rule("sgd").keeps_memory
  with pytest.raises(ValueError, match="unknown update rule 'newton'; registered: bgd, sgd"):
    optim.get_rule("newton")
  with pytest.raises(ValueError, match="already registered"):
    optim.register_rule(optim.get_rule("sgd"))
  with pytest.raises(ValueError, match="has no option svrg_frequency"):
    deepfound.optim.driver.Method("sag", svrg_frequency=3)
