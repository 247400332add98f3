"""The installed package stands on its own: no import of the repository's configs/, and no
process-wide JAX setting left changed by a run."""

import os
import subprocess
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_package_modules_import_outside_the_repository(tmp_path):
  modules = "deepfound.figures.nets, deepfound.benchmarks.nets, deepfound.benchmarks.sweep"
  code = f"import sys; import {modules}; print('configs' in sys.modules)"
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "False"


def test_a_float64_run_leaves_x64_as_it_was(tmp_path):
  sys.path.insert(0, ROOT)
  from configs import logreg_quantum
  from deepfound.experiment import run_experiment

  config = logreg_quantum.get_config("bgd")
  config.precision, config.num_steps, config.log_every = "float64", 20, 10
  assert not jax.config.jax_enable_x64
  summary = run_experiment(config, str(tmp_path / "run"), progress=False)
  assert not jax.config.jax_enable_x64
  assert summary["status"] == "complete" and summary["suboptimality"] < 0.2
  params = dict(__import__("numpy").load(tmp_path / "run" / "params.npz"))
  assert all(a.dtype == "float64" for a in params.values())


def test_accelerator_check_small_runs_on_the_cpu(tmp_path):
  from configs import mlp_digits
  from deepfound.benchmarks import accelerator

  config = mlp_digits.get_config("sgd")
  sizes = dict(accelerator.SMALL, num_samples=2000, sag_steps=2000, sweep_runs=8, net_steps=100)
  results = accelerator.run_check(str(tmp_path), True, config, "test", log=lambda _: None,
                                  sizes=sizes)
  for name in ("sag", "sweep", "mlp", "checkpoint"):
    assert "error" not in results[name], results[name]
  assert results["checkpoint"]["identical"] and results["checkpoint"]["resumed_from_step"] == 2000
  assert results["sweep"]["runs"] == 8 and results["sag"]["suboptimality"] > 0
  table = (tmp_path / "accelerator.md").read_text()
  assert "| checkpoint and resume | resumed from step 2000: parameters identical" in table
