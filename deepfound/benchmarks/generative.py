"""Section 17.4's targets, measured: many seeds of a generative model in one vmapped program.

``seed_runs(config, num_seeds)`` builds the model ``num_seeds`` times (model.seed, model.seed + 1,
...: different initializations) and runs all of them, each with its own sampling key, as one
``jax.vmap`` of ``driver.run``: one compile, one program. It returns every seed's last logged
metrics and their mean and standard deviation. ``em_baseline`` fits scikit-learn's
``GaussianMixture`` (EM) to the same training points; ``pca_baseline`` is in the auto-encoder
metrics themselves (``pca_mse``).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.experiment import build, precision_scope, validate
from deepfound.optim import driver
from deepfound.problems.generative import LossFiniteSum, PushForward


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def seed_runs(config: ml_collections.ConfigDict, num_seeds: int) -> dict[str, Any]:
  """``num_seeds`` runs of ``config`` (initialization and sampling seeds 0, 1, ...) in one program.

  Returns dict(per_seed={metric: [values]}, diverged (seeds whose objective is not finite),
  mean={...}, sd={...} (over the other seeds), run_seconds, compile_s, steps_per_second (of all
  seeds together), problem, final_params) with the metrics of the last log point.
  """
  validate(config)
  with precision_scope(config.precision):
    problems = []
    for offset in range(num_seeds):
      seeded = ml_collections.ConfigDict(config.to_dict())
      seeded.model.seed = config.model.seed + offset
      problems.append(build.build_problem(seeded))
    problem = problems[0]  # the data are the same for every seed; only the parameters differ
    params = _stack([p.init_params() for p in problems])
    method = build.build_method(config)
    resolved = build.resolve_hyperparameters(config, build.problem_constants(problem))
    hyper = driver.hyperparameters(**resolved, dtype=build.precision_dtype(config.precision))
    keys = jax.vmap(jax.random.PRNGKey)(config.seed + jnp.arange(num_seeds))

    def one(problem, key, start):
      return driver.run(problem, method, hyper, key, start, num_steps=config.num_steps,
                        log_every=config.log_every)

    program = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    tic = time.perf_counter()
    compiled = program.lower(problem, keys, params).compile()
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    states, points = compiled(problem, keys, params)
    points = jax.device_get(points)
    run_seconds = time.perf_counter() - tic
  last = dict(objective=np.asarray(points.objective)[:, -1])
  last.update({name: np.asarray(values)[:, -1] for name, values in (points.extras or {}).items()})
  # A seed whose objective is not finite diverged: counted apart, left out of the statistics
  # (its mode metrics would count as zeros otherwise).
  finite = np.isfinite(last["objective"])
  kept = {k: v[finite] for k, v in last.items()}
  return dict(
      per_seed={k: v.tolist() for k, v in last.items()},
      diverged=int(np.sum(~finite)),
      mean={k: float(np.nanmean(v)) if v.size else float("nan") for k, v in kept.items()},
      sd={k: float(np.nanstd(v)) if v.size else float("nan") for k, v in kept.items()},
      curves=dict(step=np.asarray(points.step)[0].tolist(),
                  **{k: np.asarray(v).tolist() for k, v in (points.extras or {}).items()},
                  objective=np.asarray(points.objective).tolist()),
      run_seconds=run_seconds, compile_s=compile_s,
      steps_per_second=num_seeds * config.num_steps / run_seconds,
      problem=problem, final_params=driver.reported_params(states),
  )


GRID_POINTS = 120  # per axis, of the log-density picture


def picture_data(problem, params, num_samples: int = 2_500, seed: int = 0) -> dict[str, Any]:
  """What the 2-D pictures show of one fitted model (``params`` of one seed): its samples, the
  test points, and for a density model its log-density on a grid over the data's box."""
  out = dict(test=np.asarray(problem.test_samples[:num_samples]).tolist())
  samplers = (LossFiniteSum, PushForward)
  if not isinstance(problem, samplers) or problem.test_samples.shape[-1] != 2:
    return out
  try:
    samples = problem.sample(params, jax.random.PRNGKey(seed), num_samples)
  except TypeError:  # a finite sum without a sampler (an auto-encoder)
    return out
  out["samples"] = np.asarray(samples).tolist()
  if isinstance(problem, LossFiniteSum):  # a density model: -sample_loss is log rho
    test = np.asarray(problem.test_samples)
    low, high = test.min(axis=0), test.max(axis=0)
    pad = 0.15 * (high - low)
    axes = [np.linspace(low[k] - pad[k], high[k] + pad[k], GRID_POINTS) for k in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="xy"), axis=-1).reshape(-1, 2)
    log_density = -jax.vmap(problem.sample_loss, (None, 0))(params, jnp.asarray(grid, test.dtype))
    out.update(grid_x=axes[0].tolist(), grid_y=axes[1].tolist(),
               log_density=np.asarray(log_density).reshape(GRID_POINTS, GRID_POINTS).tolist())
  return out


def em_baseline(samples: np.ndarray, test_samples: np.ndarray, num_components: int,
                seed: int = 0) -> dict[str, float]:
  """scikit-learn's GaussianMixture (EM, full covariances, k-means start) on the same points:
  its average train and test log-likelihoods and its fit time."""
  from sklearn.mixture import GaussianMixture

  tic = time.perf_counter()
  mixture = GaussianMixture(num_components, covariance_type="full", tol=1e-6, max_iter=1000,
                            n_init=3, random_state=seed).fit(samples)
  seconds = time.perf_counter() - tic
  return dict(train_log_likelihood=float(mixture.score(samples)),
              test_log_likelihood=float(mixture.score(test_samples)), seconds=seconds,
              converged=bool(mixture.converged_), iterations=int(mixture.n_iter_))
