"""The spline flow's configs end to end: digits through train.py with the validation split and
the reported best iterate; the flow's keys (a spline key on an affine flow is refused, an old
RealNVP run's config reads back as RealNVP); intensities that do not fit the dequantization."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, config_of, metric_rows

from deepfound.experiment import ConfigError, validate
from deepfound.experiment.build import build_problem
from deepfound.experiment.config import stored_config
from deepfound.problems.generative import NoisyFiniteSum


@pytest.mark.slow
def test_digits_flow_reports_its_best_validation_iterate(tmp_path):
  workdir = str(tmp_path / "run")
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
       "--config=" + os.path.join(ROOT, "configs", "density_digits.py"), f"--workdir={workdir}",
       "--config.num_steps=600", "--config.log_every=50", "--config.checkpoint_every=150",
       "--config.problem.l2=0", "--config.optim.learning_rate=3e-3", "--config.model.num_layers=2",
       "--config.model.hidden=(32,)", "--config.problem.patience=1"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = metric_rows(workdir)[1:]  # the log points after the start
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  valid = [r["valid_nll"] for r in rows]
  best = rows[int(np.argmin(valid))]
  assert summary["selected_by"] == "valid_nll" and summary["selected_step"] == best["step"]
  # The final metrics are those of the selected log point's iterate, recomputed at the end.
  for name in ("valid_nll", "test_nll", "test_bits_per_dim"):
    assert summary[f"final_{name}"] == pytest.approx(best[name], rel=1e-5, abs=1e-4)
  # patience 1: the first log point that is no better stops the run, and the metrics end there.
  assert summary["stopped_early"] and summary["stopped_step"] == best["step"] + 50
  assert rows[-1]["step"] == summary["stopped_step"] < 600
  assert all(b < a for a, b in zip(valid[:-2], valid[1:-1], strict=True))  # improved until the stop
  # 1,348 training images less a fifth: 1,078 train (epoch = steps x 64 / 1,078).
  assert rows[-1]["epoch"] == pytest.approx(rows[-1]["step"] * 64 / 1078)
  assert rows[-1]["test_nll"] < rows[0]["test_nll"]


def test_digits_flow_problem_dequantizes_each_step():
  problem = build_problem(config_of("density_digits"))
  assert isinstance(problem, NoisyFiniteSum) and problem.select_by == "valid_nll"
  assert problem.num_samples == 1078 and problem.validation_samples.shape == (270, 64)
  stored = np.asarray(problem.samples) * 16  # training images stay integer intensities
  np.testing.assert_allclose(stored, np.rint(stored), atol=1e-5)
  test = np.asarray(problem.test_samples) * 17  # test images dequantized once: (k + u) / 17
  assert np.all(test - np.floor(test) > 0)


def test_flow_keys():
  config = config_of("density_2d", "ring", model__transform="affine")
  with pytest.raises(ConfigError, match=r"model.num_bins=16 is ignored by model.transform=affine"):
    validate(config, given=("model.num_bins",))
  validate(config)  # the config's own spline preset, not given: allowed (as a rule's presets)
  with pytest.raises(ConfigError, match="model.transform must be one of spline, affine"):
    validate(config_of("density_2d", "ring", model__transform="planar"))
  # A flow stored before model.transform existed was RealNVP, and reads back so.
  old = config_of("density_2d", "ring,realnvp").to_dict()
  del old["model"]["transform"], old["model"]["mixing"], old["model"]["num_bins"]
  old["model"].pop("tail_bound")
  back = stored_config(old)
  assert (back.model.transform, back.model.mixing) == ("affine", "alternate")
  validate(back)


def test_intensities_must_fit_the_dequantization():
  config = config_of("density_digits", problem__dequantize_levels=15)
  with pytest.raises(ConfigError, match=r"dequantize_levels = 15 expects intensities k/15"):
    build_problem(config)
  config = config_of("density_digits", problem__validation_fraction=0.9999)
  with pytest.raises(ConfigError, match="validation_fraction = 0.9999 leaves 0 training"):
    build_problem(config)
