"""Section 17.4.3's targets, measured: many seeds of a GAN in one vmapped program.

``game_seed_runs(config, num_seeds)`` builds the GAN ``num_seeds`` times (model.seed, +1, ...:
different initializations of both players) and runs all of them, each with its own sampling key,
as one ``jax.vmap`` of ``optim.game.run``: one compile, one program. It returns every seed's
last logged metrics (modes captured, high-quality fraction, mode KL on 2,500 samples), their
mean and standard deviation, and the curves.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.experiment import build, precision_scope, validate
from deepfound.optim import game

MODE_METRICS = ("modes_captured", "high_quality_fraction", "mode_kl")
CLASS_METRICS = ("classes_covered", "class_kl", "frechet_distance")


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _seeded_setups(config: ml_collections.ConfigDict, num_seeds: int) -> list[build.Setup]:
  """The game of ``config`` built for model.seed, model.seed + 1, ...: the same data, each seed's
  initial parameters (call inside the precision's scope)."""
  setups = []
  for offset in range(num_seeds):
    seeded = ml_collections.ConfigDict(config.to_dict())
    seeded.model.seed = config.model.seed + offset
    setups.append(build.build(seeded))
  return setups


def game_seed_runs(config: ml_collections.ConfigDict, num_seeds: int,
                   keep_samples: int = 0) -> dict[str, Any]:
  """``num_seeds`` runs of the game of ``config`` in one program; with ``keep_samples``, seed 0's
  generated points (from the problem's fixed latents) at every log point, for pictures."""
  validate(config)
  with precision_scope(config.precision):
    setups = _seeded_setups(config, num_seeds)
    setup = setups[0]
    problem = setup.problem  # same data for every seed; only the parameters differ
    params = _stack([s.problem.init_params() for s in setups])
    keys = jax.vmap(jax.random.PRNGKey)(config.seed + jnp.arange(num_seeds))

    def one(problem, key, start):
      return game.run(problem, setup.method, setup.hyper, key, start,
                      num_steps=config.num_steps, log_every=config.log_every,
                      record_params=bool(keep_samples))

    program = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    tic = time.perf_counter()
    compiled = program.lower(problem, keys, params).compile()
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    states, points = compiled(problem, keys, params)
    points = jax.device_get(points)
    run_seconds = time.perf_counter() - tic
    samples = None
    if keep_samples:  # seed 0's generator at each log point: (log points, keep_samples, d)
      generators = jax.tree.map(lambda leaf: leaf[0], points.params[0])
      latents = problem.test_latents[:keep_samples]
      samples = np.asarray(jax.vmap(lambda g: problem.generate(g, latents))(generators))
  points = points._replace(params=None)
  extras = points.extras or {}
  last = dict(objective=np.asarray(points.objective)[:, -1])
  last.update({name: np.asarray(values)[:, -1] for name, values in extras.items()})
  finite = np.isfinite(last["objective"]) & np.isfinite(last["generator_loss"])
  # A diverged seed counts as zero modes (it generates nothing usable), and is reported apart.
  kept = {k: np.where(finite, v, 0.0) if k in ("modes_captured", "high_quality_fraction") else v
          for k, v in last.items()}
  return dict(
      per_seed={k: v.tolist() for k, v in last.items()},
      diverged=int(np.sum(~finite)),
      mean={k: float(np.nanmean(v)) for k, v in kept.items()},
      sd={k: float(np.nanstd(v)) for k, v in kept.items()},
      curves=dict(step=np.asarray(points.step)[0].tolist(),
                  **{k: np.asarray(v).tolist() for k, v in extras.items()
                     if k in MODE_METRICS + CLASS_METRICS}),
      run_seconds=run_seconds, compile_s=compile_s,
      steps_per_second=num_seeds * config.num_steps / run_seconds, samples=samples,
  )


def game_rate_sweep(config: ml_collections.ConfigDict, generator_rates, discriminator_rates,
                    num_seeds: int) -> dict[str, Any]:
  """Every (generator rate, discriminator rate, seed) of a grid as one vmapped program: the
  last log point's mode metrics, shaped (generator rates, discriminator rates, seeds)."""
  validate(config)
  with precision_scope(config.precision):
    setups = _seeded_setups(config, num_seeds)
    setup, dtype = setups[0], build.precision_dtype(config.precision)
    problem = setup.problem
    g_rates, d_rates = np.asarray(generator_rates, float), np.asarray(discriminator_rates, float)
    grid_g, grid_d, grid_s = np.meshgrid(g_rates, d_rates, np.arange(num_seeds), indexing="ij")
    params = _stack([setups[s].problem.init_params() for s in grid_s.ravel()])
    keys = jax.vmap(jax.random.PRNGKey)(config.seed + jnp.asarray(grid_s.ravel()))

    def player(base, rates):
      return base._replace(learning_rate=jnp.asarray(rates, dtype),
                           l0=jnp.broadcast_to(base.l0, rates.shape),
                           strong_convexity=jnp.broadcast_to(base.strong_convexity, rates.shape))

    hyper = game.GameHyper(player(setup.hyper.generator, grid_g.ravel()),
                           player(setup.hyper.discriminator, grid_d.ravel()))

    def one(problem, hyper, key, start):
      return game.run(problem, setup.method, hyper, key, start, num_steps=config.num_steps,
                      log_every=config.log_every)[1]

    program = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0)))
    tic = time.perf_counter()
    compiled = program.lower(problem, hyper, keys, params).compile()
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    points = jax.device_get(compiled(problem, hyper, keys, params))
    run_seconds = time.perf_counter() - tic
  shape = grid_g.shape
  last = {k: np.asarray(v)[:, -1].reshape(shape) for k, v in (points.extras or {}).items()
          if k in MODE_METRICS}
  finite = np.isfinite(np.asarray(points.objective)[:, -1]).reshape(shape)
  last = {k: np.where(finite, v, 0.0) if k != "mode_kl" else v for k, v in last.items()}
  return dict(generator_rates=g_rates.tolist(), discriminator_rates=d_rates.tolist(),
              num_seeds=num_seeds, runs=int(grid_g.size), diverged=int(np.sum(~finite)),
              last={k: v.tolist() for k, v in last.items()}, compile_s=compile_s,
              run_seconds=run_seconds, steps_per_second=grid_g.size * config.num_steps / run_seconds)
