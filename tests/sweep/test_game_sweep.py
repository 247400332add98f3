"""Sweeps of a two-player game (model.name=gan): both players' rates, seed and model.seed in one
vmapped program; a row equals the run made alone; batching changes nothing; the CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import gan_2d
from deepfound.experiment import build, precision_scope
from deepfound.optim import game
from deepfound.sweep import SpecError, games
from deepfound.sweep.common import SweepMemoryError, tree_bytes
from deepfound.sweep.runner import plan, run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GAN_2D = os.path.join(ROOT, "configs", "gan_2d.py")
GEN, DISC = "optim.generator.learning_rate", "optim.discriminator.learning_rate"
SPEC = f"{GEN}=[1e-4, 1e-3]; {DISC}=[3e-4, 3e-3]; model.seed=[0, 1]; seed=[0, 7]"
METRICS = ("generator_loss", "discriminator_loss", "modes_captured", "high_quality_fraction",
           "mode_kl")


def small_config():
  config = gan_2d.get_config("ring")
  config.model.hidden, config.model.discriminator_hidden = (16,), (16,)
  config.data.num_samples, config.num_steps, config.log_every = 2000, 40, 20
  return config


def rows_of(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "sweep.jsonl"))]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("game_sweep"))
  summary = run_sweep(small_config(), SPEC, workdir, log=lambda _: None)
  return workdir, summary


@pytest.mark.slow
def test_all_runs_are_one_program_with_their_values(sweep_dir):
  workdir, summary = sweep_dir
  assert summary["num_runs"] == 16 and summary["num_programs"] == 1
  assert summary["runs_per_batch"] == [16]
  rows = rows_of(workdir)
  expected = [(g, d, m, s) for g in (1e-4, 1e-3) for d in (3e-4, 3e-3) for m in (0, 1)
              for s in (0, 7)]
  assert [(r[GEN], r[DISC], r["model.seed"], r["seed"]) for r in rows] == expected
  assert all(r["model_seed"] == r["model.seed"] for r in rows)
  assert all((r["generator_learning_rate"], r["discriminator_learning_rate"]) == (r[GEN], r[DISC])
             for r in rows)
  assert not any(r["diverged"] for r in rows)
  for r in rows:
    assert all(np.isfinite(r[name]) for name in METRICS) and 0 <= r["modes_captured"] <= 8
  # Every run differs: each model.seed starts elsewhere, each seed samples otherwise.
  assert len({r["final_objective"] for r in rows}) == 16
  curves = np.load(os.path.join(workdir, "curves.npz"))
  assert list(curves["group0_steps"]) == [20, 40]
  for name in ("objective", *METRICS):
    assert curves[f"group0_{name}"].shape == (16, 2), name
  np.testing.assert_array_equal(curves["group0_modes_captured"][:, -1],
                                [r["modes_captured"] for r in rows])
  for name in ("summary.json", "final_vs_learning_rates.png", "heatmap_learning_rates.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name


@pytest.mark.slow
def test_best_run_ranks_by_modes_then_quality(sweep_dir):
  workdir, summary = sweep_dir
  (best,) = summary["best"]
  assert best["ranked_by"] == ["modes_captured", "high_quality_fraction", "mode_kl"]
  rows = rows_of(workdir)
  top = max((r["modes_captured"], r["high_quality_fraction"], -r["mode_kl"]) for r in rows)
  assert (best["best"]["modes_captured"], best["best"]["high_quality_fraction"],
          -best["best"]["mode_kl"]) == top
  assert best["runs"] == 16 and best["diverged"] == 0
  assert json.load(open(os.path.join(workdir, "summary.json")))["best"][0]["best"] == best["best"]


@pytest.mark.slow
def test_a_row_equals_the_game_run_alone(sweep_dir):
  rows = rows_of(sweep_dir[0])
  row = next(r for r in rows if (r[GEN], r[DISC], r["model.seed"], r["seed"]) == (1e-3, 3e-3, 1, 7))
  config = small_config()
  config.optim.generator.learning_rate, config.optim.discriminator.learning_rate = 1e-3, 3e-3
  config.model.seed, config.seed = 1, 7
  with precision_scope(config.precision):
    setup = build.build(config)
    state, points = game.run(setup.problem, setup.method, setup.hyper,
                             jax.random.PRNGKey(config.seed), num_steps=config.num_steps,
                             log_every=config.log_every)
  assert row["final_objective"] == pytest.approx(float(points.objective[-1]), rel=1e-6, abs=1e-6)
  for name in METRICS:
    assert row[name] == pytest.approx(float(points.extras[name][-1]), rel=1e-6, abs=1e-6), name
  assert list(np.asarray(state.broken_at)) == [-1, -1]


@pytest.mark.slow
def test_batched_calls_give_the_same_rows(sweep_dir, tmp_path):
  """A budget for fewer runs per call than the sweep has: several calls (the last one padded),
  each row as in the one-call sweep."""
  config = small_config()
  config.optim.discriminator.learning_rate, config.model.seed = 3e-3, 1
  spec = f"zip({GEN}=[1e-4, 1e-3, 1e-3], seed=[0, 0, 7])"
  with pytest.raises(SweepMemoryError, match="MB are available per device"):
    run_sweep(config, spec, str(tmp_path / "none"), max_memory_mb=0.01, log=lambda _: None)
  assert not (tmp_path / "none").exists()
  with precision_scope(config.precision):
    data = tree_bytes(build.build(config).problem)  # one model.seed: all of it shared
  per_run = sweep_dir[1]["mb_per_run"][0] * 2**20  # in a call of 16 runs (less than in 3)
  summary = run_sweep(config, spec, str(tmp_path / "some"), log=lambda _: None,
                      max_memory_mb=(data + 3.75 * per_run) / 2**20)  # 2 on a CPU
  assert summary["runs_per_batch"][0] < 3 and summary["num_programs"] == 1
  alone = {(r[GEN], r["seed"]): r for r in rows_of(sweep_dir[0])
           if r[DISC] == 3e-3 and r["model.seed"] == 1}
  rows = rows_of(tmp_path / "some")
  assert [(r[GEN], r["seed"]) for r in rows] == [(1e-4, 0), (1e-3, 0), (1e-3, 7)]
  for row in rows:
    same = alone[row[GEN], row["seed"]]
    for name in ("final_objective", *METRICS):
      assert row[name] == pytest.approx(same[name], rel=1e-6, abs=1e-6), name


def test_functions_that_change_with_model_seed_split_the_program():
  """The image GANs' metric classifier depends on model.seed: a probe sees it, and the runs
  split into one program per model.seed."""
  group = plan(small_config(), "model.seed=[0, 1]; seed=[0, 1]")[1][0]
  with precision_scope("float32"):
    setups = games._setups(group)
    assert games._shares_functions(setups)

    def shifted(seed, metrics_fn):
      return lambda params, problem: {k: v + seed for k, v in metrics_fn(params, problem).items()}

    altered = {seed: dataclasses.replace(setup, problem=dataclasses.replace(
        setup.problem, metrics_fn=shifted(seed, setup.problem.metrics_fn)))
        for seed, setup in setups.items()}
    assert not games._shares_functions(altered)
  parts = games._split(group)
  assert [(p.label, p.runs, [c.model.seed for c in p.configs]) for p in parts] == [
      ("adam/adam, alternating, model.seed=0", [0, 1], [0, 0]),
      ("adam/adam, alternating, model.seed=1", [2, 3], [1, 1])]


@pytest.mark.slow
def test_diverged_runs_are_marked_with_the_player_and_not_ranked(tmp_path):
  config = small_config()
  config.problem.loss, config.optim.discriminator.name = "wgan_gp", "sgd"
  summary = run_sweep(config, f"{DISC}=[1e-3, 1e12]", str(tmp_path), log=lambda _: None)
  ok, bad = rows_of(tmp_path)
  assert not ok["diverged"] and ok["final_objective"] is not None and ok["broken_at"] is None
  assert bad["diverged"] and bad["final_objective"] is None
  assert bad["broken_player"] == "discriminator" and 1 <= bad["broken_at"] <= config.num_steps
  (best,) = summary["best"]
  assert best["best"]["run"] == 0 and best["diverged"] == 1
  assert (tmp_path / "final_vs_learning_rates.png").stat().st_size > 0


def test_single_player_keys_are_refused_for_a_game():
  for key, player_key in (("optim.learning_rate", "learning_rate"), ("optim.l0", "l0"),
                          ("optim.name", "name")):
    with pytest.raises(SpecError, match=f"sweep optim.generator.{player_key} and/or "
                                        f"optim.discriminator.{player_key}"):
      run_sweep(small_config(), f"{key}=[1, 2]", "/tmp/never", log=lambda _: None)
  with pytest.raises(SpecError, match="cannot mix problem kinds"):
    run_sweep(small_config(), "model.name=[gan, mlp]", "/tmp/never", log=lambda _: None)


def sweep_cli(workdir, spec, *flags, env=None):
  command = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--config={GAN_2D}:ring",
             f"--workdir={workdir}", f"--sweep={spec}", "--config.model.hidden=(16,)",
             "--config.model.discriminator_hidden=(16,)", "--config.data.num_samples=2000",
             "--config.num_steps=40", "--config.log_every=20", *flags]
  return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                        env=dict(os.environ, **(env or {})))


@pytest.mark.slow
def test_a_game_sweep_through_the_cli_sharded_over_two_devices(sweep_dir, tmp_path):
  """Three runs on two devices: one call of four runs, the last one padding; the rows are
  those of the unsharded sweep."""
  result = sweep_cli(tmp_path / "cli", f"zip({GEN}=[1e-4, 1e-3, 1e-3], seed=[0, 0, 7])",
                     f"--config.{DISC}=3e-3", "--config.model.seed=1",
                     env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert result.returncode == 0, result.stderr
  assert "3 runs in 1 program(s)" in result.stderr
  summary = json.load(open(tmp_path / "cli" / "summary.json"))
  assert len(summary["devices"]) == 2 and summary["runs_per_batch"] == [4]
  assert summary["best"][0]["best"]["run"] in range(3)
  alone = {(r[GEN], r["seed"]): r for r in rows_of(sweep_dir[0])
           if r[DISC] == 3e-3 and r["model.seed"] == 1}
  rows = rows_of(tmp_path / "cli")
  assert [(r[GEN], r["seed"]) for r in rows] == [(1e-4, 0), (1e-3, 0), (1e-3, 7)]
  for row in rows:
    same = alone[row[GEN], row["seed"]]
    for name in ("final_objective", *METRICS):
      assert row[name] == pytest.approx(same[name], rel=1e-6, abs=1e-6), name
  assert (tmp_path / "cli" / "final_vs_learning_rates.png").stat().st_size > 0


def test_game_plots_with_diverged_runs_and_no_rate_varied(tmp_path):
  from deepfound.sweep import plots

  def row(group, gen, disc, seed, modes, diverged=False):
    return {"group": group, GEN: gen, DISC: disc, "seed": seed, "diverged": diverged,
            "modes_captured": modes}

  seeds = [row(0, 1e-4, 1e-4, s, m) for s, m in enumerate([3.0, 5.0, 8.0])]
  seeds += [row(1, 1e-4, 1e-4, 0, float("nan"), diverged=True), row(1, 1e-4, 1e-4, 1, 2.0)]
  assert [os.path.basename(p) for p in plots.write_game_plots(
      str(tmp_path), seeds, ["adam/adam", "sgd/sgd"], "modes_captured")] == ["final_by_run.png"]
  grid = [row(0, g, d, 0, float(g < d), diverged=g > d) for g in (1e-4, 1e-3) for d in (1e-4, 1e-3)]
  written = plots.write_game_plots(str(tmp_path), grid, ["adam/adam"], "modes_captured")
  assert [os.path.basename(p) for p in written] == ["final_vs_learning_rates.png",
                                                     "heatmap_learning_rates.png"]
  everything_diverged = [dict(r, diverged=True) for r in grid]
  assert len(plots.write_game_plots(str(tmp_path), everything_diverged, ["x"], "final_objective")) == 2
  assert all(os.path.getsize(p) > 0 for p in written)


@pytest.mark.slow
def test_sweeping_optim_learning_rate_on_a_game_exits_2(tmp_path):
  result = sweep_cli(tmp_path / "bad", "optim.learning_rate=[1e-4, 1e-3]")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert GEN in lines[0] and DISC in lines[0]
  assert not (tmp_path / "bad").exists()
