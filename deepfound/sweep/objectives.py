"""The sweep program of the ``objective`` kind: the runs of one rule on a finite sum or an
expectation, as one vmapped, sharded program per program shape (``jax.vmap`` of ``driver.run``).

Inside one program vary (``VMAPPED_KEYS``) ``optim.learning_rate``, ``optim.l0``,
``optim.strong_convexity``, ``problem.l2`` and ``seed``; runs that share a seed share their sample
indices. Rows: the swept values, ``final_objective``, ``final_suboptimality``, ``best_objective``
and ``diverged`` (train.py's rule: not finite, or ``BLOWUP_FACTOR`` times the start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from deepfound import distributed
from deepfound.experiment import build as experiment
from deepfound.experiment.config import precision_dtype, precision_scope
from deepfound.optim import driver
from deepfound.optim.engine import BLOWUP_FACTOR
from deepfound.problems.kinds import FiniteSum
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

# Numeric keys that vary between the runs of one compiled program (vmapped); any other swept key
# changes the program and splits the runs into one program per value. ``seed`` seeds the sampling;
# a network's initialization comes from ``model.seed`` (sweep that for independent inits).
VMAPPED_KEYS = ("optim.learning_rate", "optim.l0", "optim.strong_convexity", "problem.l2", "seed")


# The problem as an argument, not a constant: one compile per problem shape, not per group.
_objective = jax.jit(lambda problem, params: problem.objective(params))


def bytes_per_run(problem, method: driver.Method, hyper, num_logs: int) -> int:
  """Device memory one run of the batched program needs, beyond the shared data.

  The run's state (the SAG-family gradient table dominates: n per run for the scalar layout, n p
  for the pytree layout), its log points, one objective evaluation (scores for all n samples) and
  a page of pre-drawn samples.
  """
  state = jax.eval_shape(lambda: driver.init_state(problem, method, hyper, jax.random.PRNGKey(0)))
  # One evaluation of the objective (scores or activations over all n samples), as compiled.
  analysis = _objective.lower(problem, problem.init_params()).compile().memory_analysis()
  scores = analysis.temp_size_in_bytes if analysis is not None else 0
  if isinstance(problem, FiniteSum):
    sample = jax.eval_shape(problem.batch, jnp.zeros((method.batch_size,), jnp.int32))
  else:
    sample = jax.eval_shape(problem.draw, jax.random.PRNGKey(0), method.batch_size)
  page = driver.page_bound(problem, method) * (tree_bytes(sample) + 4 * method.batch_size)
  # The state is held twice while a step writes the next one.
  return 2 * tree_bytes(state) + 16 * num_logs + scores + page


def _group_constants(problem, configs, log: Callable[[str], None]) -> dict[float, dict]:
  """E*, L and L_max for each distinct L2 weight of the group (E* within the memory budget)."""
  constants = {}
  for config in configs:
    l2 = float(config.problem.l2)
    if l2 not in constants:
      dtype = precision_dtype(config.precision)
      constants[l2] = experiment.problem_constants(problem.with_l2(jnp.asarray(l2, dtype)),
                                                   config.optim.get("max_memory_mb"))
      if constants[l2].get("optimum_note"):
        log(f"warning: problem.l2={l2:g}: {constants[l2]['optimum_note']}")
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
  problem = distributed.put(problem, replicated)

  def inputs(indices):
    padded = indices + [indices[-1]] * (batch - len(indices))  # same shape: no recompilation
    l2 = jnp.asarray([group.configs[i].problem.l2 for i in padded], dtype)
    hyper = driver.Hyperparameters(*(
        jnp.asarray([hyper_rows[i][name] for i in padded], dtype)
        for name in ("learning_rate", "l0", "strong_convexity")))
    key = jax.random.PRNGKey(group.configs[indices[0]].seed)
    return (problem, *distributed.put((l2, hyper), across), distributed.put(key, replicated))

  return program, inputs


def _run_group(group: Group, budget: int, log: Callable[[str], None]) -> dict[str, Any]:
  config0 = group.configs[0]
  problem, method = experiment.build_problem(config0), experiment.build_method(config0)
  constants = _group_constants(problem, group.configs, log)
  hyper_rows = [experiment.resolve_hyperparameters(c, constants[float(c.problem.l2)])
                for c in group.configs]
  num_logs, devices = config0.num_steps // config0.log_every, jax.devices()
  hyper0 = driver.hyperparameters(**hyper_rows[0], dtype=precision_dtype(config0.precision))
  per_run = bytes_per_run(problem, method, hyper0, num_logs)
  batch = batch_size_for(per_run, tree_bytes(problem), budget, len(devices), len(group.runs))
  batch, chunks = _calls(group, batch, len(devices))
  program, inputs = _program(problem, method, config0, hyper_rows, group, batch)
  tic = time.perf_counter()
  compiled = program.lower(*inputs(chunks[0])).compile()
  compile_s = time.perf_counter() - tic
  objective = np.full((len(group.runs), num_logs), np.nan)
  steps, run_seconds = None, 0.0
  for number, chunk in enumerate(chunks, 1):
    tic = time.perf_counter()
    points = distributed.gather(compiled(*inputs(chunk)))
    run_seconds += time.perf_counter() - tic
    objective[chunk] = np.asarray(points.objective)[:len(chunk)]
    steps = np.asarray(points.step)[0]
    log(f"[{group.label}] call {number}/{len(chunks)}: {len(chunk)} runs x {config0.num_steps} "
        f"steps on {len(devices)} device(s) in {time.perf_counter() - tic:.2f} s")
  optimum = [constants[float(c.problem.l2)]["optimum"] for c in group.configs]
  # A run has diverged by train.py's rule: not finite, or BLOWUP_FACTOR times its start.
  limit = BLOWUP_FACTOR * max(abs(float(_objective(problem, problem.init_params()))), 1.0)
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


def write_outputs(workdir, spec, values, groups, results, total) -> dict:
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
  write_summary(workdir, summary)
  plots.write_plots(workdir, rows, [g.label for g in groups])
  return summary


def run_groups(groups: list[Group], budget: int, log: Callable[[str], None]
               ) -> tuple[list[Group], list[dict[str, Any]]]:
  """Runs every group, each in its precision's scope."""
  results = []
  for group in groups:
    with precision_scope(group.configs[0].precision):
      results.append(_run_group(group, budget, log))
  return groups, results


def label(config: ml_collections.ConfigDict) -> str:
  return f"{config.optim.name}, {config.optim.schedule}"


register_program(SweepProgram("objective", VMAPPED_KEYS, label, run_groups, write_outputs))
