"""Hostile input to sweeps (issue 24): values of the wrong type, a different sweep on a sweep's
workdir, auto step sizes in the pictures, progress lines, and Ctrl-C while computing and while
importing."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from configs import logreg_quantum
from deepfound.errors import ConfigError
from deepfound.sweep import SpecError, plots
from deepfound.sweep.runner import plan, run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
QUANTUM = os.path.join(ROOT, "configs", "logreg_quantum.py")


def small_config(method="sgd"):
  config = logreg_quantum.get_config(method)
  config.num_steps, config.log_every = 100, 50
  return config


def tiny_config():
  """A sweep's config that runs in a moment: 200 synthetic samples."""
  config = small_config()
  config.data.name, config.data.num_samples, config.data.num_features = "synthetic", 200, 5
  return config


@pytest.mark.parametrize("spec, message", [
    ("optim.l0=[10, abc]", "optim.l0 takes numbers, got 'abc'"),
    ("seed=[0, 1.5]", "seed takes integers, got 1.5"),
    ("seed=[True]", "seed takes integers, got True"),
    ("optim.schedule=[1]", "optim.schedule takes a string, got 1"),
    ("problem.fit_intercept=[maybe]", "problem.fit_intercept takes true or false"),
    ("model.hidden=[64]", "model.hidden takes a tuple"),
    ("optim.learning_rate=[True]", "optim.learning_rate takes a number or a string"),
    ("optim=[1]", "optim is a group of keys, not a key"),
    # Checked before the runs are expanded: 50,000 runs are never built for a bad value.
    ("seed=range(50000); optim.l0=[1, abc]", "optim.l0 takes numbers, got 'abc'"),
])
def test_values_are_checked_against_the_key_before_expansion(spec, message):
  start = time.perf_counter()
  with pytest.raises(SpecError, match=re.escape(message)):
    plan(small_config(), spec)
  assert time.perf_counter() - start < 5


def test_values_take_their_key_type():
  values, _ = plan(small_config(), "optim.batch_size=[2.0]; problem.fit_intercept=[true]")
  assert values == [{"optim.batch_size": 2, "problem.fit_intercept": True}]


def test_auto_step_is_planned_and_plotted(tmp_path):
  values, groups = plan(small_config("sag"), "optim.learning_rate=[auto, 0.1]; seed=[0, 1]")
  assert [v["optim.learning_rate"] for v in values] == ["auto", "auto", 0.1, 0.1]
  assert len(groups) == 1
  with pytest.raises(SpecError, match="auto is scikit-learn's step of sag and saga"):
    plan(small_config("sgd"), "optim.learning_rate=[auto, 0.1]")
  rows = [dict(run=k, group=0, diverged=False, optimum=0.5, final_objective=0.6 + k / 10,
               final_suboptimality=0.1 + k / 10, learning_rate_used=rate,
               **{"optim.learning_rate": given, "optim.l0": l0})
          for k, (given, rate, l0) in enumerate([("auto", 0.005, 10.0), ("auto", 0.005, 100.0),
                                                 (0.1, 0.1, 10.0), (0.1, 0.1, 100.0)])]
  written = plots.write_plots(str(tmp_path), rows, ["sag, constant"])
  assert sorted(os.path.basename(p) for p in written) == [
      "final_vs_learning_rate.png", "heatmap_tau0_l0.png"]


def test_a_different_sweep_on_a_sweeps_workdir_is_refused(tmp_path):
  workdir, spec = str(tmp_path / "sweep"), "optim.learning_rate=[0.01, 0.1]; optim.batch_size=[1, 2]"
  lines = []
  run_sweep(tiny_config(), spec, workdir, log=lines.append)
  # A progress line before and after each program, with an estimate of the time left.
  assert lines[0] == "program 1 of 2 [optim.batch_size=1]: 2 runs x 100 steps"
  assert re.fullmatch(r"program 1 of 2 done: \d+ s elapsed; about \d+ s left", lines[2]), lines
  assert re.fullmatch(r"program 2 of 2 done: \d+ s elapsed", lines[-1]), lines
  rows = open(os.path.join(workdir, "sweep.jsonl")).read()

  # The same sweep (spelled differently, with another memory budget) runs again.
  same = tiny_config()
  same.optim.max_memory_mb = 4000.0
  run_sweep(same, spec.replace(" ", ""), workdir, log=lambda _: None)
  assert open(os.path.join(workdir, "sweep.jsonl")).read() == rows
  assert ".sweep.partial" not in os.listdir(workdir)

  other = tiny_config()
  other.optim.l0 = 10.0
  for config, different, named in [(tiny_config(), "optim.learning_rate=[0.01, 0.2]", "keys or values"),
                                   (other, spec, "optim.l0")]:
    with pytest.raises(ConfigError, match=f"holds a different sweep .*{named}.* differ"):
      run_sweep(config, different, workdir, log=lambda _: None)
  # A sweep written before config.json was kept is compared by its SPEC.
  os.remove(os.path.join(workdir, "config.json"))
  with pytest.raises(ConfigError, match="holds a different sweep"):
    run_sweep(tiny_config(), "optim.learning_rate=[0.01]", workdir, log=lambda _: None)
  assert open(os.path.join(workdir, "sweep.jsonl")).read() == rows
  # A train.py run's workdir.
  train = tmp_path / "run"
  train.mkdir()
  (train / "config.json").write_text(json.dumps({"config": tiny_config().to_dict()}))
  with pytest.raises(ConfigError, match="holds a run of scripts/train.py, not a sweep"):
    run_sweep(tiny_config(), spec, str(train), log=lambda _: None)


def _skip_if_sigint_is_ignored():
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A suite started where SIGINT is ignored (some background jobs of a shell) hands that on to
    # the sweep, which then cannot be interrupted: nothing to test here.
    pytest.skip("SIGINT is ignored in this process, and so in the sweep it would start")


def _interrupt(process, lines_until, settle):
  """Reads stderr up to the first line matching ``lines_until``, waits ``settle`` seconds, sends
  SIGINT; returns (seconds to exit, the rest of stderr)."""
  for line in process.stderr:
    if re.search(lines_until, line):
      break
  else:
    pytest.fail(f"the sweep ended (exit {process.wait()}) before {lines_until!r}")
  time.sleep(settle)
  process.send_signal(signal.SIGINT)
  start = time.perf_counter()
  try:
    rest = process.communicate(timeout=30)[1]
  except subprocess.TimeoutExpired:
    process.kill()
    pytest.fail("the sweep kept running 30 s after Ctrl-C")
  return time.perf_counter() - start, rest


@pytest.mark.slow
def test_ctrl_c_stops_a_computing_sweep_at_once(tmp_path):
  _skip_if_sigint_is_ignored()
  workdir = tmp_path / "sweep"
  # The second program runs 5e8 SGD steps: minutes on 2 cores; 2 s after it starts it computes.
  process = subprocess.Popen(
      [sys.executable, SWEEP, f"--config={QUANTUM}:sgd", f"--workdir={workdir}",
       "--sweep=num_steps=[1000000, 500000000]", "--config.log_every=1000000",
       "--config.data.name=synthetic", "--config.data.num_samples=200",
       "--config.data.num_features=5"],
      cwd=ROOT, stderr=subprocess.PIPE, text=True)
  seconds, rest = _interrupt(process, r"^program 2 of 2 \[", settle=2.0)
  assert process.returncode == 130, rest
  assert seconds < 5, seconds
  assert rest.strip().splitlines() == [
      "error: interrupted; a sweep keeps no checkpoint and this one wrote no outputs; run the "
      "same command again to start it over"]
  assert not workdir.exists()


@pytest.mark.slow
def test_ctrl_c_during_the_imports_is_one_line(tmp_path):
  _skip_if_sigint_is_ignored()
  process = subprocess.Popen(  # -X importtime: a stderr line as each module is imported
      [sys.executable, "-X", "importtime", SWEEP, f"--config={QUANTUM}:sgd",
       f"--workdir={tmp_path / 'sweep'}", "--sweep=seed=[0]"],
      cwd=ROOT, stderr=subprocess.PIPE, text=True)
  _, rest = _interrupt(process, r"\|\s+jax$", settle=0.0)
  assert process.returncode == 130, rest
  assert [line for line in rest.splitlines() if not line.startswith("import time:")] == [
      "error: interrupted before the sweep started; nothing was written"]
  assert not (tmp_path / "sweep").exists()
