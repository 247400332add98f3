"""Runs a sweep: the runs of each program shape as one vmapped program, sharded over devices.

Two-player games (model.name=gan) are planned here and run by ``deepfound/sweep/games.py``."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from deepfound.errors import ConfigError
from deepfound.experiment import build as experiment
from deepfound.experiment.config import precision_dtype, validate
from deepfound.experiment.lock import WorkdirLock
from deepfound.experiment.outputs import check_workdir
from deepfound.experiment.runner import BLOWUP_FACTOR, precision_scope
from deepfound.optim import driver
from deepfound.problems.kinds import FiniteSum
from deepfound.strict_json import dumps
from deepfound.sweep import plots
from deepfound.sweep.spec import GAME_VMAPPED_KEYS, VMAPPED_KEYS, SpecError, expand, parse


class SweepMemoryError(ValueError):
  """Not even one run per device fits in the memory budget."""


def set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """``config.<key> = value`` for a dotted key that must already exist."""
  *parents, leaf = key.split(".")
  node = config
  for part in parents:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise SpecError(f"{key}: no such config key")
    node = node[part]
  if leaf not in node:
    raise SpecError(f"{key}: no such config key")
  if isinstance(node[leaf], int) and not isinstance(node[leaf], bool) and isinstance(value, float):
    if value != int(value):
      raise SpecError(f"{key} takes integers, got {value!r}")
    value = int(value)
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise SpecError(f"{key}={value!r}: {e}") from e


@dataclasses.dataclass
class Group:
  """Runs that share one compiled program: they differ only in ``VMAPPED_KEYS``."""

  label: str  # the program-changing swept values, e.g. "optim.schedule=inverse_time"
  runs: list[int]  # indices into the sweep's runs
  configs: list[ml_collections.ConfigDict]


def plan(config: ml_collections.ConfigDict, spec: str) -> tuple[list[dict], list[Group]]:
  """Expands ``spec`` over ``config``; validates every run; groups runs by program."""
  is_game = _is_game(config)
  factors = parse(spec)
  if is_game:  # two players: their rates, warm-ups, seed and model.seed vmap (games.py)
    from deepfound.sweep.games import check_game_keys

    check_game_keys(config, [key for factor in factors for key in factor])
  vmapped = GAME_VMAPPED_KEYS if is_game else VMAPPED_KEYS
  values = expand(factors)
  groups: dict[tuple, Group] = {}
  for index, run in enumerate(values):
    run_config = copy.deepcopy(config)
    for key, value in run.items():
      set_key(run_config, key, value)
    if "model.name" in run and _is_game(run_config) != is_game:
      raise SpecError(f"model.name={run_config.model.name}: a sweep cannot mix two-player games "
                      f"with single-player models (the config's model.name={config.model.name})")
    try:
      validate(run_config)
    except ConfigError as e:
      raise SpecError(f"run {index} ({_describe(run)}): {e}") from e
    program = tuple((k, v) for k, v in run.items() if k not in vmapped)
    if is_game:
      default_label = (f"{run_config.optim.generator.name}/{run_config.optim.discriminator.name}, "
                       f"{run_config.optim.scheme}")
    else:
      default_label = f"{run_config.optim.name}, {run_config.optim.schedule}"
    label = ", ".join(f"{k}={v}" for k, v in program) or default_label
    group = groups.setdefault(program, Group(label, [], []))
    group.runs.append(index)
    group.configs.append(run_config)
  return values, list(groups.values())


def _is_game(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config``'s model is a two-player game (an unknown name is validate's to refuse)."""
  from deepfound.experiment.models import MODELS

  return config.model.name in MODELS.names() and MODELS.get(config.model.name).game


def _describe(run: dict) -> str:
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in run.items())


def _tree_bytes(tree) -> int:
  return sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree))


def bytes_per_run(problem, method: driver.Method, hyper, num_logs: int) -> int:
  """Device memory one run of the batched program needs, beyond the shared data.

  The run's state (the SAG-family gradient table dominates: n per run for the scalar layout, n p
  for the pytree layout), its log points, one objective evaluation (scores for all n samples) and
  a page of pre-drawn samples.
  """
  state = jax.eval_shape(lambda: driver.init_state(problem, method, hyper, jax.random.PRNGKey(0)))
  # One evaluation of the objective (scores or activations over all n samples), as compiled.
  analysis = jax.jit(problem.objective).lower(problem.init_params()).compile().memory_analysis()
  scores = analysis.temp_size_in_bytes if analysis is not None else 0
  if isinstance(problem, FiniteSum):
    sample = jax.eval_shape(problem.batch, jnp.zeros((method.batch_size,), jnp.int32))
  else:
    sample = jax.eval_shape(problem.draw, jax.random.PRNGKey(0), method.batch_size)
  page = driver._PAGE_STEPS * (_tree_bytes(sample) + 4 * method.batch_size)
  # The state is held twice while a step writes the next one.
  return 2 * _tree_bytes(state) + 16 * num_logs + scores + page


def batch_size_for(per_run: int, shared: int, budget: int, num_devices: int, num_runs: int) -> int:
  """Runs per program call: as many as fit, a multiple of the device count."""
  per_device = (budget - shared) // per_run
  if per_device < 1:
    raise SweepMemoryError(
        f"one run needs {per_run / 2**20:.1f} MB and the data {shared / 2**20:.1f} MB, but "
        f"{budget / 2**20:.1f} MB are available per device (--max_memory_mb, or fewer samples / "
        "the scalar memory layout)"
    )
  needed = -(-num_runs // num_devices)
  return num_devices * min(per_device, needed)


def _group_constants(problem, configs) -> dict[float, dict]:
  """E*, L and L_max for each distinct L2 weight of the group."""
  constants = {}
  for config in configs:
    l2 = float(config.problem.l2)
    if l2 not in constants:
      dtype = precision_dtype(config.precision)
      constants[l2] = experiment.problem_constants(problem.with_l2(jnp.asarray(l2, dtype)))
  return constants


def _calls(group: Group, batch: int, num_devices: int) -> tuple[int, list[list[int]]]:
  """Runs per call and the calls: runs that share a seed share their sample indices, so with
  the key left out of the vmap each step gathers one row for all of them and writes one column
  of their gradient tables, instead of a scatter over runs (2.5 against 4 us per step for 16 SAG
  runs on CPU). So calls go by seed."""
  by_seed: dict[int, list[int]] = {}
  for position, config in enumerate(group.configs):
    by_seed.setdefault(config.seed, []).append(position)
  batch = min(batch, num_devices * -(-max(map(len, by_seed.values())) // num_devices))
  return batch, [same[k:k + batch] for same in by_seed.values() for k in range(0, len(same), batch)]


def _program(problem, method, config0, hyper_rows, group: Group, batch: int):
  """The group's vmapped, sharded program and the function making a call's inputs."""
  dtype = precision_dtype(config0.precision)
  mesh = Mesh(np.array(jax.devices()), ("runs",))
  across, replicated = NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec())

  def one_run(problem, l2, hyper, key):
    _, points = driver.run(problem.with_l2(l2), method, hyper, key, num_steps=config0.num_steps,
                           log_every=config0.log_every)
    return points

  program = jax.jit(jax.vmap(one_run, in_axes=(None, 0, 0, None)), out_shardings=across)
  problem = jax.device_put(problem, replicated)

  def inputs(indices):
    padded = indices + [indices[-1]] * (batch - len(indices))  # same shape: no recompilation
    l2 = jnp.asarray([group.configs[i].problem.l2 for i in padded], dtype)
    hyper = driver.Hyperparameters(*(
        jnp.asarray([hyper_rows[i][name] for i in padded], dtype)
        for name in ("learning_rate", "l0", "strong_convexity")))
    key = jax.random.PRNGKey(group.configs[indices[0]].seed)
    return (problem, *jax.device_put((l2, hyper), across), jax.device_put(key, replicated))

  return program, inputs


def _run_group(group: Group, budget: int, log: Callable[[str], None]) -> dict[str, Any]:
  config0 = group.configs[0]
  problem, method = experiment.build_problem(config0), experiment.build_method(config0)
  constants = _group_constants(problem, group.configs)
  hyper_rows = [experiment.resolve_hyperparameters(c, constants[float(c.problem.l2)])
                for c in group.configs]
  num_logs, devices = config0.num_steps // config0.log_every, jax.devices()
  hyper0 = driver.hyperparameters(**hyper_rows[0], dtype=precision_dtype(config0.precision))
  per_run = bytes_per_run(problem, method, hyper0, num_logs)
  batch = batch_size_for(per_run, _tree_bytes(problem), budget, len(devices), len(group.runs))
  batch, chunks = _calls(group, batch, len(devices))
  program, inputs = _program(problem, method, config0, hyper_rows, group, batch)
  tic = time.perf_counter()
  compiled = program.lower(*inputs(chunks[0])).compile()
  compile_s = time.perf_counter() - tic
  objective = np.full((len(group.runs), num_logs), np.nan)
  steps, run_seconds = None, 0.0
  for number, chunk in enumerate(chunks, 1):
    tic = time.perf_counter()
    points = jax.device_get(compiled(*inputs(chunk)))
    run_seconds += time.perf_counter() - tic
    objective[chunk] = np.asarray(points.objective)[:len(chunk)]
    steps = np.asarray(points.step)[0]
    log(f"[{group.label}] call {number}/{len(chunks)}: {len(chunk)} runs x {config0.num_steps} "
        f"steps on {len(devices)} device(s) in {time.perf_counter() - tic:.2f} s")
  optimum = [constants[float(c.problem.l2)]["optimum"] for c in group.configs]
  # A run has diverged by train.py's rule: not finite, or BLOWUP_FACTOR times its start.
  limit = BLOWUP_FACTOR * max(abs(float(jax.jit(problem.objective)(problem.init_params()))), 1.0)
  return dict(objective=objective, steps=steps, optimum=optimum, hyper=hyper_rows, limit=limit,
              compile_s=compile_s, run_seconds=run_seconds, batch=batch, per_run_bytes=per_run,
              method=method)


def _row(index, values, group_index, config, hyper, objective, optimum, limit):
  finite = objective[np.isfinite(objective)]
  diverged = bool(finite.size < objective.size or np.any(finite > limit))
  final = float(objective[-1])
  row = dict(run=index, group=group_index, seed=config.seed)
  row.update(values)
  row.update(
      diverged=diverged,
      final_objective=None if diverged else final,
      final_suboptimality=None if diverged or optimum is None else final - optimum,
      best_objective=float(finite.min()) if finite.size else None,
      learning_rate_used=hyper["learning_rate"], optimum=optimum,
  )
  return row


def run_sweep(config: ml_collections.ConfigDict, spec: str, workdir: str,
              max_memory_mb: float | None = None, log: Callable[[str], None] = print) -> dict:
  """Runs every run of ``spec`` over ``config`` and writes the sweep's outputs into ``workdir``.

  Raises ``SpecError`` / ``ConfigError`` / ``DataError`` / ``SweepMemoryError`` before writing
  anything.
  """
  check_workdir(workdir)
  values, groups = plan(config, spec)
  budget = experiment.memory_budget(max_memory_mb or config.optim.max_memory_mb)
  if _is_game(config):
    from deepfound.sweep import games

    with WorkdirLock(workdir):
      start = time.perf_counter()
      groups, results = games.run_groups(groups, budget, log)
      total = time.perf_counter() - start
      return games.write_outputs(workdir, spec, values, groups, results, total)
  with WorkdirLock(workdir):
    start = time.perf_counter()
    results = []
    for group in groups:
      with precision_scope(group.configs[0].precision):
        results.append(_run_group(group, budget, log))
    total = time.perf_counter() - start
    return _write_outputs(workdir, spec, values, groups, results, total)


def _write_outputs(workdir, spec, values, groups, results, total) -> dict:
  """sweep.jsonl, curves.npz, summary.json and the plots of a finished sweep."""
  os.makedirs(workdir, exist_ok=True)
  rows, curves = [], {}
  for g, (group, result) in enumerate(zip(groups, results, strict=True)):
    for k, index in enumerate(group.runs):
      rows.append(_row(index, values[index], g, group.configs[k], result["hyper"][k],
                       result["objective"][k], result["optimum"][k], result["limit"]))
    curves[f"group{g}_steps"] = result["steps"]
    curves[f"group{g}_objective"] = result["objective"]
    curves[f"group{g}_runs"] = np.asarray(group.runs)
  write_rows(workdir, rows, curves)

  best = []
  for g, group in enumerate(groups):
    candidates = [r for r in rows if r["group"] == g and not r["diverged"]]
    # Suboptimality where every run has an E*, else the objective (comparable within a group).
    key = ("final_suboptimality" if all(r["optimum"] is not None for r in candidates)
           else "final_objective")
    winner = min(candidates, key=lambda r: r[key]) if candidates else None
    best.append(dict(group=g, program=group.label, best=winner,
                     diverged=sum(r["diverged"] for r in rows if r["group"] == g),
                     runs=len(group.runs)))
  summary = summarize(spec, rows, groups, results, best, total)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    f.write(dumps(summary, indent=2) + "\n")
  plots.write_plots(workdir, rows, [g.label for g in groups])
  return summary


def write_rows(workdir: str, rows: list[dict], curves: dict[str, np.ndarray]) -> None:
  """sweep.jsonl (the rows in run order, sorted in place) and curves.npz."""
  rows.sort(key=lambda r: r["run"])
  with open(os.path.join(workdir, "sweep.jsonl"), "w") as f:
    f.writelines(dumps(r) + "\n" for r in rows)
  np.savez_compressed(os.path.join(workdir, "curves.npz"), **curves)


def summarize(spec, rows, groups, results, best, total) -> dict:
  """summary.json: the runs, programs, best run of each program, devices and timings."""
  run_steps = sum(len(g.runs) * g.configs[0].num_steps for g in groups)
  run_seconds = sum(r["run_seconds"] for r in results)
  return dict(
      spec=spec, num_runs=len(rows), num_programs=len(groups), best=best,
      devices=[str(d) for d in jax.devices()], backend=jax.default_backend(),
      seconds=total, compile_s=sum(r["compile_s"] for r in results), run_seconds=run_seconds,
      runs_per_second=len(rows) / run_seconds, run_steps_per_second=run_steps / run_seconds,
      runs_per_batch=[r["batch"] for r in results],
      mb_per_run=[r["per_run_bytes"] / 2**20 for r in results],
  )
