"""Data-parallel single runs (``mesh.data``): on 4 simulated CPU devices a run equals the
one-device run (float32 to rounding, float64 to 1e-12), the batch is split (the compiled step
all-reduces), the SAG family's pytree memory takes 1/4 of its bytes per device, a run resumes
on another number of devices with the straight run's parameters, and a bad mesh is one line
and exit status 2.

The 4-device cases run in subprocesses (XLA_FLAGS must be set before JAX starts), side by side;
this process has one device."""

import json
import os
import subprocess
import sys

import jax
import pytest

from configs import logreg_synthetic
from deepfound.errors import ConfigError
from deepfound.experiment import validate
from deepfound.optim import driver
from deepfound.problems import make_problem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICES = 4
FLAGS = f"--xla_force_host_platform_device_count={DEVICES}"
# XLA's CPU backend compiles about a third faster without LLVM's costly passes; the runs compared
# are compiled alike.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

# Runs in a process with 4 CPU devices and prints one JSON object of measurements.
SCRIPT = r"""
import dataclasses, json, re, sys
import numpy as np
import jax
import jax.numpy as jnp
from configs import mlp_digits
from deepfound.experiment import run_experiment, validate
from deepfound.experiment.build import build, host_arrays, on_mesh
from deepfound.experiment.config import precision_scope
from deepfound.experiment.restore import restore_run
from deepfound.optim import driver, game, sharding
from deepfound.errors import ConfigError
from deepfound.sweep.common import set_key

tmp, DEVICES = sys.argv[1], int(sys.argv[2])
out = dict(devices=jax.device_count())


def mlp(method, **changes):
  config = mlp_digits.get_config(method)
  config.model.hidden = (16,)  # 1348 training images: they split over 1, 2 and 4 devices
  config.num_steps, config.log_every, config.checkpoint_every = 84, 42, 42
  for key, value in changes.items():
    set_key(config, key, value)
  return config


def params(workdir):
  with np.load(f"{workdir}/params.npz") as saved:
    return {key: saved[key] for key in saved.files}


def leaves(tree):
  return {str(i): np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}


def max_difference(a, b):
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def all_reduces(compiled):
  return len(re.findall(r"\ball-reduce(?:-start)?\(", compiled.as_text()))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Shift:  # a tiny game: a generator theta + z against a linear critic w (WGAN's V, L2 on w)

  data: jax.Array  # (64, 2)

  def init_params(self):
    return jnp.zeros(2), jnp.ones(2)

  def draw(self, key, batch_size):
    index_key, latent_key = jax.random.split(key)
    index = jax.random.randint(index_key, (batch_size,), 0, self.data.shape[0])
    return self.data[index], jax.random.normal(latent_key, (batch_size, 2))

  def losses(self, params, batch):
    theta, w = params
    real, latents = batch
    value = jnp.mean(real @ w) - jnp.mean((theta + latents) @ w)
    return value, -value + 0.5 * w @ w

  def project(self, w):
    return w

  def evaluation_batch(self):
    return self.data, jnp.zeros_like(self.data)

  def objective(self, params):
    return self.losses(params, self.evaluation_batch())[0]

  def metrics(self, params):
    return {}


# float64 SAG (pytree memory): 42 steps on 4 devices resumed to 84 on 2 through the runner (the
# checkpoint's memory split in 4, restored split in 2), against 84 steps on 1 in one program.
split = f"{tmp}/sag_split"
run_experiment(mlp("sag", precision="float64", num_steps=42, **{"mesh.data": DEVICES}), split,
               progress=False)
summary = run_experiment(mlp("sag", precision="float64", **{"mesh.data": 2}), split,
                         progress=False)
out["sag_resumed_from"] = summary["resumed_from_step"]
out["sag_data_devices"] = summary["data_devices"]
config = mlp("sag", precision="float64")
with precision_scope("float64"):
  setup = build(config)
  state, points = driver.run(setup.problem, setup.method, setup.hyper,
                             jax.random.PRNGKey(config.seed), num_steps=84, log_every=42)
  straight = {"params" + key: value for key, value in host_arrays(state.params).items()}
  straight_objectives = [float(value) for value in points.objective]

  # The SAG state on 4 devices: its per-sample memory split along the samples, the rest
  # replicated.
  config.mesh.data = DEVICES
  setup = on_mesh(config, setup)
  state = driver.init_state(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(0))
  table = jax.tree.leaves(state.opt_state[0].table)
  out["table_bytes"] = [[leaf.nbytes, leaf.addressable_shards[0].data.nbytes] for leaf in table]
  out["replicated_params"] = all(leaf.sharding.is_fully_replicated
                                 for leaf in jax.tree.leaves(state.params))
resumed = params(split)
out["sag_difference"] = max_difference(straight, {k: resumed[k] for k in straight})
# restore_run reopens the run on one device (its setup has no mesh).
run = restore_run(split)
restored = {"params" + key: value for key, value in host_arrays(run.state.params).items()}
out["restored_difference"] = max_difference(restored, {k: resumed[k] for k in restored})
out["restored_devices"] = len(jax.tree.leaves(run.state.params)[0].sharding.device_set)
rows = [json.loads(line) for line in open(f"{split}/metrics.jsonl")]
out["sag_steps"] = [r["step"] for r in rows]
out["sag_objectives"] = [straight_objectives, [r["objective"] for r in rows[1:]]]

# float32 SGD, 8 steps on 4 devices against 1: the batch split, the gradient all-reduced.
config = mlp("sgd", **{"mesh.data": DEVICES})
one_device = build(config)
for name, setup in (("one", one_device), ("split", on_mesh(config, one_device))):
  state = driver.init_state(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(0))
  compiled = driver.run_chunk_jit.lower(setup.problem, setup.method, setup.hyper, state,
                                        num_logs=1, log_every=8).compile()
  out[f"sgd_{name}"] = leaves(compiled(setup.problem, setup.hyper, state)[0].params)
  out[f"sgd_all_reduces_{name}"] = all_reduces(compiled)
out["sgd_difference"] = max_difference(out.pop("sgd_one"), out.pop("sgd_split"))

# The game engine: both players' minibatches split over 4 devices, against 1.
problem = Shift(jax.random.normal(jax.random.PRNGKey(1), (64, 2)) + 3.0)
method = game.GameMethod(driver.Method("sgd"), driver.Method("sgd"), scheme="alternating",
                         batch_size=8)
hyper = game.GameHyper(driver.hyperparameters(0.1), driver.hyperparameters(0.1))
mesh = sharding.data_mesh(DEVICES)
final = {}
for name, (p, m, h) in (("one", (problem, method, hyper)),
                        ("split", (sharding.replicate(problem, mesh), method.with_mesh(mesh),
                                   sharding.replicate(hyper, mesh)))):
  state = game.init_state(p, m, h, jax.random.PRNGKey(0))
  compiled = game.run_chunk_jit.lower(p, m, h, state, num_logs=2, log_every=10).compile()
  final[name] = leaves(compiled(p, h, state)[0].params)
  out[f"game_all_reduces_{name}"] = all_reduces(compiled)
out["game_difference"] = max_difference(final["one"], final["split"])
out["game_moved"] = float(np.abs(final["one"]["0"]).max())

# Refusals, each one ConfigError line.
refusals = {}
for name, changes in (("batch", {"optim.batch_size": 30, "mesh.data": DEVICES}),
                      ("all_devices_batch", {"optim.batch_size": 30, "mesh.data": -1}),
                      ("too_many", {"mesh.data": 8}),
                      ("bgd", {"mesh.data": 2}),
                      ("samples", {"mesh.data": DEVICES, "data.test_fraction": 0.2504})):
  config = mlp("bgd" if name == "bgd" else "sag", **changes)  # 0.2504: 1347 training images
  if name == "bgd":
    config.optim.learning_rate = 0.1
  try:
    validate(config)
    build(config)
    refusals[name] = None
  except ConfigError as e:
    refusals[name] = str(e)
out["refusals"] = refusals
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
  """What ``SCRIPT`` measured in a process with 4 devices (about 25 s of CPU), and the outcome
  of a train.py whose batch does not split, run beside it."""
  tmp = tmp_path_factory.mktemp("data_parallel")
  env = dict(os.environ, XLA_FLAGS=f"{FLAGS} {FAST_COMPILE}", JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT)
  commands = dict(
      script=[sys.executable, "-c", SCRIPT, str(tmp), str(DEVICES)],
      train=[sys.executable, "scripts/train.py", "--config=configs/mlp_digits.py:sgd",
             f"--workdir={tmp / 'refused'}", f"--config.mesh.data={DEVICES}",
             "--config.optim.batch_size=30"])
  processes = {name: subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, command in commands.items()}
  results = {name: (process, *process.communicate(timeout=600))
             for name, process in processes.items()}
  process, stdout, stderr = results["script"]
  assert process.returncode == 0, stderr[-3000:]
  found = json.loads(stdout.strip().splitlines()[-1])
  process, _, stderr = results["train"]
  found["train"] = dict(returncode=process.returncode, stderr=stderr,
                        workdir_exists=(tmp / "refused").exists())
  return found


@pytest.mark.slow
def test_a_data_parallel_run_equals_the_one_device_run(measured):
  assert measured["devices"] == DEVICES
  assert measured["sgd_difference"] <= 1e-6  # float32, 8 steps of an MLP
  assert measured["game_difference"] <= 1e-6 and measured["game_moved"] > 0.1


@pytest.mark.slow
def test_a_run_resumes_on_another_number_of_devices_to_1e_12(measured):
  """float64 SAG: 42 steps on 4 devices, 42 more on 2, against 84 on 1, parameters and
  objectives."""
  assert measured["sag_resumed_from"] == 42 and measured["sag_data_devices"] == 2
  assert measured["sag_steps"] == [0, 42, 84]
  assert measured["sag_difference"] <= 1e-12
  assert measured["restored_difference"] == 0 and measured["restored_devices"] == 1
  straight, resumed = measured["sag_objectives"]
  assert resumed == pytest.approx(straight, rel=1e-12)


@pytest.mark.slow
def test_the_batch_is_split_and_the_gradients_all_reduced(measured):
  assert measured["sgd_all_reduces_one"] == 0 and measured["sgd_all_reduces_split"] >= 1
  assert measured["game_all_reduces_one"] == 0 and measured["game_all_reduces_split"] >= 1


@pytest.mark.slow
def test_the_sag_memory_is_split_along_the_samples(measured):
  assert len(measured["table_bytes"]) == 4  # an MLP's two kernels and two biases
  for whole, per_device in measured["table_bytes"]:
    assert per_device * DEVICES == whole
  assert measured["replicated_params"]


@pytest.mark.slow
def test_meshes_that_do_not_fit_are_refused(measured):
  refusals = measured["refusals"]
  assert "optim.batch_size=30 does not split evenly over mesh.data=4" in refusals["batch"]
  assert "mesh.data=-1 (4 devices)" in refusals["all_devices_batch"]
  assert "mesh.data=8 is more than the 4 devices" in refusals["too_many"]
  assert "optim.name=bgd takes full gradients" in refusals["bgd"]
  assert "1,347 samples do not split evenly" in refusals["samples"]
  assert all("\n" not in line for line in refusals.values())


def test_a_mesh_larger_than_the_devices_is_refused():
  config = logreg_synthetic.get_config("sgd")
  for value, message in ((jax.device_count() + 1, "is more than the"),
                         (0, "mesh.data must be a positive integer or -1"),
                         (True, "mesh.data must be a positive integer or -1")):
    config.mesh.data = value
    with pytest.raises(ConfigError, match=message):
      validate(config)


def test_the_one_device_program_has_no_sharding():
  """Without a mesh (mesh.data=1) the driver traces the program it always had."""
  x, y = jax.numpy.ones((8, 3)), jax.numpy.where(jax.numpy.arange(8) % 2, 1.0, -1.0)
  problem = make_problem(x, y)
  hyper = driver.hyperparameters(0.1)
  for method in (driver.Method("sag", batch_size=2), driver.Method("sgd").with_mesh(None)):
    state = driver.init_state(problem, method, hyper, jax.random.PRNGKey(0))
    jaxpr = jax.make_jaxpr(lambda p, h, s, m=method: driver.run_chunk(
        p, m, h, s, num_logs=1, log_every=2))(problem, hyper, state)
    assert "sharding_constraint" not in str(jaxpr)


@pytest.mark.slow
def test_train_py_refuses_a_batch_that_does_not_split(measured):
  train = measured["train"]
  assert train["returncode"] == 2, train["stderr"]
  lines = train["stderr"].strip().splitlines()
  assert len(lines) == 1 and "optim.batch_size=30 does not split evenly over mesh.data=4" in lines[0]
  assert not train["workdir_exists"]
