"""Sweeps: rows equal single runs, diverged runs are marked, batching and sharding change nothing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import logreg_quantum
from deepfound.experiment import build as experiment
from deepfound.experiment import run_experiment
from deepfound.optim import driver
from deepfound.sweep import SpecError
from deepfound.sweep.common import SweepMemoryError, tree_bytes
from deepfound.sweep.objectives import bytes_per_run
from deepfound.sweep.runner import run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = "optim.learning_rate=[0.02, 0.2]; optim.schedule=[inverse_time, inverse_sqrt]; seed=[0, 3]"


def small_config():
  config = logreg_quantum.get_config("sgd")
  config.num_steps, config.log_every = 1000, 250
  return config


def rows_of(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "sweep.jsonl"))]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sweep"))
  summary = run_sweep(small_config(), SPEC, workdir, log=lambda _: None)
  assert summary["num_runs"] == 8 and summary["num_programs"] == 2  # one per schedule
  return workdir


@pytest.mark.slow
def test_rows_equal_runs_done_one_by_one(sweep_dir, tmp_path):
  rows = rows_of(sweep_dir)
  assert [r["run"] for r in rows] == list(range(8))
  for row in (rows[1], rows[6]):  # (0.02, inverse_time, seed 3) and (0.2, inverse_sqrt, seed 0)
    config = small_config()
    config.optim.learning_rate = row["optim.learning_rate"]
    config.optim.schedule = row["optim.schedule"]
    config.seed = row["seed"]
    single = run_experiment(config, str(tmp_path / f"run{row['run']}"), progress=False)
    assert row["final_objective"] == pytest.approx(single["objective"], rel=1e-5)
    assert row["final_suboptimality"] == pytest.approx(single["suboptimality"], rel=1e-4)
  assert len({r["final_objective"] for r in rows}) == 8
  for name in ("curves.npz", "summary.json", "final_vs_learning_rate.png"):
    assert os.path.exists(os.path.join(sweep_dir, name))
  curves = np.load(os.path.join(sweep_dir, "curves.npz"))
  assert curves["group0_objective"].shape == (4, 4) and list(curves["group0_steps"]) == [
      250, 500, 750, 1000]


def test_diverged_runs_are_marked_not_dropped(tmp_path):
  config = small_config()
  config.optim.name, config.optim.schedule = "bgd", "constant"
  config.problem.loss = "least_squares"
  config.num_steps, config.log_every = 100, 50
  run_sweep(config, "optim.learning_rate=[0.1, 50.0]", str(tmp_path), log=lambda _: None)
  ok, bad = rows_of(tmp_path)
  assert not ok["diverged"] and ok["final_suboptimality"] < 0.1
  assert bad["diverged"] and bad["final_objective"] is None
  best = json.load(open(tmp_path / "summary.json"))["best"][0]
  assert best["best"]["run"] == 0 and best["diverged"] == 1


@pytest.mark.slow
def test_memory_budget_batches_or_refuses(sweep_dir, tmp_path):
  config = small_config()
  config.optim.name, config.optim.schedule = "sag", "constant"
  spec = "optim.learning_rate=[0.001, 0.002, 0.004]"
  with pytest.raises(SweepMemoryError, match="MB are available per device"):
    run_sweep(config, spec, str(tmp_path / "none"), max_memory_mb=1.0, log=lambda _: None)
  assert not (tmp_path / "none").exists()
  # Budget for two runs per call: same rows as one call for all three.
  problem = experiment.build_problem(config)
  per_run = bytes_per_run(problem, experiment.build_method(config),
                          driver.hyperparameters(0.001), config.num_steps // config.log_every)
  budget_mb = (tree_bytes(problem) + 2.5 * per_run) / 2**20
  summary = run_sweep(config, spec, str(tmp_path / "two"), max_memory_mb=budget_mb,
                      log=lambda _: None)
  assert summary["runs_per_batch"] == [2]
  run_sweep(config, spec, str(tmp_path / "all"), log=lambda _: None)
  two, every = rows_of(tmp_path / "two"), rows_of(tmp_path / "all")
  assert [r["final_objective"] for r in two] == pytest.approx(
      [r["final_objective"] for r in every], rel=1e-6)


def test_unknown_key_in_spec():
  with pytest.raises(SpecError, match="optim.nope: no such config key"):
    run_sweep(small_config(), "optim.nope=[1, 2]", "/tmp/never", log=lambda _: None)


def sweep_cli(workdir, spec, env=None):
  command = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"),
             f"--config={os.path.join(ROOT, 'configs', 'logreg_quantum.py')}:sgd",
             f"--workdir={workdir}", f"--sweep={spec}", "--config.num_steps=1000",
             "--config.log_every=250"]
  return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                        env=dict(os.environ, **(env or {})))


@pytest.mark.slow
def test_sharded_over_four_devices_equals_unsharded(sweep_dir, tmp_path):
  result = sweep_cli(tmp_path / "sharded", SPEC,
                     env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert result.returncode == 0, result.stderr
  summary = json.load(open(tmp_path / "sharded" / "summary.json"))
  assert len(summary["devices"]) == 4
  sharded, plain = rows_of(tmp_path / "sharded"), rows_of(sweep_dir)
  assert [r["final_objective"] for r in sharded] == pytest.approx(
      [r["final_objective"] for r in plain], rel=1e-5)


@pytest.mark.slow
def test_bad_spec_through_the_cli(tmp_path):
  result = sweep_cli(tmp_path / "bad", "optim.learning_rate=logspace(-3, 0)")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "bad arguments" in lines[0], result.stderr
  assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_sweep_over_a_network(tmp_path):
  from configs import mlp_digits

  config = mlp_digits.get_config("sgd")
  config.num_steps, config.log_every = 200, 100
  summary = run_sweep(config, "optim.learning_rate=[0.01, 0.1]; seed=[0, 1]", str(tmp_path),
                      log=lambda _: None)
  rows = rows_of(tmp_path)
  assert summary["num_runs"] == 4 and all(not r["diverged"] for r in rows)
  assert rows[0]["final_suboptimality"] is None  # no E* for a net
  # The larger step makes more progress in 200 steps, for both seeds.
  by_rate = {r["optim.learning_rate"]: [] for r in rows}
  for r in rows:
    by_rate[r["optim.learning_rate"]].append(r["final_objective"])
  assert max(by_rate[0.1]) < min(by_rate[0.01])
