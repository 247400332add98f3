"""What an accelerator is for, checked and timed on whatever backend JAX has: one long SAG run,
a large step-size sweep in one program and its throughput against the number of runs (with the
fraction of the device's memory bandwidth it reaches), network training with vmapped seeds and
split over the devices (``mesh.data``, with the collectives XLA compiled into the step), and the
checkpoint/resume path with the state on the device. Writes accelerator.{md,json}."""

from __future__ import annotations

import copy
import functools
import os
import re
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.benchmarks.timing import machine, median_seconds, versions, write_results
from deepfound.data import make_logistic_data
from deepfound.experiment import base_config, run_experiment
from deepfound.optim import driver
from deepfound.problems import make_problem, solve_optimum
from deepfound.sweep.runner import run_sweep

FULL = dict(num_samples=1_000_000, sag_steps=200_000, sweep_runs=4096, sweep_epochs=1,
            step_samples=10_000, step_steps=100_000, unrolls=(1, 2, 4, 8, 16, 32, 64),
            pages=(64, 256, 1024, 4096), log_everys=(1_000, 10_000),
            net_steps=20_000, scaling_runs=(1, 64, 1024, 4096, 16384, 65536), scaling_steps=10_000)
SMALL = dict(num_samples=10_000, sag_steps=10_000, sweep_runs=64, sweep_epochs=1, net_steps=500,
             step_samples=2_000, step_steps=8_192, unrolls=(1, 8), pages=(64, 256),
             log_everys=(1_024,),
             scaling_runs=(1, 16), scaling_steps=2_000)
# Peak memory bandwidth (GB/s) of the devices we know, by jax's device_kind: the limit a
# memory-bound sweep is compared with (vendors' data sheets; SXM parts).
BANDWIDTH_GBS = {"NVIDIA H100 80GB HBM3": 3350.0, "NVIDIA H200": 4800.0, "NVIDIA A100-SXM4-80GB": 2039.0}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def sag_run(num_samples: int, num_steps: int) -> dict:
  """float32 SAG (the chapter's, dividing by n) at 1/L_max on synthetic data (p = 100)."""
  x, y = make_logistic_data(num_samples, 100, seed=0)
  problem = make_problem(x, y, l2=1.0 / num_samples)
  with jax.enable_x64(True):
    optimum = solve_optimum(make_problem(x, y, l2=1.0 / num_samples, dtype=jnp.float64)).value
  method = driver.Method("sag")
  hyper = driver.hyperparameters(1.0 / problem.max_sample_lipschitz())

  def run():
    return driver.run(problem, method, hyper, jax.random.PRNGKey(0), num_steps=num_steps,
                      log_every=num_steps)

  seconds = median_seconds(run, repeats=3)
  objective = float(run()[1].objective[-1])
  return dict(num_samples=num_samples, steps=num_steps, seconds=seconds,
              steps_per_second=num_steps / seconds, suboptimality=objective - optimum)


def step_time(num_samples: int, num_steps: int, unrolls, pages, log_everys) -> dict:
  """One float32 SAG run (synthetic, p = 100): microseconds a step against ``lax.scan``'s unroll
  of the step loop (at the default page), the page length (steps whose samples are drawn at
  once: the length of the inner loop) and the log block (steps between two objective
  evaluations), each varied alone from (default unroll, PAGE_STEPS, num_steps). A row records
  what ran: the page is the largest divisor of the log block up to the length asked for, the
  unroll at most the page. Each setting is its own compiled program (a fresh ``jax.jit``), timed
  without its compilation."""
  x, y = make_logistic_data(num_samples, 100, seed=0)
  problem = make_problem(x, y, l2=1.0 / num_samples)
  hyper = driver.hyperparameters(1.0 / problem.max_sample_lipschitz())
  default_page, default_unroll = driver.PAGE_STEPS, driver.default_unroll()

  def time_setting(unroll: int, page: int, log_every: int) -> dict:
    method = driver.Method("sag", unroll=min(unroll, driver.PAGE_STEPS))
    driver.PAGE_STEPS = page  # read when run_chunk is traced, below
    try:
      program = jax.jit(lambda key: driver.run_chunk(
          problem, method, hyper, driver.init_state(problem, method, hyper, key),
          num_logs=num_steps // log_every, log_every=log_every)[0].params)
      compiled = program.lower(jax.random.PRNGKey(0)).compile()
    finally:
      driver.PAGE_STEPS = default_page
    seconds = median_seconds(lambda: compiled(jax.random.PRNGKey(0)), repeats=3)
    ran_page = driver.largest_divisor_at_most(log_every, page)  # as run_chunk cuts the block
    return dict(unroll=min(unroll, ran_page), page=ran_page, log_every=log_every,
                us_per_step=1e6 * seconds / num_steps)

  rows = [time_setting(u, default_page, num_steps) for u in unrolls]
  rows += [time_setting(default_unroll, p, num_steps) for p in pages if p != default_page]
  rows += [time_setting(default_unroll, default_page, e) for e in log_everys if e < num_steps]
  best = min(rows, key=lambda row: row["us_per_step"])
  return dict(num_samples=num_samples, steps=num_steps, default_unroll=default_unroll,
              default_page=default_page, xla_flags=os.environ.get("XLA_FLAGS", ""), rows=rows,
              best=best)


def sag_sweep(num_runs: int, epochs: int) -> dict:
  """``num_runs`` SAG step sizes on the quantum data, one program (scripts/sweep.py's path)."""
  config = base_config()
  config.data.name, config.optim.name = "quantum", "sag"
  config.num_steps = config.log_every = epochs * 10_000
  with tempfile.TemporaryDirectory() as workdir:
    summary = run_sweep(config, f"optim.learning_rate=geomspace(1e-4, 1e-1, {num_runs})", workdir,
                        log=lambda _: None)
  return dict(runs=num_runs, steps=config.num_steps, seconds=summary["run_seconds"],
              compile_s=summary["compile_s"], runs_per_second=summary["runs_per_second"],
              run_steps_per_second=summary["run_steps_per_second"],
              runs_per_batch=summary["runs_per_batch"])


def _sweep_problem():
  config = base_config()
  config.data.name, config.optim.name = "quantum", "sag"
  return config


def run_step_bytes(num_features: int, itemsize: int = 4) -> int:
  """Bytes one SAG run-step of the scalar layout must move when the runs of a call share their
  sample (same seed): its parameters and gradient sum read and written (4 p values), its memory
  slot read and written (2); the shared row is read once for all runs, so it is left out."""
  return (4 * num_features + 2) * itemsize


def sweep_scaling(counts, steps: int, log: Callable[[str], None] = lambda _: None) -> dict:
  """Run-steps/s of a SAG step-size sweep on the quantum data against the number of runs in
  one program, and the fraction of the memory bandwidth that reaches (``run_step_bytes``)."""
  config = _sweep_problem()
  config.num_steps = config.log_every = steps
  kind = jax.devices()[0].device_kind
  num_features = None
  rows = []
  for runs in counts:
    with tempfile.TemporaryDirectory() as workdir:
      summary = run_sweep(config, f"optim.learning_rate=geomspace(1e-4, 1e-1, {runs})", workdir,
                          log=lambda _: None)
    if num_features is None:
      from deepfound.experiment.build import build_problem

      params = build_problem(config).init_params()
      num_features = sum(int(leaf.size) for leaf in jax.tree.leaves(params))
    rate = summary["run_steps_per_second"]
    bandwidth = BANDWIDTH_GBS.get(kind)
    moved = rate * run_step_bytes(num_features) / 1e9
    rows.append(dict(runs=runs, run_steps_per_second=rate, seconds=summary["run_seconds"],
                     gb_per_second=moved,
                     bandwidth_fraction=None if bandwidth is None else moved / bandwidth))
    log(f"scaling: {rows[-1]}")
  return dict(steps=steps, num_features=num_features, bytes_per_run_step=run_step_bytes(num_features),
              bandwidth_gbs=BANDWIDTH_GBS.get(kind), rows=rows)


def collective_counts(compiled) -> dict[str, int]:
  """The collectives in a compiled program's HLO (a loop body's ops counted once: per step)."""
  text = compiled.as_text()
  return {op: len(re.findall(rf"\b{op}(?:-start)?\(", text)) for op in COLLECTIVES}


def _chunk(compiled, setup, state):
  return jax.block_until_ready(compiled(setup.problem, setup.hyper, state))


def data_parallel(digits_config: ml_collections.ConfigDict, steps: int) -> dict:
  """The digits MLP's minibatch SGD on one device and split over every device (mesh.data):
  samples/s, and the collectives XLA put into the compiled step."""
  from deepfound.experiment.build import build, on_mesh
  from deepfound.optim.engine import engine_for

  rows = []
  for devices in sorted({1, jax.device_count()}):
    config = copy.deepcopy(digits_config)
    config.mesh.data = devices
    config.optim.batch_size = max(config.optim.batch_size, devices)
    setup = on_mesh(config, build(config))
    runs = engine_for(setup.problem)
    state = runs.init_state(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(0))
    compiled = runs.run_chunk_jit.lower(setup.problem, setup.method, setup.hyper, state,
                                        num_logs=1, log_every=steps).compile()
    seconds = median_seconds(functools.partial(_chunk, compiled, setup, state), repeats=3)
    rows.append(dict(devices=devices, batch=config.optim.batch_size,
                     samples_per_second=steps * config.optim.batch_size / seconds,
                     collectives=collective_counts(compiled)))
  return dict(steps=steps, rows=rows)


def digits_mlp(digits_config: ml_collections.ConfigDict, steps: int) -> dict:
  """Samples per second of minibatch SGD on the digits MLP, one seed and 8 vmapped seeds."""
  from deepfound.benchmarks import nets

  return dict(steps=steps, batch=nets.BATCH, samples_per_second=nets.ours(digits_config, 1, steps),
              samples_per_second_8_seeds=nets.ours(digits_config, 8, steps))


def checkpoint_resume() -> dict:
  """A run interrupted (num_steps extended) and resumed from its checkpoint ends where a
  straight run ends, bit for bit; also times a checkpoint round trip."""
  config = base_config()
  config.data.name, config.optim.name, config.optim.learning_rate = "quantum", "saga", 0.002
  config.num_steps, config.log_every, config.checkpoint_every = 4000, 1000, 2000
  with tempfile.TemporaryDirectory() as root:
    tic = time.perf_counter()
    straight = run_experiment(config, os.path.join(root, "straight"), progress=False)
    seconds = time.perf_counter() - tic
    half = config.copy_and_resolve_references()
    half.num_steps = 2000
    run_experiment(half, os.path.join(root, "resumed"), progress=False)
    resumed = run_experiment(config, os.path.join(root, "resumed"), progress=False)
    same = all(np.array_equal(np.load(os.path.join(root, "straight", "params.npz"))[k],
                              np.load(os.path.join(root, "resumed", "params.npz"))[k])
               for k in np.load(os.path.join(root, "straight", "params.npz")).files)
  return dict(identical=bool(same), resumed_from_step=resumed["resumed_from_step"],
              objective=straight["objective"], seconds_with_two_checkpoints=seconds)


CHECKS = ("sag", "step_time", "sweep", "scaling", "mlp", "data_parallel", "checkpoint")


def _known(checks) -> None:
  unknown = sorted(set(checks) - set(CHECKS))
  if unknown:
    raise ValueError(f"unknown check(s) {', '.join(unknown)}; expected some of {', '.join(CHECKS)}")


def parse_options(small: bool, checks: list[str] | None, **lists: list[str] | None
                  ) -> tuple[tuple[str, ...], dict]:
  """scripts/accelerator_check.py's flags: (the checks, the sizes with the integer lists of
  ``lists`` (unrolls, pages, scaling_runs) put in); a ValueError names a bad flag."""
  checks = tuple(checks or CHECKS)
  try:
    _known(checks)
  except ValueError as e:
    raise ValueError(f"--checks: {e}") from None
  sizes = dict(SMALL if small else FULL)
  for name, values in lists.items():
    if values is None:
      continue
    try:
      sizes[name] = tuple(int(v) for v in values)
    except ValueError:
      raise ValueError(f"--{name}: expected integers, got {','.join(values)}") from None
    bound = driver.PAGE_STEPS if name == "unrolls" else 65_536
    if any(v < 1 or v > bound for v in sizes[name]):
      raise ValueError(f"--{name}: each value must be in [1, {bound}]")
  return checks, sizes


def run_check(out: str, small: bool, digits_config: ml_collections.ConfigDict, command: str,
              log: Callable[[str], None] = print, sizes: dict | None = None,
              checks: tuple[str, ...] = CHECKS) -> dict:
  """The ``checks`` (default: every one), into ``out``; ``sizes`` overrides the FULL or SMALL
  sizes."""
  _known(checks)
  sizes = sizes or (SMALL if small else FULL)
  results = dict(command=command, small=small, **machine("backend", "devices", "device_kind"),
                 **versions("jax"), **machine("python"))
  functions = {
      "sag": lambda: sag_run(sizes["num_samples"], sizes["sag_steps"]),
      "step_time": lambda: step_time(sizes["step_samples"], sizes["step_steps"], sizes["unrolls"],
                                     sizes["pages"], sizes["log_everys"]),
      "sweep": lambda: sag_sweep(sizes["sweep_runs"], sizes["sweep_epochs"]),
      "scaling": lambda: sweep_scaling(sizes["scaling_runs"], sizes["scaling_steps"], log),
      "mlp": lambda: digits_mlp(digits_config, sizes["net_steps"]),
      "data_parallel": lambda: data_parallel(digits_config, sizes["net_steps"]),
      "checkpoint": checkpoint_resume,
  }
  for name in checks:
    tic = time.perf_counter()
    try:
      results[name] = functions[name]()
    except Exception as e:  # noqa: BLE001 - report what failed and go on to the next check
      results[name] = dict(error=f"{type(e).__name__}: {e}")
    log(f"{name}: {time.perf_counter() - tic:.1f} s: {results[name]}")
    write_results(out, "accelerator", results, markdown(results))  # after each: a cut run keeps them
  return results


def _cell(section: dict | None, fmt: Callable[[dict], str]) -> str | None:
  """A check's table cell: its numbers, its failure, or None where it was not run."""
  if section is None:
    return None
  return f"failed: {section['error']}" if "error" in section else fmt(section)


def markdown(r: dict) -> str:
  sag, steps, sweep, scaling, mlp, parallel, ckpt = (r.get(name) for name in CHECKS)
  rows = [
      ("backend, device", f"{r['backend']}, {r['device_kind']} ({len(r['devices'])} device(s)); "
                          f"jax {r['jax']}, Python {r['python']}"),
      ("SAG, float32, synthetic p = 100", _cell(sag, lambda s: (
          f"n = {s['num_samples']:,}, {s['steps']:,} steps: {s['steps_per_second']:,.0f} "
          f"steps/s, E - E* = {s['suboptimality']:.2e} after {s['steps'] / s['num_samples']:g} "
          "epoch(s)"))),
      ("one SAG run's step time, synthetic p = 100", _cell(steps, lambda s: (
          f"n = {s['num_samples']:,}, {s['steps']:,} steps; us a step: " + "; ".join(
              f"unroll {row['unroll']}, page {row['page']}, log block {row['log_every']:,}: "
              f"{row['us_per_step']:.3g}" for row in s["rows"])
          + (f" (XLA_FLAGS {s['xla_flags']})" if s["xla_flags"] else "")))),
      ("SAG step-size sweep, quantum, one program", _cell(sweep, lambda s: (
          f"{s['runs']:,} runs x {s['steps']:,} steps: {s['runs_per_second']:,.1f} runs/s, "
          f"{s['run_steps_per_second']:,.0f} run-steps/s (compile {s['compile_s']:.1f} s; "
          f"runs per call {s['runs_per_batch']})"))),
      ("digits MLP, minibatch SGD", _cell(mlp, lambda s: (
          f"batch {s['batch']}, {s['steps']:,} steps: {s['samples_per_second']:,.0f} samples/s; "
          f"8 vmapped seeds: {s['samples_per_second_8_seeds']:,.0f} samples/s in all"))),
      ("SAG sweep against its number of runs", _cell(scaling, lambda s: "; ".join(
          f"{row['runs']:,}: {row['run_steps_per_second']:,.3g} run-steps/s"
          + (f" ({100 * row['bandwidth_fraction']:.1f} % of {s['bandwidth_gbs']:,.0f} GB/s)"
             if row["bandwidth_fraction"] is not None else f" ({row['gb_per_second']:.3g} GB/s)")
          for row in s["rows"]) + f"; {s['bytes_per_run_step']} bytes a run-step")),
      ("digits MLP split over the devices (mesh.data)", _cell(parallel, lambda s: "; ".join(
          f"{row['devices']} device(s), batch {row['batch']}: {row['samples_per_second']:,.0f} "
          "samples/s, collectives in the step: "
          + (", ".join(f"{n} {op}" for op, n in row["collectives"].items() if n) or "none")
          for row in s["rows"]))),
      ("checkpoint and resume", _cell(ckpt, lambda s: (
          f"resumed from step {s['resumed_from_step']}: parameters "
          f"{'identical to' if s['identical'] else 'DIFFERENT from'} a straight run"))),
  ]
  lines = ["# Accelerator check", "", f"Command: `{r['command']}`" + (" (small sizes)" if r["small"] else ""),
           "", "| check | result |", "|---|---|"]
  lines += [f"| {name} | {value} |" for name, value in rows if value is not None]
  return "\n".join(lines) + "\n"
