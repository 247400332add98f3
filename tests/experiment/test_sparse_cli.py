"""Sparse LIBSVM data through the command line and the runner: labels, notes, tol, memory. One
refusal goes through train.py (a process that imports JAX); the runs and the other refusals are
the call train.py makes (``run_experiment`` with the config its flags give), in this process."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.sparse
from absl import flags
from ml_collections import config_flags
from sklearn.datasets import dump_svmlight_file

from deepfound.data import DataError
from deepfound.experiment import ConfigError, base_config, run_experiment
from deepfound.experiment.build import build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # as train.py does: the config imports configs.logreg_quantum
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


def _parse(data, *args, method="saga"):
  """(config, given keys) as train.py's flags give them for ``train(workdir, data, *args)``."""
  argv = ["train.py", f"--config={CONFIG}:{method}", f"--config.data.path={data}", *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
  values(argv)
  return values["config"].value, config_flags.get_override_values(values["config"])


@pytest.mark.slow
def test_zero_one_labels_are_mapped_with_a_note_and_tol_stops(tmp_path):
  data = tmp_path / "zo.svm"
  _write(data, labels=(0, 1))
  config, given = _parse(data, "--config.num_steps=6000", "--config.log_every=60",
                         "--config.optim.tol=1e-3", "--config.problem.l2=0.01")
  run_experiment(config, str(tmp_path / "run"), progress=False, given=given)
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
  # 100 x 1e6 at density 2e-5 (scipy.sparse.random takes seconds to draw the 2000 places): the
  # last place is the last feature's, so the file holds a million features.
  places = np.append(rng.choice(100 * 1_000_000 - 1, size=1999, replace=False),
                     100 * 1_000_000 - 1)
  x = scipy.sparse.csr_matrix((rng.random(2000), np.divmod(places, 1_000_000)),
                              shape=(100, 1_000_000))
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


@pytest.mark.parametrize("args, message", [
    (["--config.optim.learning_rate=auto", "--config.optim.name=sgd"], "sag and saga"),
    (["--config.problem.l1=0.1", "--config.optim.name=sag"],
     "proximal"),
    (["--config.data.sparse=maybe"], "data.sparse"),
])
def test_bad_settings_are_refused_in_one_line(tmp_path, args, message):
  data = tmp_path / "d.svm"
  _write(data)
  config, given = _parse(data, *args)
  with pytest.raises((ConfigError, DataError)) as error:
    run_experiment(config, str(tmp_path / "run"), progress=False, given=given)
  assert message in str(error.value) and "\n" not in str(error.value)
  assert not (tmp_path / "run").exists()
