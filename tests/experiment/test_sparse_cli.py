"""Sparse LIBSVM data through the command line and the runner: labels, notes, tol, memory."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import dump_svmlight_file

from deepfound.experiment import base_config, run_experiment
from deepfound.experiment.build import build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "scripts", "train.py")
CONFIG = os.path.join(ROOT, "configs", "logreg_libsvm.py")


def _write(path, n=60, p=500, labels=(-1, 1), seed=0, n_features=None):
  rng = np.random.default_rng(seed)
  x = scipy.sparse.random(n, p, density=0.02, random_state=seed, format="csr")
  y = np.asarray(labels)[rng.integers(0, len(labels), size=n)]
  dump_svmlight_file(x, y, str(path), zero_based=False)
  return x, y


def train(workdir, data, *args, method="saga"):
  command = [sys.executable, TRAIN, f"--config={CONFIG}:{method}", f"--workdir={workdir}",
             f"--config.data.path={data}", *args]
  return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_zero_one_labels_are_mapped_with_a_note_and_tol_stops(tmp_path):
  data = tmp_path / "zo.svm"
  _write(data, labels=(0, 1))
  result = train(tmp_path / "run", data, "--config.num_steps=6000", "--config.log_every=60",
                 "--config.optim.tol=1e-3", "--config.problem.l2=0.01")
  assert result.returncode == 0, result.stderr
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  notes = " ".join(config["resolved"]["notes"])
  assert "labels {0, 1} mapped to {-1, +1}" in notes and "run sparse" in notes
  assert "optim.learning_rate=auto" in notes
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["converged"] is True and 1 <= summary["converged_epoch"] < 100
  assert summary["step"] < 6000  # it stopped early
  assert summary["suboptimality"] < 1e-3


@pytest.mark.slow
def test_other_labels_are_refused(tmp_path):
  data = tmp_path / "twelve.svm"
  _write(data, labels=(1, 2))
  result = train(tmp_path / "run", data)
  assert result.returncode == 2
  assert result.stderr.strip().count("\n") == 0
  assert "-1/+1 or 0/1" in result.stderr and "1, 2" in result.stderr
  assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow
def test_a_million_features_stay_sparse(tmp_path):
  data = tmp_path / "wide.svm"
  rng = np.random.default_rng(0)
  x = scipy.sparse.random(100, 1_000_000, density=2e-5, random_state=0, format="csr")
  dump_svmlight_file(x, np.where(rng.random(100) > 0.5, 1, -1), str(data), zero_based=False)
  config = base_config()
  config.data.name, config.data.path = "libsvm", str(data)
  config.optim.name, config.optim.learning_rate = "sag", "auto"
  config.problem.l2, config.num_steps, config.log_every = 0.01, 200, 100
  config.precision = "float64"
  with jax.enable_x64(True):
    setup = build(config)
  problem = setup.problem
  data_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(problem))
  assert type(problem).__name__ == "SparseLinearFiniteSum"
  assert data_bytes < 1_000_000  # dense: 100 x 1e6 x 8 bytes = 800 MB
  summary = run_experiment(config, str(tmp_path / "run"), progress=False)
  assert summary["status"] == "complete" and np.isfinite(summary["objective"])
  assert summary["suboptimality"] >= -1e-9


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [
    (["--config.optim.learning_rate=auto", "--config.optim.name=sgd"], "sag and saga"),
    (["--config.problem.l1=0.1", "--config.optim.name=sag"],
     "proximal"),
    (["--config.data.sparse=maybe"], "data.sparse"),
])
def test_bad_settings_exit_2(tmp_path, flags, message):
  data = tmp_path / "d.svm"
  _write(data)
  result = train(tmp_path / "run", data, *flags)
  assert result.returncode == 2, result.stderr
  assert message in result.stderr and result.stderr.strip().count("\n") == 0
