"""The pictures of section 17.4.3 from small synthetic inputs (bench.json and sweep.json of the
shapes scripts/bench_gan.py writes) and a tiny digits GAN run: scripts/gan_figures.py end to end,
each PNG written and not blank, a missing input skipped with a line."""

import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from deepfound.data.mixtures import MIXTURES
from deepfound.figures import gans

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS, LOGS, POINTS = 2, 2, 50


def _case(data: str, rng: np.random.Generator, pack: int = 1) -> dict:
  """A bench.json case as scripts/bench_gan.py writes it, with few points."""
  mixture = MIXTURES[data]
  samples = [(mixture.sample(rng, POINTS)[0] + 0.1 * rng.normal(size=(POINTS, 2))).tolist()
             for _ in range(LOGS)]
  modes = rng.integers(0, mixture.num_modes + 1, (SEEDS, LOGS)).astype(float).tolist()
  modes[1][0] = None  # a diverged seed's NaN is written as null
  hq = rng.random((SEEDS, LOGS)).tolist()
  return dict(config=dict(data=dict(name=data), problem=dict(loss="js", pack=pack),
                          optim=dict(scheme="alternating", discriminator_steps=1)),
              curves=dict(step=[100, 200], modes_captured=modes, high_quality_fraction=hq, mode_kl=hq),
              samples=samples, mean=dict(modes_captured=3.0), sd=dict(modes_captured=1.0),
              num_seeds=SEEDS, num_steps=200, diverged=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  rng = np.random.default_rng(0)
  folder = tmp_path_factory.mktemp("inputs")
  bench = dict(cases=dict(ring_js=_case("ring", rng), grid_js_pack2=_case("grid", rng, pack=2)), facts={})
  last = dict(modes_captured=rng.integers(0, 9, (2, 3, 2)).astype(float).tolist(),
              high_quality_fraction=rng.random((2, 3, 2)).tolist())
  last["modes_captured"][1][2] = [None, None]  # every seed of a cell diverged
  sweep = dict(generator_rates=[1e-4, 1e-3], discriminator_rates=[3e-5, 1e-4, 1e-3], num_seeds=2,
               last=last, case="ring_js", num_steps=200, diverged=2)
  (folder / "bench.json").write_text(json.dumps(bench))
  (folder / "sweep.json").write_text(json.dumps(sweep))
  return folder, bench, sweep


def _drawn(path: str) -> None:
  """A PNG of some size, with more than one colour in it."""
  assert os.path.getsize(path) > 10_000, path
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
  assert float(image[..., :3].std()) > 0.05, f"{path} looks blank"


@pytest.mark.slow
def test_script_draws_every_picture(tmp_path, inputs):
  folder, _, _ = inputs
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "gan_figures.py"), f"--out={out}",
       f"--bench={folder / 'bench.json'}", f"--sweep={folder / 'sweep.json'}", "--digits_steps=40",
       "--digits_points=2", "--json"],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 0, result.stderr
  names = ("samples_ring", "samples_grid", "modes_curves", "rate_sweep", "digits_samples", "digits_curves")
  for name in names:
    _drawn(str(out / f"{name}.png"))
    with open(out / f"{name}.json") as f:
      assert json.load(f)["figure"] == name
  with open(out / "figures.json") as f:
    summary = json.load(f)
  assert set(summary["drawn"]) == set(names) and "mnist_samples" in summary["skipped"]
  assert "mnist_over_training" in summary["skipped"]
  with open(out / "digits_curves.json") as f:
    digits = json.load(f)
  assert {"classes_covered", "class_kl", "frechet_distance"} <= set(digits["final"])
  assert len(digits["series"][0]["x"]) == 8  # 4 log points of the curves a sample grid
  with open(out / "digits_samples.json") as f:
    assert json.load(f)["steps"] == [20, 40]
  assert not os.path.exists(out / "mnist_samples.png")


def test_drawing_functions(tmp_path, inputs):
  _, bench, sweep = inputs
  out = str(tmp_path)
  data = gans.samples_over_training(out, bench, "ring")
  assert list(data["numbers"]) == ["ring_js"]
  assert [p["step"] for p in data["numbers"]["ring_js"]] == [100, 200]
  data = gans.modes_curves(out, bench)
  assert {s["case"] for s in data["series"]} == {"ring_js", "grid_js_pack2"}
  data = gans.rate_sweep(out, sweep)
  mean = np.array(data["numbers"]["modes_captured"]["mean"], np.float64)
  assert mean.shape == (2, 3) and np.isnan(mean[1, 2]) and np.isfinite(mean[0]).all()
  for name in ("samples_ring", "modes_curves", "rate_sweep"):
    _drawn(os.path.join(out, f"{name}.png"))
    assert not os.path.exists(os.path.join(out, f"{name}.json"))  # PNG only unless with_json


def test_missing_inputs_are_skipped(tmp_path):
  out = str(tmp_path / "out")
  lines = []
  summary = gans.make_all(out, str(tmp_path / "bench.json"), str(tmp_path / "sweep.json"), None,
                          log=lines.append)
  assert summary["drawn"] == {}
  assert "bench_gan.py" in summary["skipped"]["modes_curves"]
  assert "sweep.json not found" in summary["skipped"]["rate_sweep"]
  assert any(line.startswith("skipped") for line in lines)
  with pytest.raises(gans.MissingInput, match="no grid case"):
    gans.samples_over_training(out, dict(cases={}), "grid")
  with pytest.raises(gans.MissingInput, match="config.json not found"):
    gans.restore_gan(str(tmp_path / "no_run"))
  assert not os.path.exists(out) or not any(n.endswith(".png") for n in os.listdir(out))


def test_mnist_grids_over_training_are_28_by_28(tmp_path):
  rng = np.random.default_rng(0)
  run = dict(images=rng.uniform(size=(2, 100, 784)), steps=[0, 50, 100], grid_index=[1, 2],
             extras=dict(classes_covered=np.array([1.0, 9.0, 10.0]),
                         class_kl=np.array([2.3, 0.2, 0.04])),
             data="mnist", source="test")
  data = gans.digits_samples(str(tmp_path), run, with_json=True, name="mnist_over_training")
  assert data["steps"] == [50, 100] and data["metrics"]["class_kl"] == [0.2, 0.04]
  _drawn(str(tmp_path / "mnist_over_training.png"))
  with open(tmp_path / "mnist_over_training.json") as f:
    assert json.load(f)["figure"] == "mnist_over_training"
