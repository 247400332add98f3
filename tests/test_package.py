"""The installed package stands on its own: no import of the repository's configs/, no
process-wide setting changed by an import or left changed by a run, its layers import only
downwards, and ``deepfound.optim`` shows what users import."""

import importlib
import os
import subprocess
import sys
import types

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
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


@pytest.mark.slow
def test_accelerator_check_small_runs_on_the_cpu(tmp_path):
  from configs import mlp_digits
  from deepfound.benchmarks import accelerator

  config = mlp_digits.get_config("sgd")
  sizes = dict(accelerator.SMALL, num_samples=2000, sag_steps=2000, sweep_runs=8, net_steps=100,
               scaling_runs=(1, 4), scaling_steps=200, step_steps=1024, unrolls=(1, 4), pages=(64,),
               log_everys=(256,))
  results = accelerator.run_check(str(tmp_path), True, config, "test", log=lambda _: None,
                                  sizes=sizes)
  for name in accelerator.CHECKS:
    assert "error" not in results[name], results[name]
  rows = results["step_time"]["rows"]
  unroll = accelerator.driver.default_unroll()
  assert [(r["unroll"], r["page"], r["log_every"]) for r in rows] == [
      (1, 256, 1024), (4, 256, 1024), (unroll, 64, 1024), (unroll, 256, 256)]
  assert results["checkpoint"]["identical"] and results["checkpoint"]["resumed_from_step"] == 2000
  assert results["sweep"]["runs"] == 8 and results["sag"]["suboptimality"] > 0
  assert [row["runs"] for row in results["scaling"]["rows"]] == [1, 4]
  assert results["scaling"]["bytes_per_run_step"] == 4 * (4 * results["scaling"]["num_features"] + 2)
  one_device = results["data_parallel"]["rows"][0]
  assert one_device["devices"] == 1 and not any(one_device["collectives"].values())
  table = (tmp_path / "accelerator.md").read_text()
  assert "| checkpoint and resume | resumed from step 2000: parameters identical" in table


def test_accelerator_check_runs_the_checks_asked_for_and_refuses_unknown_ones(tmp_path):
  from deepfound.benchmarks import accelerator

  sizes = dict(accelerator.SMALL, step_steps=512, unrolls=(2,), pages=(), log_everys=())
  results = accelerator.run_check(str(tmp_path), True, None, "test", log=lambda _: None,
                                  sizes=sizes, checks=("step_time",))
  assert [row["unroll"] for row in results["step_time"]["rows"]] == [2]
  assert "sag" not in results
  table = (tmp_path / "accelerator.md").read_text()
  assert "step time" in table and "SAG, float32" not in table  # a check not run: no row
  with pytest.raises(ValueError, match="unknown check"):
    accelerator.run_check(str(tmp_path), True, None, "test", checks=("bogus",))
  checks, sizes = accelerator.parse_options(True, ["sag"], unrolls=["3"], pages=None,
                                            scaling_runs=["1", "64"])
  assert checks == ("sag",) and sizes["unrolls"] == (3,) and sizes["scaling_runs"] == (1, 64)
  assert sizes["pages"] == accelerator.SMALL["pages"]
  for kwargs, message in ((dict(unrolls=["1", "x"]), "--unrolls: expected integers"),
                          (dict(unrolls=["257"]), r"--unrolls: each value must be in \[1, 256\]"),
                          (dict(scaling_runs=["0"]), "--scaling_runs: each value must be in")):
    with pytest.raises(ValueError, match=message):
      accelerator.parse_options(True, None, **kwargs)
  script = os.path.join(ROOT, "scripts", "accelerator_check.py")  # the script's exit status
  done = subprocess.run([sys.executable, script, "--small", f"--out={tmp_path}",
                         "--checks=sag,bogus"], capture_output=True, text=True, timeout=120)
  assert done.returncode == 2 and "--checks: unknown check(s) bogus" in done.stderr, done.stderr


def test_importing_the_package_leaves_xla_flags_alone():
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "DEEPFOUND_KEEP_XLA_FLAGS")}
  code = "import os; import deepfound, deepfound.optim; print(os.environ.get('XLA_FLAGS'))"
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "None"


def test_a_script_sets_xla_flags_and_keeps_the_users_own(monkeypatch):
  from deepfound import _xla_flags

  monkeypatch.delenv("DEEPFOUND_KEEP_XLA_FLAGS", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")
  _xla_flags.apply()
  flags = os.environ["XLA_FLAGS"].split()
  assert flags == ["--xla_cpu_experimental_ynn_fusion_type=dot",
                   "--xla_cpu_copy_insertion_use_region_analysis=true"]


RULES = ("bgd", "sgd", "sga", "sag", "saga", "svrg", "sarah")


def test_rule_modules_are_not_shadowed_by_the_rules():
  import deepfound.optim

  for name in RULES:
    assert isinstance(getattr(deepfound.optim, name), types.FunctionType), name
  for name in ("sgd", "sga", "sag", "saga", "svrg", "sarah", "baselines"):
    module = importlib.import_module(f"deepfound.optim.rules.{name}")
    assert isinstance(module, types.ModuleType) and module.__name__ == f"deepfound.optim.rules.{name}"
  assert deepfound.optim.sag is importlib.import_module("deepfound.optim.rules.sag").sag
  assert importlib.import_module("deepfound.optim.rules.sgd").bgd is deepfound.optim.bgd


def test_optim_all_lists_the_rules_and_entry_points_not_the_internals():
  import deepfound.optim

  exported = set(deepfound.optim.__all__)
  assert {*RULES, "run", "run_on_indices", "Method", "hyperparameters", "register_rule",
          "get_rule", "RULES", "RuleSpec", "RuleContext", "scale_by_sag"} <= exported
  assert len(exported) == len(deepfound.optim.__all__)  # no name twice
  for name in exported:
    assert hasattr(deepfound.optim, name), name
  assert deepfound.optim.run is importlib.import_module("deepfound.optim.driver").run
  for internal in ("check_index", "checked_index", "fill_memory", "flushed_table", "LAYOUTS",
                   "memory_bytes"):
    assert internal not in exported and not hasattr(deepfound.optim, internal), internal
    assert hasattr(importlib.import_module("deepfound.optim.memory"), internal)
