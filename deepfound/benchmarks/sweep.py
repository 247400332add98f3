"""A 64-point SAG step-size sweep as one program, against 64 sequential scikit-learn SAG fits."""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import jax
import numpy as np

from deepfound.benchmarks.timing import machine, versions, write_results
from deepfound.data import load_quantum, make_logistic_data
from deepfound.experiment import base_config
from deepfound.sweep.runner import run_sweep

NUM_POINTS = 64


def _config(data: str, epochs: int, num_samples: int):
  config = base_config()  # SAG at a constant rate (swept) on the quantum data, as configs/
  config.data.name, config.optim.name = "quantum", "sag"  # logreg_quantum.py:sag
  if data == "synthetic":
    config.data.name, config.data.num_samples, config.data.num_features = "synthetic", num_samples, 100
  n = num_samples if data == "synthetic" else 10_000
  config.num_steps, config.log_every = epochs * n, n
  config.problem.l2 = 1.0 / n  # scikit-learn's default C = 1
  return config, n


def ours(data: str, epochs: int, num_runs: int, num_samples: int) -> dict:
  config, n = _config(data, epochs, num_samples)
  spec = f"optim.learning_rate=geomspace(1e-4, 1e-2, {num_runs})"
  with tempfile.TemporaryDirectory() as workdir:
    summary = run_sweep(config, spec, workdir, log=lambda _: None)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "sweep.jsonl"))]
  return dict(runs=num_runs, seconds=summary["run_seconds"], compile_s=summary["compile_s"],
              runs_per_second=summary["runs_per_second"],
              run_steps_per_second=summary["run_steps_per_second"],
              best_suboptimality=min(r["final_suboptimality"] for r in rows if not r["diverged"]),
              diverged=sum(r["diverged"] for r in rows))


def sklearn_fits(data: str, epochs: int, num_fits: int, num_samples: int) -> dict:
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression

  if data == "synthetic":
    x, y = make_logistic_data(num_samples, 100, seed=0)
  else:
    x, y = load_quantum(seed=0)
    x, y = x.astype(np.float32), y.astype(np.float32)
  # scikit-learn picks SAG's step itself; what a user sweeps there is C.
  grid = np.geomspace(0.1, 10.0, num_fits)
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for c in grid:
      LogisticRegression(solver="sag", C=c, fit_intercept=False, max_iter=epochs, tol=0.0,
                         random_state=0).fit(x, y)
  seconds = time.perf_counter() - start
  return dict(fits=num_fits, seconds=seconds, runs_per_second=num_fits / seconds)


def run_benchmark(out: str, epochs: int, num_samples: int, command: str) -> dict:
  comparisons = []
  for data in ("quantum", "synthetic"):
    mine = ours(data, epochs, NUM_POINTS, num_samples)
    theirs = sklearn_fits(data, epochs, NUM_POINTS, num_samples)
    comparisons.append(dict(data=data, epochs=epochs, ours=mine, sklearn=theirs,
                            speedup=mine["runs_per_second"] / theirs["runs_per_second"]))
    print(f"{data}: {mine['runs_per_second']:.1f} runs/s against {theirs['runs_per_second']:.2f} "
          f"(x{comparisons[-1]['speedup']:.1f})", flush=True)
  scaling = []
  for runs in (1, 4, 16, 64, 256):
    mine = ours("synthetic", epochs, runs, num_samples)
    scaling.append(mine)
    print(f"{runs} vmapped runs: {mine['run_steps_per_second'] / 1e6:.2f} M run-steps/s", flush=True)
  results = dict(
      command=command, **machine("backend", "devices"), machine=machine("platform", "cpu_count"),
      versions=versions("jax", "sklearn"),
      comparisons=comparisons, scaling=scaling,
  )
  name = "sweep" if jax.default_backend() == "cpu" else f"sweep_{jax.default_backend()}"
  write_results(out, name, results, markdown(results, num_samples))
  return results


def markdown(results: dict, num_samples: int) -> str:
  lines = [
      "# Sweeps: many SAG runs in one program",
      "",
      f"Command: `{results['command']}`  ",
      f"Backend {results['backend']}, {len(results['devices'])} device(s), "
      f"{results['machine']['cpu_count']} CPU cores; jax {results['versions']['jax']}, "
      f"scikit-learn {results['versions']['sklearn']}. Compilation excluded (reported apart).",
      "",
      f"## {NUM_POINTS}-point SAG step-size sweep against {NUM_POINTS} sequential "
      "`LogisticRegression(solver='sag')` fits",
      "",
      "Same data (float32), same number of epochs, L2 weight 1/n (scikit-learn's C = 1; its fits "
      "sweep C over [0.1, 10] since it chooses SAG's step itself).",
      "",
      "| data | epochs | ours runs/s | scikit-learn runs/s | speed-up (target >= 20) | "
      "ours compile s | best E - E* |",
      "|---|---|---|---|---|---|---|",
  ]
  for c in results["comparisons"]:
    lines.append(
        f"| {c['data']} | {c['epochs']} | {c['ours']['runs_per_second']:.1f} | "
        f"{c['sklearn']['runs_per_second']:.2f} | {c['speedup']:.1f} | "
        f"{c['ours']['compile_s']:.1f} | {c['ours']['best_suboptimality']:.2e} |")
  lines += [
      "",
      f"## Throughput against the number of vmapped runs (synthetic, n = {num_samples:,}, "
      "p = 100)",
      "",
      "| runs | seconds | run-steps per second |",
      "|---|---|---|",
  ]
  for s in results["scaling"]:
    lines.append(f"| {s['runs']} | {s['seconds']:.3f} | {s['run_steps_per_second']:,.0f} |")
  lines.append("")
  return "\n".join(lines)
