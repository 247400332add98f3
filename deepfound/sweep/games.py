"""Sweeps of two-player games (model.name=gan): seeds, initializations and both players' rates
of one GAN as one vmapped, sharded program (``jax.vmap`` of ``optim.game.run``).

What varies inside one program (``VMAPPED_KEYS``): ``optim.generator.learning_rate``,
``optim.discriminator.learning_rate``, ``optim.generator.l0``, ``optim.discriminator.l0``,
``seed`` (the sampling key of the run) and ``model.seed`` (both players' initial parameters).
Any other swept key makes one program per value, as for single-player sweeps. The top-level
``optim.learning_rate``, ``optim.name``, ``optim.schedule``, ... are not a game's: sweeping them
is a ``SpecError`` that names the players' keys.

model.seed: the game is built once per distinct model.seed of a program. The problem's leaves
that are equal for every model.seed (the training data) are shared by all runs; those that differ
(the initial parameters, and the fixed latents and interpolation weights of the log points'
evaluation) are stacked and handed to each run, so each run is exactly the run that
``scripts/train.py`` makes of its config. If the problem's functions themselves depend on
model.seed (the image GANs' metric classifier is trained with model.seed + 2, and is a static
part of the problem, not an array), which a probe detects by evaluating V, both losses and the
metrics of every model.seed's start with the first model.seed's functions, the program is split
into one program per model.seed.

Outputs, as for single-player sweeps: ``sweep.jsonl`` (one row per run: the swept values, seed,
model_seed, diverged, broken_at / broken_player, final_objective = V at the last log point, both
learning rates used, and the last log point's extras: generator_loss, discriminator_loss, the
gradient norms and the problem's metrics, e.g. modes_captured, high_quality_fraction, mode_kl or
classes_covered, class_kl, frechet_distance); ``curves.npz`` (group<g>_steps, group<g>_objective,
group<g>_<extra> per log point, group<g>_runs); ``summary.json`` (the keys of a single-player
sweep); and pictures (``plots.write_game_plots``).

A run has diverged where ``scripts/train.py`` would have stopped it (``optim.game.bad_point``): when
at some log point V, a player's loss or gradient norm is not finite or |V| exceeds
``BLOWUP_FACTOR`` max(|V(start)|, 1), V(start) at the run's own initial parameters, or when either
player's parameters stopped being finite at some step (``broken_at``).
The best run of a program (summary.json's ``best``, with ``ranked_by``) is the non-diverged run
that is first by the problem's metrics in the order of ``RANKING`` (on the 2-D mixtures: most
modes captured, then the highest high-quality fraction, then the lowest mode KL; on images: most
classes covered, then the lowest Frechet distance, then the lowest class KL; a NaN ranks last);
for a game without such metrics, the run whose final V is closest to its value at the
equilibrium (-log 4 for the Jensen-Shannon GAN, 0 for the Wasserstein ones).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from deepfound import distributed
from deepfound.experiment import build as experiment
from deepfound.experiment.config import precision_dtype, precision_scope
from deepfound.experiment.games import player_values
from deepfound.optim import driver, game
from deepfound.optim.engine import BLOWUP_FACTOR
from deepfound.sweep import plots
from deepfound.sweep.common import (
  Group,
  SweepProgram,
  batch_size_for,
  register_program,
  summarize,
  tree_bytes,
  write_rows,
  write_summary,
)
from deepfound.sweep.spec import SpecError

# What varies inside one program: both players' rates and warm-ups, the sampling seed, and
# model.seed (both players' initial parameters).
VMAPPED_KEYS = ("optim.generator.learning_rate", "optim.discriminator.learning_rate",
                "optim.generator.l0", "optim.discriminator.l0", "seed", "model.seed")

# (metric, +1 if more is better / -1 if less is), compared in this order; a program is ranked by
# those of its rows' metrics that appear here.
RANKING = (("modes_captured", 1), ("high_quality_fraction", 1), ("mode_kl", -1),
           ("classes_covered", 1), ("frechet_distance", -1), ("class_kl", -1))
# V at the game's equilibrium (the generator's law is the data's): 2 JS - log 4 = -log 4 for the
# Jensen-Shannon GAN; 0 for the Wasserstein estimates.
EQUILIBRIUM_PAYOFF = {"js": -math.log(4.0)}


def check_keys(config, keys: list[str]) -> None:
  """Refuses a swept key of the single-player optim group that each player has its own of."""
  players = set(config.optim[game.PLAYERS[0]].keys())
  for key in keys:
    parts = key.split(".")
    if len(parts) == 2 and parts[0] == "optim" and parts[1] in players:
      raise SpecError(f"{key} is not used by a two-player game (model.name={config.model.name}): "
                      f"each player has its own; sweep optim.generator.{parts[1]} and/or "
                      f"optim.discriminator.{parts[1]}")


def _model_seeds(group: Group) -> list[int]:
  return list(dict.fromkeys(c.model.seed for c in group.configs))


def _setups(group: Group) -> dict[int, experiment.Setup]:
  """The game built once per distinct model.seed of the group (inside the precision's scope)."""
  setups = {}
  for config in group.configs:
    if config.model.seed not in setups:
      setups[config.model.seed] = experiment.build(config)
  return setups


def _probe(problem, params) -> list[np.ndarray]:
  losses = problem.losses(params, problem.evaluation_batch())
  metrics = problem.metrics(params)
  return [np.asarray(v) for v in (problem.objective(params), *losses,
                                  *(metrics[k] for k in sorted(metrics)))]


def _shares_functions(setups: dict[int, experiment.Setup]) -> bool:
  """Whether every model.seed's problem is the first's functions on its own arrays: same leaf
  shapes, and the same V, losses and metrics at its start (the static parts, closures, cannot be
  compared; their results can)."""
  first, *others = setups.values()
  leaves, treedef = jax.tree.flatten(first.problem)
  for setup in others:
    mine = jax.tree.leaves(setup.problem)
    if [(x.shape, x.dtype) for x in mine] != [(x.shape, x.dtype) for x in leaves]:
      return False
    if setup.method != first.method:
      return False
    params = setup.problem.init_params()
    hybrid = jax.tree.unflatten(treedef, mine)
    for a, b in zip(_probe(hybrid, params), _probe(setup.problem, params), strict=True):
      if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True):
        return False
  return True


def _split(group: Group) -> list[Group]:
  """One group per model.seed of ``group``."""
  parts: dict[int, Group] = {}
  for index, config in zip(group.runs, group.configs, strict=True):
    seed = config.model.seed
    part = parts.setdefault(seed, Group(f"{group.label}, model.seed={seed}", [], []))
    part.runs.append(index)
    part.configs.append(config)
  return list(parts.values())


def run_groups(groups: list[Group], budget: int, log: Callable[[str], None]
               ) -> tuple[list[Group], list[dict[str, Any]]]:
  """Runs every group; a group whose problem's functions change with model.seed is split into
  one program per model.seed. Returns the programs run and their results."""
  done, results = [], []
  for group in groups:
    with precision_scope(group.configs[0].precision):
      setups = _setups(group)
      parts = [group]
      if len(setups) > 1 and not _shares_functions(setups):
        parts = _split(group)
        log(f"[{group.label}] the problem's functions change with model.seed (not only its "
            f"arrays): one program per model.seed ({len(parts)})")
      for part in parts:
        results.append(_run_group(part, {s: setups[s] for s in _model_seeds(part)}, budget, log))
        done.append(part)
  return done, results


def state_bytes_per_run(problem, method: game.GameMethod, hyper: game.GameHyper,
                        num_logs: int) -> int:
  """A lower bound on the device memory of one run, where the backend gives no memory analysis
  of the compiled program: its state twice (a step writes the next while the last is read) and
  its log points (without the activations' temporaries)."""
  state = jax.eval_shape(lambda: game.init_state(problem, method, hyper, jax.random.PRNGKey(0)))
  point = jax.eval_shape(lambda s: game.initial_log_point(problem, method, hyper, s), state)
  return 2 * tree_bytes(state) + num_logs * tree_bytes(point)


def _split_leaves(problems: list) -> tuple[Any, list, list]:
  """(treedef, shared leaves with None where they differ, the differing leaves stacked over the
  problems with None where they are shared)."""
  leaves = [jax.tree.leaves(p) for p in problems]
  treedef = jax.tree.structure(problems[0])
  shared, stacked = [], []
  for i, first in enumerate(leaves[0]):
    varies = any(not np.array_equal(np.asarray(other[i]), np.asarray(first))
                 for other in leaves[1:])
    shared.append(None if varies else first)
    stacked.append(jnp.stack([other[i] for other in leaves]) if varies else None)
  return treedef, shared, stacked


def _hyper(configs, dtype) -> game.GameHyper:
  rows = [[player_values(c, p) for c in configs] for p in game.PLAYERS]
  return game.GameHyper(*(driver.Hyperparameters(*(
      jnp.asarray([values[name] for values in player], dtype)
      for name in driver.Hyperparameters._fields)) for player in rows))


def _run_group(group: Group, setups: dict[int, experiment.Setup], budget: int,
               log: Callable[[str], None]) -> dict[str, Any]:
  config0 = group.configs[0]
  first = next(iter(setups.values()))
  # train.py's blow-up limit of each model.seed's runs, from V at its initial parameters.
  limits = {seed: BLOWUP_FACTOR * max(abs(float(s.problem.objective(s.problem.init_params()))), 1.0)
            for seed, s in setups.items()}
  method, dtype = first.method, precision_dtype(config0.precision)
  num_logs, devices = config0.num_steps // config0.log_every, jax.devices()
  treedef, shared, stacked = _split_leaves([s.problem for s in setups.values()])
  position = {seed: k for k, seed in enumerate(setups)}
  shared_bytes = tree_bytes(shared)
  # The data, and the differing leaves of every model.seed, stay on each device all along.
  resident = shared_bytes + tree_bytes(stacked)
  mesh = Mesh(np.array(devices), ("runs",))
  across, replicated = NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec())

  def one_run(shared, varying, hyper, key):
    problem = jax.tree.unflatten(treedef, [v if s is None else s
                                           for s, v in zip(shared, varying, strict=True)])
    state, points = game.run(problem, method, hyper, key, num_steps=config0.num_steps,
                             log_every=config0.log_every)
    return state.broken_at, points._replace(params=None)

  program = jax.jit(jax.vmap(one_run, in_axes=(None, 0, 0, 0)), out_shardings=across)
  shared_on_device = distributed.put(shared, replicated)
  keys: dict[int, np.ndarray] = {}

  def key_of(seed):
    if seed not in keys:
      keys[seed] = np.asarray(jax.random.PRNGKey(seed))
    return keys[seed]

  def inputs(chunk, batch):
    padded = chunk + [chunk[-1]] * (batch - len(chunk))  # same shape: no recompilation
    configs = [group.configs[i] for i in padded]
    rows = np.asarray([position[c.model.seed] for c in configs])
    varying = [None if x is None else x[rows] for x in stacked]
    hyper = _hyper(configs, dtype)
    key = np.stack([key_of(c.seed) for c in configs])
    return (shared_on_device, *distributed.put((varying, hyper, key), across))

  def compile_for(batch):  # from shapes: nothing of the size of the batch is allocated
    def of(x):
      return jax.ShapeDtypeStruct((batch, *np.shape(x)), x.dtype, sharding=across)

    varying = jax.tree.map(lambda x: of(x[0]), stacked)
    hyper = jax.tree.map(lambda x: of(x[0]), _hyper(group.configs[:1], dtype))
    return program.lower(shared_on_device, varying, hyper, of(key_of(config0.seed))).compile()

  # Compiled for all runs in one call, the program says how much memory it needs; where that is
  # more than the budget, it is compiled again for as many runs per call as fit, counting all
  # that it needed beyond the shared data as the runs' (a part does not grow with the runs, so
  # this errs on the safe side), until it fits.
  batch_size_for(1, resident, budget, len(devices), len(group.runs))  # the data must fit
  tic = time.perf_counter()
  batch = len(devices) * -(-len(group.runs) // len(devices))
  while True:
    compiled = compile_for(batch)
    analysis = compiled.memory_analysis()
    if analysis is None:  # no analysis: a lower bound from the state and the log points
      per_run = (state_bytes_per_run(first.problem, method, first.hyper, num_logs)
                 + sum(tree_bytes(x[0]) for x in stacked if x is not None))
      fitted = batch_size_for(per_run, resident, budget, len(devices), len(group.runs))
      if fitted < batch:
        batch = fitted
        compiled = compile_for(batch)
      break
    used = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
            + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)  # per device
    per_run = max(1, -(-(used - shared_bytes) // (batch // len(devices))))
    if used - shared_bytes + resident <= budget:
      break
    # Raises where not even one run per device fits (per_run is then all that one run needs).
    fitted = batch_size_for(per_run, resident, budget, len(devices), len(group.runs))
    batch = min(fitted, batch - len(devices))
  compile_s = time.perf_counter() - tic
  chunks = [list(range(k, min(k + batch, len(group.runs))))
            for k in range(0, len(group.runs), batch)]
  objective = np.full((len(group.runs), num_logs), np.nan)
  broken = np.full((len(group.runs), 2), -1, np.int64)
  extras: dict[str, np.ndarray] = {}
  steps, run_seconds = None, 0.0
  for number, chunk in enumerate(chunks, 1):
    tic = time.perf_counter()
    broken_at, points = distributed.gather(compiled(*inputs(chunk, batch)))
    run_seconds += time.perf_counter() - tic
    objective[chunk] = np.asarray(points.objective)[:len(chunk)]
    broken[chunk] = np.asarray(broken_at)[:len(chunk)]
    for name, values in (points.extras or {}).items():
      extras.setdefault(name, np.full((len(group.runs), num_logs), np.nan))[chunk] = (
          np.asarray(values)[:len(chunk)])
    steps = np.asarray(points.step)[0]
    log(f"[{group.label}] call {number}/{len(chunks)}: {len(chunk)} runs x {config0.num_steps} "
        f"steps on {len(devices)} device(s) in {time.perf_counter() - tic:.2f} s")
  return dict(objective=objective, extras=extras, broken=broken, steps=steps,
              limit=np.asarray([limits[c.model.seed] for c in group.configs]),
              compile_s=compile_s, run_seconds=run_seconds, batch=batch, per_run_bytes=per_run,
              method=method, loss=config0.problem.loss)


def _row(index, values, group_index, config, objective, extras, broken, limit) -> dict[str, Any]:
  last = {name: float(series[-1]) for name, series in extras.items()}
  failed = sorted((int(t), player) for t, player in zip(broken, game.PLAYERS, strict=True) if t >= 0)
  final = float(objective[-1])
  points = ({"objective": float(v), **{name: float(series[t]) for name, series in extras.items()}}
            for t, v in enumerate(objective))
  diverged = bool(failed) or any(game.bad_point(point, limit) for point in points)
  row = dict(run=index, group=group_index, seed=config.seed, model_seed=config.model.seed)
  row.update(values)
  row.update(
      diverged=diverged,
      broken_at=failed[0][0] if failed else None,  # the first step a player's parameters broke
      broken_player=failed[0][1] if failed else None,
      final_objective=None if diverged else final,
      **{f"{p}_learning_rate": player_values(config, p)["learning_rate"] for p in game.PLAYERS},
  )
  row.update(last)
  return row


def ranking(rows: list[dict], loss: str) -> tuple[list[str], Callable[[dict], tuple]]:
  """(the names ranked by, a sort key: smaller is better) for the rows of one program."""
  names = [(name, sign) for name, sign in RANKING if rows and all(name in r for r in rows)]
  if names:
    def key(row):
      return tuple(-sign * row[name] if row[name] is not None and math.isfinite(row[name])
                   else math.inf for name, sign in names)
    return [name for name, _ in names], key
  target = EQUILIBRIUM_PAYOFF.get(loss, 0.0)

  def distance(row):
    return (abs(row["final_objective"] - target) if row["final_objective"] is not None
            else math.inf,)
  return [f"|final_objective - ({target:.4g})|"], distance


def write_outputs(workdir, spec, values, groups, results, total) -> dict:
  """sweep.jsonl, curves.npz, summary.json and the pictures of a finished game sweep."""
  os.makedirs(workdir, exist_ok=True)
  rows, curves = [], {}
  for g, (group, result) in enumerate(zip(groups, results, strict=True)):
    for k, index in enumerate(group.runs):
      rows.append(_row(index, values[index], g, group.configs[k], result["objective"][k],
                       {name: series[k] for name, series in result["extras"].items()},
                       result["broken"][k], result["limit"][k]))
    curves[f"group{g}_steps"] = result["steps"]
    curves[f"group{g}_objective"] = result["objective"]
    for name, series in result["extras"].items():
      curves[f"group{g}_{name}"] = series
    curves[f"group{g}_runs"] = np.asarray(group.runs)
  write_rows(workdir, rows, curves)

  best = []
  for g, (group, result) in enumerate(zip(groups, results, strict=True)):
    mine = [r for r in rows if r["group"] == g]
    candidates = [r for r in mine if not r["diverged"]]
    ranked_by, key = ranking(mine, result["loss"])
    best.append(dict(group=g, program=group.label,
                     best=min(candidates, key=key) if candidates else None,
                     diverged=sum(r["diverged"] for r in mine), runs=len(group.runs),
                     ranked_by=ranked_by))
  summary = summarize(spec, rows, groups, results, best, total)
  write_summary(workdir, summary)
  metric = next((name for name, _ in RANKING if all(name in r for r in rows)), "final_objective")
  plots.write_game_plots(workdir, rows, [g.label for g in groups], metric)
  return summary


def label(config) -> str:
  return (f"{config.optim.generator.name}/{config.optim.discriminator.name}, "
          f"{config.optim.scheme}")


register_program(SweepProgram("game", VMAPPED_KEYS, label, run_groups, write_outputs,
                              check_keys=check_keys))
