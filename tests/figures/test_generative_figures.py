"""The pictures of section 17.4 from small synthetic inputs: each drawing function writes a PNG and
its JSON, and a missing input is a MissingInput that names it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deepfound.data.mixtures import MIXTURES
from deepfound.figures import generative

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS, LOGS, POINTS, GRID = 2, 12, 60, 10


def _case(name: str, rng: np.random.Generator) -> dict:
  """A bench.json case of the shape scripts/bench_generative.py writes, with small arrays."""
  family, _, data = name.partition("_")
  data = data.split("_")[0]
  curves = dict(step=(1000 * np.arange(1, LOGS + 1)).tolist(),
                objective=rng.random((SEEDS, LOGS)).tolist())
  mean = dict(objective=0.1)
  case = dict(mean=mean, sd={}, per_seed=dict(objective=[0.1] * SEEDS), curves=curves, num_seeds=SEEDS,
              num_steps=1000 * LOGS,
              rule=name.rsplit("_", 1)[-1] if "10k" in name else "adam", pictures={},
              config=dict(data=dict(name="digits" if family == "ae" else data, num_samples=10_000),
                          optim=dict(learning_rate=1e-3, batch_size=16)))
  if family == "ae":
    mean.update(reconstruction_mse=0.03 - 0.001 * len(name), pca_mse=0.028 - 0.001 * len(name))
    return case
  mixture = MIXTURES[data]
  test = mixture.sample(rng, POINTS)[0]
  case["pictures"] = dict(test=test.tolist(), samples=(test + 0.02 * rng.normal(size=test.shape)).tolist())
  k = mixture.num_modes
  curves.update(modes_captured=rng.integers(0, k + 1, (SEEDS, LOGS)).tolist(),
                high_quality_fraction=rng.random((SEEDS, LOGS)).tolist())
  mean.update(modes_captured=k - 0.5, high_quality_fraction=0.9, mode_kl=0.01)
  if family in ("gmm", "flow", "realnvp"):
    axis = np.linspace(-1.2, 1.2, GRID) * (1 if data == "ring" else 4.5)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1)
    case["pictures"].update(grid_x=axis.tolist(), grid_y=axis.tolist(),
                            log_density=np.asarray(mixture.log_density(grid)).tolist())
    curves["test_nll"] = (1.0 + rng.random((SEEDS, LOGS))).tolist()
    mean.update(test_nll=1.2, kl_gap=0.01, entropy=1.0)
  else:  # a push-forward: its samples at four points of training, from far off to on the modes
    on_modes = mixture.means[np.arange(POINTS) % k]
    case["pictures"]["snapshots"] = dict(
        step=[1500, 3000, 6000, 12000],
        samples=[(on_modes + shift).tolist() for shift in (1.0, 0.5, 4 * mixture.sd, 0.0)])
  return case


@pytest.fixture(scope="module")
def bench():
  rng = np.random.default_rng(0)
  names = [*generative.DENSITY_CASES, *generative.PUSHFORWARD_CASES, *generative.FLOW_RULES,
           "ae_linear_2", "ae_linear_8", "ae_linear_16", "ae_mlp_8"]
  cases = {name: _case(name, rng) for name in names}
  diverged = cases["flow_ring_10k_sgd"]  # bench.json writes a diverged seed's NaNs as null
  diverged["per_seed"]["objective"][1] = None
  diverged["curves"]["test_nll"][1] = [None] * LOGS
  return dict(cases=cases)


def _written(out, name: str) -> None:
  assert os.path.getsize(os.path.join(out, f"{name}.png")) > 5_000
  with open(os.path.join(out, f"{name}.json")) as f:
    assert json.load(f)["figure"] == name


@pytest.mark.slow
def test_bench_pictures(tmp_path, bench):
  data = generative.pushforward_training(str(tmp_path), bench)
  _written(tmp_path, "pushforward_training")
  # The high-quality share of each snapshot: 0 off the modes (shifts 1, 0.5, 4 sd), 1 on them.
  assert [data["numbers"]["mmd_grid"][step]["high_quality_fraction"]
          for step in ("1500", "3000", "6000", "12000")] == [0.0, 0.0, 0.0, 1.0]
  for draw in (generative.density_2d, generative.pushforward_2d, generative.modes_curves,
               generative.flow_rules):
    data = draw(str(tmp_path), bench)
    _written(tmp_path, draw.__name__)
  assert data["final"]["flow_ring_10k_sgd"]["diverged_seeds"] == 1
  assert "1 diverged" in data["series"][0]["label"]
  rows = [dict(step=600 * k, epoch=float(k), objective=200.0 / (k + 1), test_elbo=-210.0 / (k + 1))
          for k in range(12)]
  data = generative.training_curves(str(tmp_path), bench, rows)
  _written(tmp_path, "training_curves")
  assert set(data["final"]) == {"vae", *generative.DENSITY_CASES}


def test_image_pictures(tmp_path, bench):
  rng = np.random.default_rng(1)
  digits = rng.random((10, 64))
  reconstructions = dict(original=digits, code_size=8, rows={"linear AE": digits, "PCA": digits[::-1]},
                         test_mse={"linear AE": 0.02, "PCA": 0.02})
  data = generative.autoencoder_digits(str(tmp_path), reconstructions, bench)
  _written(tmp_path, "autoencoder_digits")
  assert data["bench_mse"]["train_linear_8"] == bench["cases"]["ae_linear_8"]["mean"]["reconstruction_mse"]
  generative.vae_mnist(str(tmp_path), dict(samples=rng.random((100, 784)), originals=rng.random((20, 784)),
                                           reconstructions=rng.random((20, 784)), step=600, epoch=1.0))
  _written(tmp_path, "vae_mnist")
  generative.vae_digits_latent(str(tmp_path), dict(latents=rng.normal(size=(40, 2)),
                                                   labels=rng.integers(0, 10, 40),
                                                   decoded=rng.random((9, 64))))
  _written(tmp_path, "vae_digits_latent")


def test_partial_bench_draws_what_is_there(tmp_path, bench):
  partial = dict(cases={"gmm_ring": bench["cases"]["gmm_ring"]})
  data = generative.density_2d(str(tmp_path), partial)
  assert data["missing"] == [n for n in generative.DENSITY_CASES if n != "gmm_ring"]
  assert list(data["numbers"]) == ["gmm_ring"]
  with pytest.raises(generative.MissingInput, match="mmd_ring"):
    generative.pushforward_2d(str(tmp_path), partial)


def test_missing_inputs_fail_clearly(tmp_path):
  out, empty = str(tmp_path), dict(cases={})
  with pytest.raises(generative.MissingInput, match="nope.json not found.*bench_generative.py"):
    generative.load_bench(str(tmp_path / "nope.json"))
  for draw, case in ((generative.density_2d, "gmm_ring"), (generative.pushforward_2d, "mmd_ring"),
                     (generative.pushforward_training, "mmd_ring"),
                     (generative.modes_curves, "gmm_ring"), (generative.flow_rules, "flow_ring_10k_sag")):
    with pytest.raises(generative.MissingInput, match=case):
      draw(out, empty)
  with pytest.raises(generative.MissingInput, match="ae_linear_2"):
    generative.autoencoder_digits(out, None, empty)
  with pytest.raises(generative.MissingInput, match="samples"):
    generative.vae_mnist(out, {})
  with pytest.raises(generative.MissingInput, match="latents"):
    generative.vae_digits_latent(out, {})
  with pytest.raises(generative.MissingInput, match="metrics"):
    generative.training_curves(out, empty, None)
  with pytest.raises(generative.MissingInput, match="config.json not found"):
    generative.restore_vae(str(tmp_path / "no_run"))
  assert not any(name.endswith(".png") for name in os.listdir(tmp_path))


def test_make_all_skips_what_is_missing(tmp_path, bench):
  path = tmp_path / "bench.json"
  path.write_text(json.dumps(dict(cases={"gmm_ring": bench["cases"]["gmm_ring"]})))
  out = str(tmp_path / "out")
  summary = generative.make_all(out, str(path), str(tmp_path / "no_run"), None, log=lambda line: None)
  assert set(summary["drawn"]) == {"density_2d", "modes_curves", "training_curves"}
  assert "config.json not found" in summary["skipped"]["vae_mnist"]
  with open(os.path.join(out, "figures.json")) as f:
    assert json.load(f)["skipped"].keys() == summary["skipped"].keys()


@pytest.mark.slow
def test_script_without_bench_is_one_line_exit_2(tmp_path):
  missing = str(tmp_path / "bench.json")
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "generative_figures.py"),
                           f"--out={tmp_path}", "--notrain"], capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 2
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and missing in lines[0] and "scripts/bench_generative.py" in lines[0]



def test_restore_vae_from_a_checkpoint(tmp_path):
  """A run directory as the runner leaves it (config.json, metrics, a checkpoint of a state whose
  parameters are not the initial ones): the picture's VAE has the checkpoint's parameters."""
  import jax

  from configs import vae_digits
  from deepfound.experiment import build
  from deepfound.experiment.checkpoint import Checkpointer
  from deepfound.experiment.outputs import RunFiles, write_json
  from deepfound.optim import driver

  config = vae_digits.get_config("2")
  config.model.hidden = (16,)
  workdir = str(tmp_path / "run")
  setup = build.build(config)
  state = driver.init_state(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(0))
  state = state._replace(params=jax.tree.map(lambda p: p + 0.5, state.params))
  files = RunFiles(workdir)
  os.makedirs(workdir)
  write_json(files.config, dict(config=json.loads(config.to_json())))
  files.write_metrics([dict(step=s, epoch=s / 21, objective=40.0 - s, test_elbo=s - 41.0)
                       for s in (0, 21, 42)])
  checkpointer = Checkpointer(workdir)
  checkpointer.save(21, state)
  checkpointer.close()
  run = generative.restore_vae(workdir)
  assert run["step"] == 21 and [row["step"] for row in run["metrics"]] == [0, 21]
  kernel = np.asarray(run["model"].decoder.layers[0].kernel[...])
  np.testing.assert_array_equal(kernel, np.asarray(state.params["decoder"]["layers"][0]["kernel"][...]))
  data = generative.vae_mnist(str(tmp_path), generative.vae_images(run, num_samples=20,
                                                                     num_reconstructions=10))
  _written(tmp_path, "vae_mnist")
  assert data["step"] == 21 and data["epoch"] == 1.0 and data["test_elbo"] == -20.0


@pytest.mark.slow
def test_flow_digits_picture(tmp_path):
  rng = np.random.default_rng(3)
  case = dict(mean=dict(final_test_bits_per_dim=2.1, final_test_nll=-88.0, selected_step=3000.0),
              sd={}, num_seeds=2, per_seed=dict(objective=[1.0, 1.0]),
              pictures=dict(test=rng.random((64, 64)).tolist(), samples=rng.random((64, 64)).tolist()))
  data = generative.flow_digits(str(tmp_path), dict(cases={"flow_digits": case}))
  _written(tmp_path, "flow_digits")
  assert data["missing"] == ["realnvp_digits"]
  assert data["numbers"]["flow_digits"]["final_test_bits_per_dim"] == 2.1
  with pytest.raises(generative.MissingInput, match="flow_digits"):
    generative.flow_digits(str(tmp_path), dict(cases={}))
