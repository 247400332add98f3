"""scripts/train.py through a real subprocess: outputs, exit codes, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "scripts", "train.py")
QUANTUM = os.path.join(ROOT, "configs", "logreg_quantum.py")


def train(workdir, *args, env=None, config=QUANTUM + ":sag"):
  command = [sys.executable, TRAIN, f"--config={config}", f"--workdir={workdir}", *args]
  return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                        env=dict(os.environ, **(env or {})))


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
  """SIGKILL from outside once the first checkpoint exists; the rerun resumes from it."""
  args = ("--config.num_steps=200000", "--config.log_every=1000", "--config.checkpoint_every=2000",
          "--config.optim.name=saga", "--config.problem.l2=0.001", "--progress=false")
  command = [sys.executable, TRAIN, f"--config={QUANTUM}:sag", f"--workdir={tmp_path / 'a'}", *args]
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
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
  straight = train(tmp_path / "b", *args)
  assert straight.returncode == 0, straight.stderr
  a, b = np.load(tmp_path / "a" / "params.npz"), np.load(tmp_path / "b" / "params.npz")
  np.testing.assert_array_equal(a["params"], b["params"])
  resumed_from = json.loads((tmp_path / "a" / "summary.json").read_text())["resumed_from_step"]
  assert resumed_from is not None and 2000 <= resumed_from < 200000
  rows = [json.loads(line)["step"] for line in (tmp_path / "a" / "metrics.jsonl").open()]
  assert rows == list(range(0, 200001, 1000))  # no duplicated or missing points


BAD_INPUTS = [
    (["--config.optim.name=newton"], "optim.name must be one of"),
    (["--config.optim.learning_rate=-0.1"], "optim.learning_rate must be > 0"),
    (["--config.optim.learning_rate=0"], "optim.learning_rate must be > 0"),
    (["--config.optim.nope=1"], "no such config key"),
    (["--config.data.name=stream"], "needs a finite sum"),
    (["--config.data.name=libsvm", "--config.data.path=/no/such/file.svm"], "not found"),
    (["--config.num_steps=1001"], "multiple of log_every"),
    (["--config.data.name=quantum", "--config.data.path={tmp}/broken.csv"], "malformed"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
  (tmp_path / "broken.csv").write_text("1,2,x\n")
  workdir = tmp_path / "run"
  result = train(workdir, *[a.format(tmp=tmp_path) for a in args])
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr
  assert not workdir.exists()  # nothing half-written


@pytest.mark.slow
def test_workdir_that_is_a_file(tmp_path):
  (tmp_path / "file").write_text("x")
  result = train(tmp_path / "file", "--config.num_steps=100")
  assert result.returncode == 2 and "is not a directory" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_unknown_method_and_missing_step_size(tmp_path):
  result = train(tmp_path / "r", config=QUANTUM + ":newton")
  assert result.returncode == 2 and "unknown update rule 'newton'; registered: bgd" in result.stderr
  config = tmp_path / "no_rate.py"
  config.write_text(
      "from configs import logreg_quantum\n"
      "def get_config():\n"
      "  c = logreg_quantum.get_config('sgd')\n"
      "  c.optim.learning_rate = None\n"
      "  return c\n"
  )
  result = train(tmp_path / "r", config=str(config))
  assert result.returncode == 2 and "optim.learning_rate is required for sgd" in result.stderr
  assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_divergence_stops_and_reports(tmp_path):
  result = train(tmp_path / "d", "--config.optim.name=bgd", "--config.problem.loss=least_squares",
                 "--config.optim.learning_rate=10", "--config.num_steps=1000")
  assert result.returncode == 1
  assert "not finite at step 50" in result.stderr and "2/L = 0.2365" in result.stderr
  summary = json.loads((tmp_path / "d" / "summary.json").read_text())
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
  result = train(tmp_path / "bc", "--config.data.name=breast_cancer", "--config.num_steps=200",
                 "--config.problem.l2=0.01", config=str(config_file))
  assert result.returncode == 0, result.stderr
  config = json.loads((tmp_path / "bc" / "config.json").read_text())
  assert config["config"]["optim"]["learning_rate"] is None
  assert config["resolved"]["learning_rate"] == pytest.approx(1.0 / config["constants"]["lipschitz"])
  summary = json.loads((tmp_path / "bc" / "summary.json").read_text())
  assert 0 < summary["suboptimality"] < 1e-3 and summary["epoch"] == 200
  stream = train(tmp_path / "st", "--config.data.name=stream", "--config.data.num_features=5",
                 "--config.num_steps=4000", "--config.log_every=1000", config=QUANTUM + ":sga")
  assert stream.returncode == 0, stream.stderr
  rows = [json.loads(line) for line in (tmp_path / "st" / "metrics.jsonl").open()]
  assert rows[-1]["objective"] < rows[0]["objective"] - 0.05
  assert rows[-1]["suboptimality"] is None and rows[-1]["epoch"] is None  # n is infinite


MLP_DIGITS = os.path.join(ROOT, "configs", "mlp_digits.py")


@pytest.mark.slow
def test_mlp_on_digits_through_the_cli(tmp_path):
  result = train(tmp_path / "mlp", "--config.num_steps=420", "--config.checkpoint_every=210",
                 config=MLP_DIGITS + ":sag")
  assert result.returncode == 0, result.stderr
  rows = [json.loads(line) for line in (tmp_path / "mlp" / "metrics.jsonl").open()]
  for key in ("loss", "train_accuracy", "test_accuracy", "objective", "epoch"):
    assert key in rows[-1]
  assert rows[-1]["test_accuracy"] > 0.85 and rows[0]["test_accuracy"] < 0.3
  summary = json.loads((tmp_path / "mlp" / "summary.json").read_text())
  assert summary["gradient_memory_mb"] == pytest.approx(1348 * (64 * 128 + 128 + 1290) * 4 / 2**20)


@pytest.mark.slow
def test_net_memory_refusal_and_bad_model_keys(tmp_path):
  result = train(tmp_path / "big", "--config.optim.max_memory_mb=10", config=MLP_DIGITS + ":sag")
  assert result.returncode == 2 and "keeps one gradient per sample" in result.stderr
  assert "49.4 MB" in result.stderr and not (tmp_path / "big").exists()
  result = train(tmp_path / "m", "--config.optim.memory=scalar", config=MLP_DIGITS + ":sag")
  assert result.returncode == 2 and "optim.memory=scalar does not fit model.name=mlp" in result.stderr
  result = train(tmp_path / "m", "--config.model.activation=swish", config=MLP_DIGITS + ":sgd")
  assert result.returncode == 2 and "model.activation" in result.stderr
