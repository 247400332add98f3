"""Multi-process runs through jax.distributed (deepfound/distributed.py): a sweep on two
processes of two CPU devices each writes what one process of four devices writes, bit for bit;
flags that cannot work, and a coordinator that nobody runs, are one line and exit status 2,
within the timeout; the local launcher leaves no process behind."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from deepfound import distributed  # noqa: E402
from deepfound.errors import ConfigError  # noqa: E402
from tests.scale.launch import environment, free_port, launch  # noqa: E402

SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
TRAIN = os.path.join(ROOT, "scripts", "train.py")
QUANTUM = os.path.join(ROOT, "configs", "logreg_quantum.py")
# Six runs of two seeds: two calls of four runs (three and a padding one) on four devices.
SPEC = "optim.learning_rate=[0.01, 0.1, 0.3]; seed=[0, 1]"
# Fields that may differ between equal runs (none of sweep.jsonl's today; summary.json's are
# not compared).
TIMING = {"seconds", "compile_s", "run_seconds", "runs_per_second", "run_steps_per_second"}


def sweep_command(workdir):
  return [sys.executable, SWEEP, f"--config={QUANTUM}:sgd", f"--workdir={workdir}",
          f"--sweep={SPEC}", "--config.num_steps=100", "--config.log_every=50"]


@pytest.mark.parametrize("arguments, message", [
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2),
     "--process_id must be in [0, 2) for --num_processes=2, got 2"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=-1),
     "--process_id must be in [0, 2)"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=0, process_id=0),
     "--num_processes must be >= 1, got 0"),
    (dict(num_processes=2, process_id=0), "go together (or none of them, with --distributed "
     "for auto-detection): missing --coordinator_address"),
    (dict(coordinator_address="127.0.0.1:1234"), "missing --num_processes and --process_id"),
    (dict(coordinator_address="127.0.0.1", num_processes=2, process_id=0),
     "--coordinator_address must be host:port with a port in 1-65535, got '127.0.0.1'"),
    (dict(coordinator_address="host:70000", num_processes=2, process_id=0), "got 'host:70000'"),
    (dict(coordinator_address=":1234", num_processes=2, process_id=0), "got ':1234'"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=0, timeout=0),
     "--distributed_timeout must be > 0 seconds, got 0"),
])
def test_arguments_are_checked_before_jax_is_called(arguments, message):
  with pytest.raises(ConfigError) as error:
    distributed.initialize(**arguments)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_flags_ask_for_nothing_unless_given():
  values = flags.FlagValues()
  distributed.define_flags(values)
  values(["train.py"])
  assert not distributed.initialize_from_flags(values)  # one process, nothing done
  values = flags.FlagValues()
  distributed.define_flags(values)
  values(["train.py", "--process_id=1"])  # any of the three implies --distributed
  with pytest.raises(ConfigError, match="missing --coordinator_address and --num_processes"):
    distributed.initialize_from_flags(values)


def test_one_process_helpers_are_local():
  assert distributed.is_main() and distributed.process_count() == 1
  distributed.barrier("nothing to wait for")
  assert distributed.each_process({"a": 1}) == [{"a": 1}]
  assert distributed.on_main(lambda: {"rows": 3}) == {"rows": 3}
  with pytest.raises(KeyError):  # fn's own error, unchanged
    distributed.on_main(lambda: {}["missing"])
  mesh = Mesh(np.array(jax.devices()), ("runs",))
  across = NamedSharding(mesh, PartitionSpec("runs"))
  values = np.arange(2.0 * len(jax.devices()))
  tree = distributed.put({"x": values, "k": jax.random.PRNGKey(3)},
                         NamedSharding(mesh, PartitionSpec()))
  assert tree["x"].sharding.is_fully_addressable
  gathered = distributed.gather({"x": distributed.put(values, across), "k": tree["k"]})
  assert isinstance(gathered["x"], np.ndarray)
  np.testing.assert_array_equal(gathered["x"], values)
  np.testing.assert_array_equal(gathered["k"], np.asarray(jax.random.PRNGKey(3)))


def test_launch_appends_the_coordinator_flags():
  show = [sys.executable, "-c", "import os, sys; print(sys.argv[1:], os.environ['XLA_FLAGS'])"]
  results = launch([show, show], devices_per_process=3, timeout=30)
  assert [r.returncode for r in results] == [0, 0]
  port = results[0].stdout.split("127.0.0.1:")[1].split("'")[0]
  for index, result in enumerate(results):
    assert (f"['--coordinator_address=127.0.0.1:{port}', '--num_processes=2', "
            f"'--process_id={index}'] --xla_force_host_platform_device_count=3") in result.stdout


def test_launch_kills_every_process_when_one_fails_or_time_runs_out(tmp_path):
  """The survivors of a failure are killed after the grace period, with the processes they
  started (their process group); past the timeout, every process is."""

  def alive(pid):
    try:
      os.kill(pid, 0)
      with open(f"/proc/{pid}/stat") as f:  # a zombie awaiting its reaper is dead
        return f.read().split(")")[-1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
      return False

  pid_file = tmp_path / "grandchild"
  stays = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
  start = time.perf_counter()
  results = launch([[sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"],
                    stays], coordinator_flags=False, grace=0.3, timeout=30)
  assert time.perf_counter() - start < 10
  assert [r.returncode for r in results] == [3, -9]
  deadline = time.monotonic() + 5
  while alive(int(pid_file.read_text())) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not alive(int(pid_file.read_text()))

  pid_file.unlink()
  with pytest.raises(TimeoutError, match="still running after 1 s"):
    launch([stays], coordinator_flags=False, timeout=1)
  assert pid_file.read_text().strip()  # sh started its child within the second
  deadline = time.monotonic() + 5
  while alive(int(pid_file.read_text())) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not alive(int(pid_file.read_text()))


def _read(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "sweep.jsonl"))]
  with np.load(os.path.join(workdir, "curves.npz")) as npz:
    curves = {name: npz[name] for name in npz.files}
  return rows, curves, json.load(open(os.path.join(workdir, "summary.json")))


@pytest.mark.slow
def test_a_sweep_on_two_processes_equals_one_process(tmp_path):
  """Two processes of two devices against one of four (run at the same time): the same rows and
  curves, bit for bit; process 0 alone prints the progress; summary.json counts the processes."""
  one = subprocess.Popen(sweep_command(tmp_path / "one"), cwd=ROOT, env=environment(4),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    two = launch([sweep_command(tmp_path / "two")] * 2, devices_per_process=2, timeout=120)
    one_stderr = one.communicate(timeout=120)[1]
  finally:
    one.kill()
    one.wait()
  assert one.returncode == 0, one_stderr
  assert [r.returncode for r in two] == [0, 0], [r.stderr for r in two]
  assert "6 runs in 1 program(s)" in two[0].stderr
  assert "call 2/2: 3 runs x 100 steps on 4 device(s)" in two[0].stderr
  assert two[1].stderr == ""  # progress and the last line come from process 0 only

  rows, curves, summary = _read(tmp_path / "two")
  rows_one, curves_one, summary_one = _read(tmp_path / "one")
  assert len(rows) == 6 and not any(r["diverged"] for r in rows)
  assert [{k: v for k, v in r.items() if k not in TIMING} for r in rows] == [
      {k: v for k, v in r.items() if k not in TIMING} for r in rows_one]
  assert curves.keys() == curves_one.keys()
  for name in curves:
    np.testing.assert_array_equal(curves[name], curves_one[name], err_msg=name)
  assert (summary["process_count"], summary_one["process_count"]) == (2, 1)
  assert len(summary["devices"]) == len(summary_one["devices"]) == 4
  assert summary["runs_per_batch"] == summary_one["runs_per_batch"] == [4]
  assert summary["best"] == summary_one["best"]
  assert ".sweep.partial" not in os.listdir(tmp_path / "two")


# deepfound.distributed alone, without the package's imports (a second or two less): the package
# is made of its folder, its __init__ left unrun.
LIGHT_IMPORT = f"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location(
    "deepfound", os.path.join({ROOT!r}, "deepfound", "__init__.py"),
    submodule_search_locations=[os.path.join({ROOT!r}, "deepfound")])
sys.modules["deepfound"] = importlib.util.module_from_spec(spec)
from deepfound import distributed
"""


@pytest.mark.slow
def test_refusals_are_one_line_and_exit_2_within_the_timeout(tmp_path):
  """Run at the same time: a coordinator that nobody runs (a 3 s timeout; JAX's own deadline,
  later, would abort the process with a stack trace), a process id out of range, and (through
  the library alone) a coordinator that its peer never joins. The other refusals take the same
  way out (initialize's ConfigError): test_arguments_are_checked_before_jax_is_called."""
  address = f"127.0.0.1:{free_port()}"
  cases = {
      "unreachable": ([sys.executable, SWEEP, f"--config={QUANTUM}:sgd", "--sweep=seed=[0]",
                       f"--workdir={tmp_path / 'unreachable'}", f"--coordinator_address={address}",
                       "--num_processes=2", "--process_id=1", "--distributed_timeout=3"],
                      f"error: could not reach the coordinator at {address} within 3 s "
                      "(--distributed_timeout): nothing accepts connections there"),
      "out of range": ([sys.executable, TRAIN, f"--config={QUANTUM}:sgd",
                        f"--workdir={tmp_path / 'range'}", f"--coordinator_address={address}",
                        "--num_processes=2", "--process_id=2"],
                       "error: --process_id must be in [0, 2) for --num_processes=2, got 2"),
      "alone": ([sys.executable, "-c", LIGHT_IMPORT + (
          "try:\n"
          f"  distributed.initialize('127.0.0.1:{free_port()}', 2, 0, timeout=2)\n"
          "except Exception as e:\n"
          "  print(f'error: {e}', file=sys.stderr, flush=True)\n"
          "  os._exit(2)\n")],
                "was not joined by all 2 processes within 2 s (--distributed_timeout)"),
  }
  processes = {name: subprocess.Popen(command, cwd=ROOT, env=environment(1), text=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for name, (command, _) in cases.items()}
  try:
    for name, process in processes.items():
      stderr = process.communicate(timeout=60)[1]
      assert process.returncode == 2, (name, stderr)
      lines = stderr.strip().splitlines()
      assert len(lines) == 1 and cases[name][1] in lines[0], (name, stderr)
  finally:
    for process in processes.values():
      process.kill()
      process.wait()
  assert not (tmp_path / "unreachable").exists() and not (tmp_path / "range").exists()


def _train_command(workdir, *flags):
  return [sys.executable, TRAIN, f"--config={os.path.join(ROOT, 'configs', 'mlp_digits.py')}:sgd",
          f"--workdir={workdir}", "--config.model.hidden=(16,)", "--config.num_steps=40",
          "--config.log_every=20", "--config.checkpoint_every=20", "--progress=false", *flags]


@pytest.mark.slow
def test_a_data_parallel_net_run_on_two_processes_equals_the_one_device_run(tmp_path):
  """The digits MLP with its minibatch split over 2 processes x 2 devices (mesh.data=-1) against
  the same run on one device (run at the same time): the same parameters to float32 rounding;
  process 0 alone writes the workdir (process 1 prints nothing), summary.json counts both."""
  one = subprocess.Popen(_train_command(tmp_path / "one"), cwd=ROOT, env=environment(1),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    two = launch([_train_command(tmp_path / "two", "--config.mesh.data=-1")] * 2,
                 devices_per_process=2, timeout=150)
    one_stderr = one.communicate(timeout=150)[1]
  finally:
    one.kill()
    one.wait()
  assert one.returncode == 0, one_stderr
  assert [r.returncode for r in two] == [0, 0], [r.stderr[-2000:] for r in two]
  assert two[1].stderr == ""
  with open(tmp_path / "two" / "summary.json") as f:
    summary = json.load(f)
  assert (summary["data_devices"], summary["process_count"], summary["step"]) == (4, 2, 40)
  with np.load(tmp_path / "one" / "params.npz") as a, np.load(tmp_path / "two" / "params.npz") as b:
    assert a.files == b.files
    for name in a.files:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)
  lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [0, 20, 40]
