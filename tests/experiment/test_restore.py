"""restore_run: a run made by run_experiment, reopened, has the run's final parameters (a linear
model and a VAE); an older run's config.json, without keys added since, still reopens (through the
VAE pictures' restore too); a directory without a run is one ConfigError line naming the path."""

import json
import os

import numpy as np
import pytest

from configs import logreg_quantum, vae_digits
from deepfound.errors import ConfigError
from deepfound.experiment import base_config, run_experiment
from deepfound.experiment.build import host_arrays
from deepfound.experiment.outputs import RunFiles
from deepfound.experiment.restore import MissingRun, RestoredRun, restore_run

# keys of base_config that a run made before they were added lacks in its config.json
LATER_KEYS = (("model", "maxout_pieces"), ("problem", "eval_importance_samples"), ("optim", "unroll"),
              ("model", "generator_norm"), ("model", "init_stddev"), ("optim", "ema"))


def _assert_final_params(run: RestoredRun) -> None:
  """The restored state's parameters and reported iterate are those of the run's params.npz."""
  with np.load(RunFiles(run.workdir).params) as saved:
    for prefix, tree in (("params", run.state.params), ("reported", run.params)):
      arrays = host_arrays(tree)
      assert arrays, prefix
      for key, value in arrays.items():
        np.testing.assert_array_equal(value, saved[prefix + key], err_msg=prefix + key)


@pytest.mark.slow
def test_restores_the_final_state_of_a_linear_run(tmp_path):
  config = logreg_quantum.get_config("sgd")
  config.num_steps, config.log_every, config.checkpoint_every = 100, 50, 50
  workdir = str(tmp_path / "run")
  run_experiment(config, workdir, progress=False)
  run = restore_run(workdir)
  assert run.step == 100 and int(run.state.step) == 100
  assert json.loads(run.config.to_json()) == json.loads(config.to_json())
  assert run.setup.method.name == "sgd"
  _assert_final_params(run)
  assert any(np.abs(a).max() > 0 for a in host_arrays(run.params).values())  # it moved from zero


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> str:
  """A 2-latent VAE on digits, two epochs, run by the runner."""
  config = vae_digits.get_config("2")
  config.model.hidden = (16,)
  config.num_steps, config.log_every, config.checkpoint_every = 42, 21, 42
  config.problem.eval_importance_samples, config.problem.eval_test_samples = 4, 10
  workdir = str(tmp_path_factory.mktemp("vae") / "run")
  run_experiment(config, workdir, progress=False)
  return workdir


@pytest.mark.slow
def test_restores_the_final_state_of_a_vae_run(vae_run):
  run = restore_run(vae_run)
  assert run.step == 42 and run.config.model.latent_size == 2
  _assert_final_params(run)


@pytest.mark.slow
def test_an_older_config_json_restores(vae_run, tmp_path):
  """config.json written before LATER_KEYS existed: restore_run fills them at their defaults (a
  bare ConfigDict of the file has no such attribute and build fails), and the VAE pictures' own
  restore (restore_vae) and latent map work on it."""
  from deepfound.figures import generative

  files = RunFiles(vae_run)
  with open(files.config) as f:
    stored = json.load(f)
  for group, key in LATER_KEYS:
    del stored["config"][group][key]
  with open(files.config, "w") as f:
    json.dump(stored, f)
  run = restore_run(vae_run)
  defaults = base_config()
  for group, key in LATER_KEYS:
    assert run.config[group][key] == defaults[group][key]
  _assert_final_params(run)
  vae = generative.restore_vae(vae_run)
  assert vae["step"] == 42 and [row["step"] for row in vae["metrics"]] == [0, 21, 42]
  kernel = np.asarray(vae["model"].decoder.layers[0].kernel[...])
  np.testing.assert_array_equal(kernel, np.asarray(run.params["decoder"]["layers"][0]["kernel"][...]))
  latent = generative.vae_latent_map(run)
  assert latent["latents"].shape == (len(run.setup.problem.test_samples), 2)
  assert np.all(np.isfinite(latent["latents"])) and latent["test_elbo"] == vae["metrics"][-1]["test_elbo"]


def test_no_run_is_one_line_naming_the_path(tmp_path):
  missing = str(tmp_path / "nothing")
  with pytest.raises(MissingRun, match=f"{missing}/config.json not found: {missing} does not exist"):
    restore_run(missing)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ConfigError, match=f"{empty}/config.json not found: {empty} holds no run"):
    restore_run(str(empty))
  (empty / "config.json").write_text(json.dumps(dict(config=dict(checkpoint_every=50))))
  with pytest.raises(MissingRun, match=f"{empty}/checkpoints has no checkpoint yet") as raised:
    restore_run(str(empty))
  assert "\n" not in str(raised.value)
  assert not os.path.exists(empty / "checkpoints")  # nothing is created in a directory read
