"""The VAE throughput benchmark (deepfound.benchmarks.vae) at toy sizes: our half always, the
PyTorch half (parity of the two losses, an end-to-end run) only where torch is installed."""

import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config():
  sys.path.insert(0, ROOT)
  from configs import vae_mnist

  return vae_mnist.get_config()


@pytest.mark.slow
def test_our_loop_trains_in_blocks_that_carry_the_state():
  from deepfound.benchmarks import vae

  dataset = vae.synthetic_dataset(num_samples=300, num_test=20)
  assert dataset.features.shape == (300, 784) and dataset.features.dtype == "float32"
  problem = vae.build_problem(_config(), dataset, num_importance_samples=2)
  assert problem.objective_samples == vae.BATCH and problem.metrics(problem.initial_params) == {}
  loop = vae.OursLoop(problem, steps=3)
  assert loop.block() > 0 and loop.block() > 0
  assert int(loop.state.step) == 6 and math.isfinite(loop.last_objective)


@pytest.mark.slow
def test_torch_computes_our_loss_and_gradient(monkeypatch):
  monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # read when torch first loads
  pytest.importorskip("torch")
  from deepfound.benchmarks import vae

  for k in (1, 3):
    parity = vae.loss_parity(_config(), k, batch=4)
    assert parity["loss_abs_diff"] <= 1e-5 * abs(parity["loss_ours"]), parity
    assert parity["grad_rel_diff"] < 1e-3, parity


@pytest.mark.slow
def test_benchmark_writes_its_table(tmp_path, monkeypatch):
  monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
  pytest.importorskip("torch")
  from deepfound.benchmarks import vae

  results = vae.run_benchmark(str(tmp_path), "test", _config(), steps=2, repeats=2,
                              importance_samples=(1,), num_samples=300, log=lambda _: None)
  variant = json.loads((tmp_path / "vae.json").read_text())["variants"]["k1"]
  assert variant["ratio"] == pytest.approx(results["variants"]["k1"]["ratio"])
  assert variant["ours"]["min"] <= variant["ours"]["samples_per_second"] <= variant["ours"]["max"]
  assert len(variant["torch"]["repeats"]) == 2 and len(results["loadavg_end"]) == 3
  table = (tmp_path / "vae.md").read_text()
  assert "| VAE (ELBO, k = 1) | PyTorch CPU loop (eager) |" in table and "Command: `test`" in table
