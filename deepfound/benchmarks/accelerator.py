"""What an accelerator is for, checked and timed on whatever backend JAX has: one long SAG run,
a large step-size sweep in one program, network training with vmapped seeds, and the
checkpoint/resume path with the state on the device. Writes accelerator.{md,json}."""

from __future__ import annotations

import os
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
            net_steps=20_000)
SMALL = dict(num_samples=10_000, sag_steps=10_000, sweep_runs=64, sweep_epochs=1, net_steps=500)


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


def run_check(out: str, small: bool, digits_config: ml_collections.ConfigDict, command: str,
              log: Callable[[str], None] = print, sizes: dict | None = None) -> dict:
  """Every check, into ``out``; ``sizes`` overrides the FULL or SMALL sizes."""
  sizes = sizes or (SMALL if small else FULL)
  results = dict(command=command, small=small, **machine("backend", "devices", "device_kind"),
                 **versions("jax"), **machine("python"))
  for name, fn in (("sag", lambda: sag_run(sizes["num_samples"], sizes["sag_steps"])),
                   ("sweep", lambda: sag_sweep(sizes["sweep_runs"], sizes["sweep_epochs"])),
                   ("mlp", lambda: digits_mlp(digits_config, sizes["net_steps"])),
                   ("checkpoint", checkpoint_resume)):
    tic = time.perf_counter()
    try:
      results[name] = fn()
    except Exception as e:  # noqa: BLE001 - report what failed and go on to the next check
      results[name] = dict(error=f"{type(e).__name__}: {e}")
    log(f"{name}: {time.perf_counter() - tic:.1f} s: {results[name]}")
  write_results(out, "accelerator", results, markdown(results))
  return results


def _cell(section: dict, fmt: Callable[[dict], str]) -> str:
  return f"failed: {section['error']}" if "error" in section else fmt(section)


def markdown(r: dict) -> str:
  sag, sweep, mlp, ckpt = r["sag"], r["sweep"], r["mlp"], r["checkpoint"]
  rows = [
      ("backend, device", f"{r['backend']}, {r['device_kind']} ({len(r['devices'])} device(s)); "
                          f"jax {r['jax']}, Python {r['python']}"),
      ("SAG, float32, synthetic p = 100", _cell(sag, lambda s: (
          f"n = {s['num_samples']:,}, {s['steps']:,} steps: {s['steps_per_second']:,.0f} "
          f"steps/s, E - E* = {s['suboptimality']:.2e} after {s['steps'] / s['num_samples']:g} "
          "epoch(s)"))),
      ("SAG step-size sweep, quantum, one program", _cell(sweep, lambda s: (
          f"{s['runs']:,} runs x {s['steps']:,} steps: {s['runs_per_second']:,.1f} runs/s, "
          f"{s['run_steps_per_second']:,.0f} run-steps/s (compile {s['compile_s']:.1f} s; "
          f"runs per call {s['runs_per_batch']})"))),
      ("digits MLP, minibatch SGD", _cell(mlp, lambda s: (
          f"batch {s['batch']}, {s['steps']:,} steps: {s['samples_per_second']:,.0f} samples/s; "
          f"8 vmapped seeds: {s['samples_per_second_8_seeds']:,.0f} samples/s in all"))),
      ("checkpoint and resume", _cell(ckpt, lambda s: (
          f"resumed from step {s['resumed_from_step']}: parameters "
          f"{'identical to' if s['identical'] else 'DIFFERENT from'} a straight run"))),
  ]
  lines = ["# Accelerator check", "", f"Command: `{r['command']}`" + (" (small sizes)" if r["small"] else ""),
           "", "| check | result |", "|---|---|"]
  lines += [f"| {name} | {value} |" for name, value in rows]
  return "\n".join(lines) + "\n"
