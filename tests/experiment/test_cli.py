"""scripts/train.py through a real subprocess: outputs, exit codes, resume after a kill. A refusal
reaches its exit status 2 and its one line on stderr by a few ways, each tested through train.py
(a flag, a config file that raises, a data file); what each refusal says is checked in this
process, on the config train.py's flags give (``_parse``) and the call it makes (``run_experiment``
with the given keys): each process that imports JAX costs seconds."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from deepfound.data import DataError
from deepfound.experiment import ConfigError, run_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # as train.py does: config files import one another (configs.*)
TRAIN = os.path.join(ROOT, "scripts", "train.py")
QUANTUM = os.path.join(ROOT, "configs", "logreg_quantum.py")
MLP_DIGITS = os.path.join(ROOT, "configs", "mlp_digits.py")


def command(workdir, *args, config=QUANTUM + ":sag"):
  return [sys.executable, TRAIN, f"--config={config}", f"--workdir={workdir}", *args]


def train(workdir, *args, env=None, config=QUANTUM + ":sag"):
  return subprocess.run(command(workdir, *args, config=config), capture_output=True, text=True,
                        cwd=ROOT, timeout=300, env=dict(os.environ, **(env or {})))


def _parse(config: str, *overrides: str):
  """(config, given keys) as train.py's flags give them for --config=<config> and the
  --config.* overrides."""
  argv = ["train.py", f"--config={config}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
  values(argv)
  return values["config"].value, config_flags.get_override_values(values["config"])


def _refusal(workdir, config: str, *overrides: str) -> str:
  """The message of the refusal (a ConfigError or DataError: train.py's exit 2 with this line)
  of the run train.py would start in ``workdir``; it must be one line."""
  config, given = _parse(config, *overrides)
  with pytest.raises((ConfigError, DataError)) as error:
    run_experiment(config, str(workdir), progress=False, given=given)
  message = str(error.value)
  assert message and "\n" not in message, message
  return message


@pytest.mark.slow
def test_run_writes_the_contract(tmp_path):
  workdir = tmp_path / "run"
  result = train(workdir, "--config.num_steps=2000", "--config.log_every=100",
                 "--config.checkpoint_every=1000")
  assert result.returncode == 0, result.stderr
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == list(range(0, 2001, 100))
  for key in ("step", "epoch", "objective", "suboptimality", "learning_rate", "elapsed_s"):
    assert key in rows[-1]
  assert rows[-1]["epoch"] == pytest.approx(0.2)
  assert rows[-1]["objective"] < rows[0]["objective"] - 0.03
  assert rows[-1]["suboptimality"] == pytest.approx(rows[-1]["objective"] - 0.551805, abs=1e-5)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "complete" and summary["steps_per_second"] > 0
  assert summary["backend"] == "cpu" and summary["device_count"] >= 1 and summary["compile_s"] > 0
  config = json.loads((workdir / "config.json").read_text())
  assert config["config"]["optim"]["name"] == "sag"
  assert "step 2000/2000" in result.stderr  # progress line


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_parameters(tmp_path):
  """SIGKILL from outside once the first checkpoint exists; the rerun resumes from it. The run
  without a kill that it must match runs beside it (two processes that mostly import, compile
  and save checkpoints: one core each)."""
  num_steps = 40_000  # 20 chunks of 2000 steps, a checkpoint after each: the kill comes long
  args = (f"--config.num_steps={num_steps}", "--config.log_every=1000",  # before the end
          "--config.checkpoint_every=2000", "--config.optim.name=saga",
          "--config.problem.l2=0.001", "--progress=false")
  straight = subprocess.Popen(command(tmp_path / "b", *args), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    process = subprocess.Popen(command(tmp_path / "a", *args), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "a" / "checkpoints"
    deadline = time.monotonic() + 240
    while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
      assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
      time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (tmp_path / "a" / "summary.json").exists()  # killed mid-run, not after it
    resumed = train(tmp_path / "a", *args)
    assert resumed.returncode == 0, resumed.stderr
    _, stderr = straight.communicate(timeout=300)
    assert straight.returncode == 0, stderr
  finally:
    straight.kill()
    straight.wait()
  a, b = np.load(tmp_path / "a" / "params.npz"), np.load(tmp_path / "b" / "params.npz")
  np.testing.assert_array_equal(a["params"], b["params"])
  resumed_from = json.loads((tmp_path / "a" / "summary.json").read_text())["resumed_from_step"]
  assert resumed_from is not None and 2000 <= resumed_from < num_steps
  rows = [json.loads(line)["step"] for line in (tmp_path / "a" / "metrics.jsonl").open()]
  assert rows == list(range(0, num_steps + 1, 1000))  # no duplicated or missing points


# One per way a refusal reaches train.py's exit status 2: the flag parser, a config file that
# raises while loading, and run_main's mapping of a ConfigError/DataError (a data file).
CLI_REFUSALS = [
    (QUANTUM + ":sag", ["--config.optim.nope=1"], "no such config key"),
    (QUANTUM + ":newton", [], "unknown update rule 'newton'; registered: bgd"),
    (QUANTUM + ":sag", ["--config.data.name=libsvm", "--config.data.path=/no/such/file.svm"],
     "not found"),
]
DIVERGING = ["--config.optim.name=bgd", "--config.problem.loss=least_squares",
             "--config.optim.learning_rate=10", "--config.num_steps=1000"]


@pytest.fixture(scope="module")
def failed_runs(tmp_path_factory):
  """train.py's runs that end with another status than 0, started side by side (each imports
  JAX, then refuses or runs a few chunks): {name: (workdir, exit status, stderr)}."""
  root = tmp_path_factory.mktemp("failed_runs")
  commands = {f"refusal{number}": command(root / f"refusal{number}", *args, config=config)
              for number, (config, args, _) in enumerate(CLI_REFUSALS)}
  commands["diverging"] = command(root / "diverging", *DIVERGING)
  processes = {name: subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
               for name, argv in commands.items()}
  try:
    stderr = {name: process.communicate(timeout=300)[1] for name, process in processes.items()}
  finally:
    for process in processes.values():
      process.kill()
      process.wait()
  return {name: (root / name, processes[name].returncode, stderr[name]) for name in processes}


@pytest.mark.slow
def test_bad_input_through_train_py_exits_2_with_one_line(failed_runs):
  for number, (config, args, message) in enumerate(CLI_REFUSALS):
    workdir, status, stderr = failed_runs[f"refusal{number}"]
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1 and message in lines[0], (config, args, stderr)
    assert lines[0].startswith("error: "), stderr
    assert not workdir.exists()  # nothing half-written


BAD_INPUTS = [
    (["--config.optim.name=newton"], "optim.name must be one of"),
    (["--config.optim.learning_rate=-0.1"], "optim.learning_rate must be > 0"),
    (["--config.optim.learning_rate=0"], "optim.learning_rate must be > 0"),
    (["--config.data.name=stream"], "needs a finite sum"),
    (["--config.data.name=libsvm", "--config.data.path=/no/such/file.svm"], "not found"),
    (["--config.num_steps=1001"], "multiple of log_every"),
    (["--config.data.name=quantum", "--config.data.path={tmp}/broken.csv"], "malformed"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_refused_in_one_line_before_writing(tmp_path, args, message):
  (tmp_path / "broken.csv").write_text("1,2,x\n")
  workdir = tmp_path / "run"
  assert message in _refusal(workdir, QUANTUM + ":sag", *[a.format(tmp=tmp_path) for a in args])
  assert not workdir.exists()  # nothing half-written


def test_workdir_that_is_a_file(tmp_path):
  (tmp_path / "file").write_text("x")
  assert "is not a directory" in _refusal(tmp_path / "file", QUANTUM + ":sag",
                                          "--config.num_steps=100")
  assert (tmp_path / "file").read_text() == "x"


def test_missing_step_size(tmp_path):
  config = tmp_path / "no_rate.py"
  config.write_text(
      "from configs import logreg_quantum\n"
      "def get_config():\n"
      "  c = logreg_quantum.get_config('sgd')\n"
      "  c.optim.learning_rate = None\n"
      "  return c\n"
  )
  assert "optim.learning_rate is required for sgd" in _refusal(tmp_path / "r", str(config))
  assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_divergence_stops_and_reports(failed_runs):
  workdir, status, stderr = failed_runs["diverging"]
  assert status == 1
  assert "not finite at step 50" in stderr and "2/L = 0.2365" in stderr
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "diverged"


@pytest.mark.slow
def test_bgd_defaults_to_one_over_lipschitz_and_stream_runs_sga(tmp_path):
  config_file = tmp_path / "bc.py"
  config_file.write_text(
      "from configs import logreg_quantum\n"
      "def get_config():\n"
      "  c = logreg_quantum.get_config('bgd')\n"
      "  c.optim.learning_rate = None  # BGD's default: 1/L\n"
      "  return c\n"
  )
  config, given = _parse(str(config_file), "--config.data.name=breast_cancer",
                         "--config.num_steps=200", "--config.problem.l2=0.01")
  run_experiment(config, str(tmp_path / "bc"), progress=False, given=given)
  config = json.loads((tmp_path / "bc" / "config.json").read_text())
  assert config["config"]["optim"]["learning_rate"] is None
  assert config["resolved"]["learning_rate"] == pytest.approx(1.0 / config["constants"]["lipschitz"])
  summary = json.loads((tmp_path / "bc" / "summary.json").read_text())
  assert 0 < summary["suboptimality"] < 1e-3 and summary["epoch"] == 200
  config, given = _parse(QUANTUM + ":sga", "--config.data.name=stream",
                         "--config.data.num_features=5", "--config.num_steps=4000",
                         "--config.log_every=1000")
  run_experiment(config, str(tmp_path / "st"), progress=False, given=given)
  rows = [json.loads(line) for line in (tmp_path / "st" / "metrics.jsonl").open()]
  assert rows[-1]["objective"] < rows[0]["objective"] - 0.05
  assert rows[-1]["suboptimality"] is None and rows[-1]["epoch"] is None  # n is infinite


@pytest.mark.slow
def test_mlp_on_digits(tmp_path):
  config, given = _parse(MLP_DIGITS + ":sag", "--config.num_steps=420",
                         "--config.checkpoint_every=210")
  run_experiment(config, str(tmp_path / "mlp"), progress=False, given=given)
  rows = [json.loads(line) for line in (tmp_path / "mlp" / "metrics.jsonl").open()]
  for key in ("loss", "train_accuracy", "test_accuracy", "objective", "epoch"):
    assert key in rows[-1]
  assert rows[-1]["test_accuracy"] > 0.85 and rows[0]["test_accuracy"] < 0.3
  summary = json.loads((tmp_path / "mlp" / "summary.json").read_text())
  assert summary["gradient_memory_mb"] == pytest.approx(1348 * (64 * 128 + 128 + 1290) * 4 / 2**20)


def test_net_memory_refusal_and_bad_model_keys(tmp_path):
  message = _refusal(tmp_path / "big", MLP_DIGITS + ":sag", "--config.optim.max_memory_mb=10")
  assert "keeps one gradient per sample" in message and "49.4 MB" in message
  assert not (tmp_path / "big").exists()
  message = _refusal(tmp_path / "m", MLP_DIGITS + ":sag", "--config.optim.memory=scalar")
  assert "optim.memory=scalar does not fit model.name=mlp" in message
  assert "model.activation" in _refusal(tmp_path / "m", MLP_DIGITS + ":sgd",
                                        "--config.model.activation=swish")
  assert not (tmp_path / "m").exists()
