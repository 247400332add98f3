"""Hostile input and faults: each gets one clear line and the right exit status, and nothing is
left half-written or silently corrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from deepfound.data import DataError
from deepfound.experiment import ConfigError, DivergenceError, run_experiment
from deepfound.experiment.config import stored_config
from deepfound.optim import memory
from deepfound.optim.memory import checked_index
from deepfound.sweep.spec import SpecError, expand, parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from conftest import override  # noqa: E402

from configs import logreg_quantum, mlp_digits  # noqa: E402

TRAIN = os.path.join(ROOT, "scripts", "train.py")
QUANTUM = os.path.join(ROOT, "configs", "logreg_quantum.py")


def start(workdir, *args, config=QUANTUM + ":saga"):
  command = [sys.executable, TRAIN, f"--config={config}", f"--workdir={workdir}",
             "--progress=false", *args]
  return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def wait_for_checkpoint(process, workdir, timeout=120):
  checkpoints = workdir / "checkpoints"
  deadline = time.monotonic() + timeout
  while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
    assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
    time.sleep(0.005)


LONG = ("--config.num_steps=200000", "--config.log_every=1000", "--config.checkpoint_every=2000")


@pytest.mark.slow
def test_second_run_on_a_locked_workdir_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
  """A run holds its workdir: a second run there (the call train.py makes, in this process) is
  refused in one line naming the holder. Once the holder is killed, a rerun through train.py
  takes the lock (its process id is then in it). The killed run's checkpoint is truncated first,
  so that rerun also shows an unreadable checkpoint: one line saying what to delete, exit 2. (One
  killed run serves both: each run that reaches a checkpoint takes seconds.)"""
  workdir = tmp_path / "run"
  first = start(workdir, *LONG)
  try:
    wait_for_checkpoint(first, workdir)
    first.send_signal(signal.SIGSTOP)  # still the holder, and it cannot finish meanwhile
    # The run's own config (config.json): one built here may hold keys that other tests
    # registered, which the command line's has not (the lock refuses before it is compared).
    config = stored_config(json.loads((workdir / "config.json").read_text())["config"])
    with pytest.raises(ConfigError) as error:
      run_experiment(config, str(workdir), progress=False)
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert f"in use by process {first.pid}" in str(error.value) and "\n" not in str(error.value)
  for root, _, files in os.walk(workdir / "checkpoints"):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(3)
  rerun = subprocess.Popen([sys.executable, TRAIN, f"--config={QUANTUM}:saga",
                            f"--workdir={workdir}", *LONG], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  _, stderr = rerun.communicate(timeout=120)
  assert rerun.returncode == 2, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and "cannot be read" in lines[0] and "delete" in lines[0], lines
  assert (workdir / ".lock").read_text().split() == [str(rerun.pid)]  # the dead holder's is gone


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_the_run_resumes(tmp_path):
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A suite started where SIGINT is ignored (some background jobs of a shell) hands that on to
    # the run, which then cannot be interrupted: nothing to test here.
    pytest.skip("SIGINT is ignored in this process, and so in the run it would start")
  workdir = tmp_path / "run"
  process = start(workdir, *LONG)
  wait_for_checkpoint(process, workdir)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == 130, stderr
  assert stderr.strip().splitlines() == [
      "error: interrupted; run the same command again to resume from the last checkpoint"]


def _quantum(method="sgd", **changes):
  config = logreg_quantum.get_config(method)
  config.num_steps, config.log_every = 200, 100
  return override(config, **changes)


BAD_CONFIGS = [
    (dict(seed=99999999999999999999999), "seed must be an integer in [0, 4294967295]"),
    (dict(problem__l2=float("nan")), "problem.l2 must be a finite number"),
    (dict(problem__l2=float("inf")), "problem.l2 must be a finite number"),
    (dict(optim__learning_rate=float("inf")), "optim.learning_rate must be a finite number"),
    (dict(optim__learning_rate=1e300), "optim.learning_rate = 1e+300 is not representable in float32"),
    (dict(optim__learning_rate=1e-50), "optim.learning_rate = 1e-50 is not representable in float32"),
    (dict(optim__max_memory_mb=-5.0), "optim.max_memory_mb must be > 0"),
    (dict(data__name="synthetic", data__num_samples=10**11), "more than the"),
]


@pytest.mark.parametrize("changes, message", BAD_CONFIGS)
def test_bad_config_values_are_refused_before_anything_is_written(tmp_path, changes, message):
  with pytest.raises(ConfigError, match=None) as error:
    run_experiment(_quantum(**changes), str(tmp_path / "run"), progress=False)
  assert message in str(error.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("changes, message", [
    (dict(model__hidden=("a",)), "model.hidden must be a tuple of positive integers"),
    (dict(model__hidden=(12.7,)), "model.hidden must be a tuple of positive integers"),
    (dict(data__test_fraction=0.0001), "leaves 1797 training and 0 test samples"),
])
def test_bad_network_config_values(tmp_path, changes, message):
  config = mlp_digits.get_config("sgd")
  config.num_steps, config.log_every = 42, 42
  for key, value in changes.items():
    group, leaf = key.split("__")
    config[group][leaf] = value
  with pytest.raises(ConfigError) as error:
    run_experiment(config, str(tmp_path / "run"), progress=False)
  assert message in str(error.value)
  assert not (tmp_path / "run").exists()


def test_bad_workdirs(tmp_path):
  config = _quantum()
  with pytest.raises(ConfigError, match="--workdir must name a directory"):
    run_experiment(config, "", progress=False)
  os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
  with pytest.raises(ConfigError, match="symbolic link to nothing"):
    run_experiment(config, str(tmp_path / "dangling"), progress=False)
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").write_text("x")
  with pytest.raises(ConfigError, match="checkpoints exists and is not a directory"):
    run_experiment(config, str(tmp_path / "run"), progress=False)
  assert os.listdir(tmp_path / "run") == ["checkpoints"]


def _npz(path, **overrides):
  rng = np.random.default_rng(0)
  arrays = dict(x_train=rng.integers(0, 255, (40, 4, 4)).astype(np.float32),
                y_train=np.arange(40) % 3, x_test=rng.integers(0, 255, (9, 4, 4)).astype(np.float32),
                y_test=np.arange(9) % 3)
  arrays.update(overrides)
  np.savez(path, **arrays)
  return path


def test_bad_data_files_name_the_row_and_the_problem(tmp_path):
  config = mlp_digits.get_config("sgd")
  config.data.name, config.num_steps, config.log_every = "npz", 10, 10
  config.optim.batch_size = 4
  x = np.zeros((40, 4, 4), np.float32)
  x[17, 2, 1] = np.nan
  cases = [
      (dict(x_train=x), "row 17 has a NaN or infinite feature"),
      (dict(y_train=np.arange(39) % 3), "40 samples but 39 labels"),
      (dict(y_train=np.where(np.arange(40) == 5, -1, np.arange(40) % 3)),
       "label -1 in row 5 does not fit"),
      (dict(y_train=np.where(np.arange(40) == 7, 255, np.arange(40) % 3)),
       "found 4 distinct labels from 0 to 255, label 255 in row 7 does not fit"),
      (dict(y_train=(np.arange(40) % 3) + 0.5), "label 0.5 in row 0 of the split is not an integer"),
      (dict(y_test=np.array([0, 1, 2, 3, 0, 1, 2, 0, 1])), "test label 3 in row 3"),
      (dict(x_test=np.zeros((9, 5, 5), np.float32)), "test samples have shape (5, 5, 1)"),
  ]
  for number, (overrides, message) in enumerate(cases):
    config.data.path = str(_npz(tmp_path / f"bad{number}.npz", **overrides))
    with pytest.raises(DataError) as error:
      run_experiment(config, str(tmp_path / f"run{number}"), progress=False)
    assert message in str(error.value) and config.data.path in str(error.value)
    assert not (tmp_path / f"run{number}").exists()


def _libsvm(path, seed):
  rng = np.random.default_rng(seed)
  lines = [f"{1 if rng.random() < 0.5 else -1} 1:{rng.normal():.4f} 2:{rng.normal():.4f} "
           f"3:{rng.normal():.4f}" for _ in range(60)]
  path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_resume_refuses_changed_data_and_num_steps_extends_a_run(tmp_path):
  _libsvm(tmp_path / "a.svm", 0)
  config = _quantum("sag", data__name="libsvm", data__path=str(tmp_path / "a.svm"),
                    problem__l2=0.1)
  config.optim.learning_rate, config.log_every = 0.05, 50
  workdir = str(tmp_path / "run")
  assert run_experiment(config, workdir, progress=False)["step"] == 200
  config.num_steps = 400
  extended = run_experiment(config, workdir, progress=False)
  assert extended["step"] == 400 and extended["resumed_from_step"] == 200
  rows = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert rows == list(range(0, 401, 50))
  config.optim.learning_rate = 0.01
  with pytest.raises(ConfigError, match=r"different config \(optim.learning_rate differ\)"):
    run_experiment(config, workdir, progress=False)
  config.optim.learning_rate, config.num_steps = 0.05, 600
  _libsvm(tmp_path / "a.svm", 1)  # the same file, other contents
  with pytest.raises(ConfigError, match="the data changed since the run"):
    run_experiment(config, workdir, progress=False)


@pytest.mark.slow
def test_blow_up_without_nan_is_divergence(tmp_path):
  config = _quantum("sag", optim__learning_rate=1e6)
  with pytest.raises(DivergenceError, match="over 1000 times its start at step 100") as error:
    run_experiment(config, str(tmp_path / "run"), progress=False)
  assert "1/L_max" in str(error.value)
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["status"] == "diverged" and summary["step"] == 0


def test_public_rules_refuse_bad_indices():
  import jax
  import jax.numpy as jnp
  from jax.experimental import checkify

  from deepfound import optim

  params = jnp.zeros(3)
  for opt, index, message in [
      (optim.sag(0.1, 5), 5, r"\[0, 5\)"), (optim.saga(0.1, 5), -1, r"\[0, 5\)"),
      (optim.sag(0.1, 5), 3.7, "integers"), (optim.saga(0.1, 5, batch_size=2), 1, r"shape \(2,\)"),
      (optim.svrg(0.1, 5), 10**6, r"\[0, 5\)")]:
    with pytest.raises(ValueError, match=message):
      extra = dict(refresh_fn=lambda p: (jnp.zeros((5, 3)), p))
      opt.update(jnp.ones((np.size(index), 3)) if np.ndim(index) else jnp.ones(3),
                 opt.init(params), params, index=index, **extra)
  with pytest.raises(ValueError, match="leading batch axis of size 2"):
    opt = optim.sag(0.1, 5, batch_size=2)
    opt.update(jnp.ones(3), opt.init(params), params, index=jnp.array([0, 1]))

  def step(i):
    return checked_index(i, 5)

  checked = jax.jit(checkify.checkify(step))
  assert checked(jnp.int32(4))[0].get() is None
  assert "outside [0, 5)" in checked(jnp.int32(5))[0].get()
  memory.check_index(jnp.arange(2), 5, 2)  # a concrete valid batch passes


def test_sweeps_too_large_are_refused_before_expansion():
  with pytest.raises(SpecError, match="1,000,000 runs, more than the 100,000"):
    expand(parse("optim.learning_rate=logspace(-3, 0, 1000); optim.l0=range(1000)"))
  with pytest.raises(SpecError, match="more than the 100,000"):
    parse("optim.learning_rate=logspace(-3, 0, 1000000000)")


def test_json_files_are_strict():
  from deepfound.strict_json import dumps

  assert dumps(dict(a=float("nan"), b=[1.0, float("inf")])) == '{"a": null, "b": [1.0, null]}'


def test_sweep_into_a_file_or_a_locked_workdir_fails_before_computing(tmp_path):
  from deepfound.experiment.lock import WorkdirLock
  from deepfound.sweep.runner import run_sweep

  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match="exists and is not a directory"):
    run_sweep(_quantum(), "optim.learning_rate=[0.1, 0.2]", str(tmp_path / "file"), log=print)
  with WorkdirLock(str(tmp_path / "busy")):
    with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
      run_sweep(_quantum(), "optim.learning_rate=[0.1, 0.2]", str(tmp_path / "busy"), log=print)
  assert os.listdir(tmp_path / "busy") == [".lock"]  # the refused sweep wrote nothing


def test_shortening_or_a_lost_metrics_file_is_refused_without_writing(tmp_path):
  config = _quantum("sag")
  workdir = str(tmp_path / "run")
  run_experiment(config, workdir, progress=False)
  config.num_steps = 100
  with pytest.raises(ConfigError, match="num_steps = 100 is below the 200 steps"):
    run_experiment(config, workdir, progress=False)
  stored = json.loads((tmp_path / "run" / "config.json").read_text())
  assert stored["config"]["num_steps"] == 200  # untouched by the refused call
  os.remove(tmp_path / "run" / "metrics.jsonl")
  config.num_steps = 400
  with pytest.raises(ConfigError, match="metrics.jsonl is missing or empty"):
    run_experiment(config, workdir, progress=False)


def test_methods_and_problems_of_two_kinds_are_refused():
  import jax
  import jax.numpy as jnp

  from deepfound.optim import driver
  from deepfound.problems import make_problem

  for kwargs, message in [(dict(average_over_seen="no"), "must be a bool"),
                          (dict(sampling="Shuffle"), "sampling must be one of"),
                          (dict(batch_size=0), "batch_size must be a positive integer")]:
    with pytest.raises(ValueError, match=message):
      driver.Method("sag", **kwargs)
  with pytest.raises(ValueError, match=r"svrg_frequency must be in \[1, 2\^31\)"):
    driver.Method("svrg", svrg_frequency=10**13)

  class Both(type(make_problem(np.ones((4, 2)), np.array([1.0, -1, 1, -1])))):
    def draw(self, key, batch_size):
      return self.batch(jnp.zeros((batch_size,), jnp.int32))

  base = make_problem(np.ones((4, 2)), np.array([1.0, -1, 1, -1]))
  both = Both(base.features, base.targets, base.l2)
  with pytest.raises(TypeError, match="both a FiniteSum and an Expectation"):
    driver.init_state(both, driver.Method("sag"), driver.hyperparameters(0.1), jax.random.PRNGKey(0))


@pytest.mark.slow
def test_sweep_marks_a_blow_up_as_diverged(tmp_path):
  from deepfound.sweep.runner import run_sweep

  config = _quantum("sag")
  run_sweep(config, "optim.learning_rate=[0.002, 1000000.0]", str(tmp_path / "sweep"),
            log=lambda _: None)
  rows = [json.loads(line) for line in (tmp_path / "sweep" / "sweep.jsonl").open()]
  assert [r["diverged"] for r in rows] == [False, True]
