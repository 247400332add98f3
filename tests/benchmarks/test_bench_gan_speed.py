"""The GAN throughput benchmark (deepfound.benchmarks.gan_speed) at toy sizes: our half always, the
PyTorch half (the same losses, gradients and adam step as ours; an end-to-end run writing its
table) only where torch is installed. The log point has no classifier metrics here."""

import json
import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 25  # S of the toy runs: blocks of 25 and 75 game steps


def _config():
  sys.path.insert(0, ROOT)
  from configs import gan_digits

  return gan_digits.get_config()


@pytest.fixture(scope="module")
def setup():
  from deepfound.benchmarks import gan_speed
  from deepfound.experiment import gan

  with pytest.MonkeyPatch.context() as patch:
    # No classifier for the log point's metrics: training it and compiling its metrics into every
    # chunk would take most of this file's time; the loops do not depend on it.
    patch.setattr(gan, "_classifier_metrics", lambda *args: None)
    return gan_speed.build_setup(_config())


@pytest.mark.slow
def test_the_setup_is_the_digits_game(setup):
  problem, method = setup.problem, setup.method
  assert problem.samples.shape == (1348, 64) and problem.samples.dtype == np.float32
  assert (method.scheme, method.batch_size, method.option("discriminator_steps")) == ("alternating", 64, 1)
  from deepfound.benchmarks import gan_speed

  assert [k.shape for k, _ in gan_speed.layer_arrays(problem.initial_params[0])] == [
      (16, 256), (256, 256), (256, 64)]
  assert [k.shape for k, _ in gan_speed.layer_arrays(problem.initial_params[1])] == [
      (64, 256), (256, 256), (256, 1)]
  config = _config()
  config.optim.scheme = "simultaneous"
  with pytest.raises(ValueError, match="alternating"):
    gan_speed.build_setup(config)


@pytest.mark.slow
def test_our_loop_runs_blocks_that_carry_the_state(setup):
  from deepfound.benchmarks import gan_speed

  loop = gan_speed.OursLoop(setup, steps=STEPS)  # the programs of the end-to-end run below
  assert loop.block(STEPS) > 0 and loop.block(3 * STEPS) > 0 and loop.log_point_block() > 0
  assert int(loop.state.step) == 4 * STEPS and all(math.isfinite(v) for v in loop.last_losses)


@pytest.mark.slow
def test_torch_computes_our_losses_gradients_and_step(setup, monkeypatch):
  monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # read when torch first loads
  pytest.importorskip("torch")
  from deepfound.benchmarks import gan_speed

  parity = gan_speed.loss_parity(setup, batch=64)
  for player in ("generator", "discriminator"):
    ours, theirs = parity[f"{player}_loss_ours"], parity[f"{player}_loss_torch"]
    assert math.isfinite(ours) and abs(ours - theirs) <= 1e-5 * abs(ours), parity
  assert parity["grad_rel_diff"] < 1e-4, parity
  step = gan_speed.step_parity(setup, _config())
  assert step["update_norm"] > 0 and step["update_rel_diff"] < 1e-3, step


@pytest.mark.slow
def test_benchmark_writes_its_table(setup, tmp_path, monkeypatch):
  monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
  pytest.importorskip("torch")
  from deepfound.benchmarks import gan_speed

  results = gan_speed.run_benchmark(str(tmp_path), "test", _config(), steps=STEPS, repeats=3,
                                    torch_threads=(1,), spin=False, setup=setup,
                                    log=lambda _: None)
  saved = json.loads((tmp_path / "gan.json").read_text())
  assert saved["ratio"] == pytest.approx(results["ratio"]) and math.isfinite(saved["ratio"])
  assert set(saved["ratios"]) == {"torch_t1"} and saved["fastest_torch"] == "torch_t1"
  assert saved["ratio"] == pytest.approx(saved["ratios"][saved["fastest_torch"]])
  assert all(math.isfinite(r) and r > 0 for r in saved["ratios"].values())
  for name in ("ours", "torch_t1"):
    rate = saved["rates"][name]
    assert rate["min"] <= rate["steps_per_second"] <= rate["max"] and len(rate["repeats"]) == 3
    assert rate["steps_per_second"] > 0 and rate["block_steps_per_second"] > 0
  assert saved["log_point_seconds"]["median"] > 0 and len(saved["loadavg_end"]) == 3
  assert saved["parity"]["loss"]["loss_abs_diff"] < 1e-4
  table = (tmp_path / "gan.md").read_text()
  assert "| PyTorch CPU loop (eager), 1 thread |" in table and "Command: `test`" in table
  assert "| deepfound (`game.run_chunk_jit`, compiled scan) |" in table

