"""The sparse benchmark (scripts/bench_sparse.py, deepfound.benchmarks.sparse) at a toy size:
n ~ 500, p ~ 2,000, 2 epochs; its files, finite ratios, and objectives close to scikit-learn's."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from deepfound.optim import lazy_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_synthetic_rows_have_the_asked_shape():
  from deepfound.benchmarks.sparse import synthetic_rows

  matrix, labels = synthetic_rows(400, 3_000, 40, seed=1)
  counts = np.diff(matrix.indptr)
  assert matrix.shape == (400, 3_000) and set(np.unique(labels)) == {-1.0, 1.0}
  assert abs(counts.mean() - 40) < 2 and counts.max() <= 80
  np.testing.assert_allclose(np.sqrt(matrix.multiply(matrix).sum(axis=1)).A1, 1.0, rtol=1e-12)
  frequencies = np.sort(np.diff(matrix.tocsc().indptr))[::-1]
  assert frequencies[0] > 10 * np.median(frequencies)  # skewed feature frequencies


@pytest.mark.slow
def test_benchmark_writes_its_table(tmp_path):
  out = tmp_path / "bench"
  command = [sys.executable, os.path.join(ROOT, "scripts", "bench_sparse.py"), f"--out={out}",
             "--scale=0.025", "--num_features=2000", "--epochs=2", "--sweep_epochs=1",
             "--repeats=1", "--scaling_repeats=1", "--scaling_steps=1000", "--sweep_fits=2",
             "--scaling_methods=sag", "--groups=versus,p_scaling,memory,sweep"]
  done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((out / "sparse.json").read_text())
  table = (out / "sparse.md").read_text()
  assert "Command: `python " in table and "--scale=0.025" in table
  assert "LogisticRegression(solver='sag')" in table and "learning-rate sweep" in table

  rows = results["versus"]["rows"]
  # Where the compiled kernel runs the steps, the JAX loop is timed alongside.
  blocks = ("run", "epoch") + (("run, JAX loop",) if lazy_kernel.available() else ())
  assert {(r["solver"], r["block"]) for r in rows} == {
      (s, b) for s in ("sag", "saga") for b in blocks}
  by = {(r["solver"], r["block"]): r for r in rows}
  if lazy_kernel.available():
    assert "| kernel |" in table and "| JAX |" in table
    for solver in ("sag", "saga"):  # the same iterate, to float32 rounding
      assert by[solver, "run"]["loop"] == "kernel" and by[solver, "run, JAX loop"]["loop"] == "JAX"
      assert by[solver, "run"]["ours_objective"] == pytest.approx(
          by[solver, "run, JAX loop"]["ours_objective"], rel=1e-5)
  for r in rows:
    assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
    # Both final iterates are close to E* (2 epochs at n ~ 500: E - E* ~ 1e-2) and to each other.
    assert 0 < r["sklearn_suboptimality"] < 0.1, r
    assert not math.isnan(r["ours_objective"]) and 0 < r["ours_suboptimality"] < 0.1, r
    assert abs(r["ours_objective"] - r["sklearn_objective"]) < 0.05, r
    assert r["ours_objective"] == pytest.approx(r["ours_objective_device"], rel=1e-5)
  for r in results["p_scaling"]:
    # A marginal cost of 1,000 steps is noise on a loaded machine (it can come out negative):
    # its sign is the benchmark's to report, not a test's to assert.
    assert math.isfinite(r["ratio"]) and r["p_large"] == 10 * r["p_small"]
  memory = results["memory"]
  assert 0 < memory["data_bytes"] < memory["dense_data_bytes"]
  assert 0 < memory["state_bytes"] < memory["dense_full_table_bytes"]
  sweep = results["sweep"]
  assert sweep["runs"] == 64 and math.isfinite(sweep["speedup"]) and sweep["speedup"] > 0
  assert math.isfinite(sweep["best_suboptimality"]) and sweep["best_suboptimality"] > 0


@pytest.mark.slow
def test_unknown_group_is_one_line(tmp_path):
  done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_sparse.py"),
                         f"--out={tmp_path}", "--groups=versus,nope"],
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
  assert done.returncode == 2 and done.stderr.strip().splitlines() == [
      "error: --groups: unknown nope; expected some of versus, versus_large, p_scaling, memory, "
      "sweep, blocks"]


def test_block_lengths_table():
  from deepfound.benchmarks import sparse

  results = sparse.block_lengths(scale=0.005, num_features=500, nnz_per_row=10, steps=2_000,
                                 blocks=(1_000,), repeats=1, log=None)
  assert {(r["l1"], r["block"]) for r in results["rows"]} == {(1e-5, 1_000), (0.0, 1_000)}
  assert all(r["finite"] and r["us_per_step"]["median"] > 0 for r in results["rows"])
  table = sparse.blocks_markdown(results)
  assert "| 1,000 |" in table and "µs/step, L1 = 1e-05" in table and "no L1" in table
