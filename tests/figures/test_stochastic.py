"""The figure code: Theorem 52's bound checked by Monte Carlo, and a small Figure 17.4."""

import json

import jax
import numpy as np
import pytest

from deepfound.figures import stochastic


@pytest.mark.slow
def test_theorem_52_bound_holds_and_rate_is_one_over_l():
  """E||b_l - b*||^2 <= R / (l + 1) (17.9), estimated over 2000 SGD runs.

  Margin: the estimate is a mean of 2000 i.i.d. squared distances, so by the central limit
  theorem it exceeds its expectation by 5 standard errors with probability < 3e-7 per point,
  < 3e-5 over the 100 points checked: a failure means the bound is really violated.
  """
  with jax.enable_x64(True):
    estimate = stochastic.theorem_52_estimate(stochastic.Theorem52Setup(), num_runs=2000,
                                              num_steps=1000, log_every=10)
  mean, error, bound = estimate["mean"], estimate["standard_error"], estimate["bound"]
  assert np.all(mean <= bound + 5 * error)
  # The theorem's O(1/l) rate: the log-log slope over the last decade is close to -1.
  steps = estimate["steps"]
  late = steps >= 100
  slope = np.polyfit(np.log10(steps[late]), np.log10(mean[late]), 1)[0]
  assert -1.3 < slope < -0.7, slope
  assert mean[-1] < mean[0] / 10


@pytest.mark.slow
def test_theorem_52_on_a_quadratic_with_known_expectation():
  """E_i(b) = (b - y_i)^2 / 2 with y = (+1, -1): mu = 1, and SGD with tau_l = 1/(l + 1) makes b_l
  the mean of the l targets drawn, so E[b_l^2] = 1/l exactly. Along the iterates |b| <= 1, hence
  ||grad E_i|| = |b - y_i| <= 2 = C and R = max(b0^2, C^2 / mu^2) = 4: the bound 4/(l + 1) is
  within a factor 4 of the truth. The estimate must match 1/l and stay below the bound (5
  standard errors: a failure is a real discrepancy, not Monte-Carlo noise)."""
  from deepfound.optim import driver
  from deepfound.problems import make_problem

  runs = 4000
  with jax.enable_x64(True):
    problem = make_problem(np.ones((2, 1)), np.array([1.0, -1.0]), loss="least_squares",
                           dtype=jax.numpy.float64)
    points = stochastic.run_many(problem, driver.Method("sgd", schedule="strongly_convex"), 1.0,
                                 runs, 200, 10, strong_convexity=1.0, record_params=True)
  squared = np.asarray(points.params)[..., 0] ** 2
  steps = np.asarray(points.step)[0]
  mean, error = squared.mean(axis=0), squared.std(axis=0, ddof=1) / np.sqrt(runs)
  assert np.all(np.abs(mean - 1.0 / steps) < 5 * error + 1e-12)
  assert np.all(mean <= 4.0 / (steps + 1) + 5 * error)


def test_figure_17_4_small(tmp_path):
  with jax.enable_x64(True):
    data = stochastic.figure_17_4(str(tmp_path), num_runs=256, num_steps=400)
  assert (tmp_path / "figure_17_4_sgd_1d.png").stat().st_size > 10_000
  saved = json.loads((tmp_path / "figure_17_4_sgd_1d.json").read_text())
  spread = np.asarray(saved["series"][1]["runs"][0])
  assert spread.shape == (401,)
  # b0 ~ U[-1/2, 1/2] has std 0.289; SGD then clusters around b* = 0.
  assert 0.25 < spread[0] < 0.33
  assert spread[-1] < 0.4 * spread[0]
  assert abs(data["final_mean"]) < 3 * spread[-1] / np.sqrt(256)
