"""Hostile data files (issue 24): every bad LIBSVM line, value or weight is one DataError line that
names the file and line; a stray index or an outlying value never turns into a long run, a huge
E* solve or a run reported as converged that never moved."""

import os
import subprocess
import sys
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from deepfound.data import DataError, check_range, get_dataset, load_libsvm, load_sample_weights
from deepfound.errors import ConfigError
from deepfound.experiment import base_config
from deepfound.experiment.build import build, build_problem, problem_constants
from deepfound.optim import driver
from deepfound.problems import make_problem, make_sparse_problem
from deepfound.problems.linear import normalized_weights
from deepfound.problems.optimum import OptimumTooLarge, solve_linear_optimum

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Five ordinary samples over features 1..4; line 3 is the one the tests spoil.
GOOD_LINES = ["+1 1:0.5 3:1.5", "-1 2:1 4:-0.5", "+1 1:1 2:0.25", "-1 3:-1 4:2", "+1 2:0.75 3:1"]


def write_libsvm(tmp_path, third_line: str, name: str = "data.svm") -> str:
  lines = list(GOOD_LINES)
  lines[2] = third_line
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def libsvm_config(path: str, precision: str = "float32"):
  config = base_config()
  config.data.name, config.data.path = "libsvm", path
  config.model.name, config.precision = "linear", precision
  config.optim.name, config.optim.learning_rate = "saga", "auto"
  return config


def test_index_zero_is_refused_not_read_as_zero_based(tmp_path):
  path = tmp_path / "zero.svm"
  # A comment and a blank line first: the line number is the file's, not the sample's.
  path.write_text("# written by hand\n\n+1 1:0.5 3:1.5\n-1 0:2 2:1\n+1 2:0.25\n")
  with pytest.raises(DataError, match="zero.svm, line 4: index 0: LIBSVM indices start at 1 "):
    load_libsvm(str(path))
  # Without the index 0 the same file is one-based: feature 1 is column 0.
  path.write_text("+1 1:0.5 3:1.5\n-1 2:1\n")
  x, _ = load_libsvm(str(path))
  np.testing.assert_array_equal(x.toarray(), [[0.5, 0, 1.5], [0, 1, 0]])


@pytest.mark.parametrize("line,problem", [
    ("+1 3 4:0.5", "'3' is not an index:value pair"),
    (f"+1 {2**40}:2",
     "index 1,099,511,627,776 is above the largest supported index, 2,147,483,647"),
    ("+1 2:1 2:3", "index 2 follows index 2: indices must increase along a line"),
    ("+1 3:1 2:3", "index 2 follows index 3: indices must increase along a line"),
    ("+1 -2:1", "index -2: LIBSVM indices start at 1 (a zero-based file needs every index "
                "raised by 1)"),
    ("+1 1.5:2", "the index '1.5' of '1.5:2' is not an integer"),
    ("+1 1:abc", "the value 'abc' of index 1 is not a number"),
    ("+1 1:1e400", "the value '1e400' of index 1 is NaN or infinite"),
    ("+1 1:nan", "the value 'nan' of index 1 is NaN or infinite"),
    ("inf 1:2", "the label 'inf' is NaN or infinite"),
    ("yes 1:2", "the label 'yes' is not a number"),
    ("+1 1:", "the value '' of index 1 is not a number"),
])
def test_every_bad_line_is_named(tmp_path, line, problem):
  path = write_libsvm(tmp_path, line)
  with pytest.raises(DataError) as error:
    load_libsvm(path, binary=False)
  assert str(error.value) == f"malformed LIBSVM file {path}, line 3: {problem}"


def test_values_that_overflow_the_precision_are_refused_at_load(tmp_path):
  path = write_libsvm(tmp_path, "+1 1:1e39 2:1")
  with pytest.raises(DataError, match=r"line 3: the value 1e\+39 overflows float32 \(largest "):
    build_problem(libsvm_config(path, "float32"))
  # float64 holds it, and its square (1e78) too.
  check_range(get_dataset("libsvm").load(libsvm_config(path).data), "float64", "here")
  path = write_libsvm(tmp_path, "+1 1:1e300", name="huge.svm")
  with pytest.raises(DataError, match="line 3: its squared norm overflows float64"):
    build_problem(libsvm_config(path, "float64"))


def test_a_stray_index_is_refused_with_its_line(tmp_path):
  path = write_libsvm(tmp_path, "+1 1:1 100000000:0.5")
  with pytest.raises(DataError) as error:
    build_problem(libsvm_config(path))
  message = str(error.value)
  assert "100,000,000 feature columns for 10 non-zero values (5 columns used)" in message
  assert "the highest index, 100,000,000, is on line 3" in message and "\n" not in message


def test_the_optimum_leaves_out_empty_columns_and_estimates_its_memory():
  rng = np.random.default_rng(0)
  num_columns = 2_000_000  # vectors of 16 MB: a solve over every column would hold ~400 MB
  x = scipy.sparse.random(40, 6, density=0.5, random_state=0, format="csr")
  y = np.where(rng.random(40) < 0.5, -1.0, 1.0)
  wide = scipy.sparse.csr_matrix((x.data, x.indices * 300_000, x.indptr), shape=(40, num_columns))
  narrow = solve_linear_optimum(x, y, "logistic", l2=0.1, fit_intercept=True)
  tracemalloc.start()
  try:
    optimum = solve_linear_optimum(wide, y, "logistic", l2=0.1, fit_intercept=True,
                                   max_bytes=64 * 2**20)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 48 * 2**20  # the result (16 MB) and little else
  assert optimum.converged and optimum.params.shape == (num_columns + 1,)
  assert optimum.value == pytest.approx(narrow.value, rel=1e-12)
  np.testing.assert_allclose(optimum.params[np.arange(6) * 300_000], narrow.params[:6], atol=1e-9)
  assert optimum.params[-1] == pytest.approx(narrow.params[-1], abs=1e-9)
  assert np.count_nonzero(optimum.params[:-1]) <= 6
  with pytest.raises(OptimumTooLarge, match=r"needs about [0-9.]+ MB, more than the 1.0 MB"):
    solve_linear_optimum(wide, y, "logistic", l2=0.1, max_bytes=2**20)


def test_an_optimum_over_the_memory_budget_is_skipped_with_a_note():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(400, 300))
  problem = make_sparse_problem(scipy.sparse.csr_matrix(x), np.sign(x[:, 0]), 0.1)
  constants = problem_constants(problem, max_memory_mb=0.5)
  assert constants["optimum"] is None and constants["lipschitz"] > 0
  assert "E* is not computed" in constants["optimum_note"]
  assert "MB allowed (optim.max_memory_mb)" in constants["optimum_note"]
  assert problem_constants(problem)["optimum"] is not None


def test_weights_near_the_float64_limit_are_normalized(tmp_path):
  path = tmp_path / "w.txt"
  path.write_text("1e308\n1e308\n0\n1e308\n")
  weights, _ = load_sample_weights(str(path), 4)
  with np.errstate(all="raise"):  # no overflow on the way
    normalized = normalized_weights(weights, 4)
  np.testing.assert_array_equal(normalized, [4 / 3, 4 / 3, 0, 4 / 3])


def test_an_outlying_value_refuses_the_automatic_step_that_underflows(tmp_path):
  path = write_libsvm(tmp_path, "+1 1:1e20 2:1")
  with pytest.raises(ConfigError) as error:
    build(libsvm_config(path, "float32"))
  message = str(error.value)
  assert message.startswith("optim.learning_rate=auto gives 2e-40, below float32's smallest "
                            "normal number 1.18e-38, so every step would be zero: L_max = 2.5e+39")
  with jax.enable_x64(True):  # float64 holds the step: the run is built, with a warning
    setup = build(libsvm_config(path, "float64"))
  assert any("most steps cannot move the weights" in w and "1.2e-40" in w
             for w in setup.warnings), setup.warnings


def _stopping_run(problem, rate, dtype):
  method = driver.Method("saga", tol=1e-3)
  state, _ = driver.run(problem, method, driver.hyperparameters(rate, dtype=dtype),
                        jax.random.PRNGKey(0), num_steps=4 * problem.num_samples,
                        log_every=problem.num_samples)
  return state


def test_a_run_that_cannot_move_is_not_converged():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(20, 5))
  y = np.where(x[:, 0] > 0, 1.0, -1.0)
  # A step below float32's smallest normal number is flushed to zero: nothing moves, the weights
  # stay 0, the gradient there is not 0. scikit-learn's test (no change, weights 0) would pass.
  problem = make_problem(x, y, 0.01, dtype=jnp.float32)
  state = _stopping_run(problem, 1e-39, jnp.float32)
  assert not np.any(np.asarray(state.params)) and int(state.stopped_at) == -1
  # Zero is the minimum when L1 outweighs every gradient: that run converges at its first epoch.
  problem = make_problem(x, y, 0.01, dtype=jnp.float32, l1=10.0)
  state = _stopping_run(problem, 0.1, jnp.float32)
  assert not np.any(np.asarray(state.params)) and int(state.stopped_at) == 20


def test_train_refuses_a_huge_index_in_one_line(tmp_path):
  path = write_libsvm(tmp_path, f"+1 {2**40}:2")
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
       f"--config={os.path.join(ROOT, 'configs', 'logreg_libsvm.py')}:saga",
       f"--workdir={workdir}", f"--config.data.path={path}"],
      capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip() == (f"error: malformed LIBSVM file {path}, line 3: index "
                                   "1,099,511,627,776 is above the largest supported index, "
                                   "2,147,483,647")
  assert not workdir.exists() or not os.listdir(workdir)
