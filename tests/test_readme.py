"""The README's library example runs as written and does what it says."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks():
  with open(os.path.join(ROOT, "README.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  assert len(blocks) == 5
  return blocks


def test_readme_update_rule_example_runs():
  namespace = {}
  exec(compile(_blocks()[3], "README.md", "exec"), namespace)  # noqa: S102
  loss = float(namespace["full_loss"](namespace["params"]))
  assert loss < 0.60  # from log 2 = 0.693: SAG made real progress
  # The memory holds one gradient per sample for each leaf of the parameter pytree.
  sag_state = namespace["state"][1][0]
  assert sag_state.table["w"].shape == (1000, 10) and sag_state.table["bias"].shape == (1000,)


def test_readme_vmap_sweep_example_runs():
  namespace = {}
  exec(compile(_blocks()[4], "README.md", "exec"), namespace)  # noqa: S102
  objective = namespace["curves"].objective
  assert objective.shape == (16, 20)
  final = objective[:, -1]
  # Different step sizes give different runs, and the best one made real progress from log 2.
  assert float(final.max() - final.min()) > 1e-3
  assert float(final.min()) < 0.60


def test_readme_autodiff_example_runs():
  namespace = {}
  exec(compile(_blocks()[0], "README.md", "exec"), namespace)  # noqa: S102
  assert namespace["graph"].count("log1p") == 2
  # The printed gradients are the gradient: both modes agree with jax.grad.
  want = jax.grad(namespace["loss"])(jnp.ones(3))
  assert not np.allclose(want, 0.0)
  np.testing.assert_allclose(namespace["reverse"], want, atol=1e-6)
  np.testing.assert_allclose(namespace["forward"], want, atol=1e-6)


def test_readme_generative_example_runs():
  namespace = {}
  exec(compile(_blocks()[1], "README.md", "exec"), namespace)  # noqa: S102
  problem, state, ring = namespace["problem"], namespace["state"], namespace["ring"]
  test_nll = float(problem.data_loss(state.params, problem.test_samples))
  assert test_nll < -4.0  # from the start's +2.6: within 0.3 nats of the entropy, -4.29
  fitted = namespace["fitted"]
  modes = namespace["mode_metrics"](fitted.sample(jax.random.PRNGKey(1), 2500), ring.means, ring.sd)
  assert float(modes["modes_captured"]) == 8 and float(modes["high_quality_fraction"]) > 0.9


def test_readme_sparse_example_runs():
  namespace = {}
  exec(compile(_blocks()[2], "README.md", "exec"), namespace)  # noqa: S102
  state, points, optimum = namespace["state"], namespace["points"], namespace["optimum"]
  assert optimum.converged
  assert 0 <= float(points.objective[-1]) - optimum.value < 1e-4
  assert 0 < int(state.stopped_at) < 100_000  # tol stopped it
  zeros = int((state.params == 0).sum())
  assert 0 < zeros < state.params.size  # L1 made a sparse, not an empty, model
