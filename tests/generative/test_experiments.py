"""Section 17.4's configs through the experiment runner at a few steps, the problem kinds they
build, the driver's per-step noise keys, and refusals of bad combinations."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, assert_chunks_give_one_run, config_of, metric_rows

from deepfound.experiment import ConfigError, run_experiment, validate
from deepfound.experiment.build import build_method, build_problem
from deepfound.problems.generative import NoisyFiniteSum
from deepfound.problems.kinds import Expectation, FiniteSum, StochasticFiniteSum, check_runnable


@pytest.mark.slow
def test_gmm_on_the_ring_learns_the_modes(tmp_path):
  config = config_of("density_2d", "ring,gmm", data__num_samples=4000, num_steps=600, log_every=300,
                     checkpoint_every=300, optim__batch_size=64)
  summary = run_experiment(config, str(tmp_path), progress=False)
  rows = metric_rows(tmp_path)
  assert [r["step"] for r in rows] == [0, 300, 600]
  assert rows[-1]["kl_gap"] < rows[0]["kl_gap"] - 1.0
  # The test NLL minus the entropy, which is known for the ring: -4.29 nats (Monte-Carlo).
  assert rows[-1]["entropy"] == pytest.approx(-4.293, abs=0.005)
  assert rows[-1]["kl_gap"] == pytest.approx(rows[-1]["test_nll"] - rows[-1]["entropy"], abs=1e-5)
  assert summary["modes_captured"] == 8 and summary["high_quality_fraction"] > 0.5
  assert summary["status"] == "complete"


@pytest.mark.slow
def test_flow_on_moons_and_sag_on_its_finite_sum(tmp_path):
  config = config_of("density_2d", "moons", data__num_samples=300, model__num_layers=2,
                     model__hidden=(16,), num_steps=200, log_every=100, optim__name="sag",
                     optim__learning_rate=1e-3, optim__batch_size=1)
  summary = run_experiment(config, str(tmp_path), progress=False)
  rows = metric_rows(tmp_path)
  assert rows[-1]["test_nll"] < rows[0]["test_nll"]
  assert "kl_gap" not in rows[-1]  # the law of moons is not known
  assert summary["gradient_memory_mb"] > 0  # one gradient per sample and parameter
  assert rows[-1]["epoch"] == pytest.approx(200 / 225)  # 75 % of 300 samples train


@pytest.mark.slow
def test_pushforward_mmd_and_its_kind(tmp_path):
  config = config_of("pushforward_2d", "ring,mmd", data__num_samples=2000,
                     model__hidden=(32, 32), num_steps=300, log_every=150, optim__batch_size=64)
  problem = build_problem(config)
  assert isinstance(problem, Expectation) and not isinstance(problem, FiniteSum)
  check_runnable(problem)
  run_experiment(config, str(tmp_path), progress=False)
  rows = metric_rows(tmp_path)
  assert rows[-1]["objective"] < rows[0]["objective"]
  assert rows[-1]["epoch"] is None and "modes_captured" in rows[-1]


@pytest.mark.slow
def test_linear_autoencoder_approaches_pca(tmp_path):
  config = config_of("autoencoder_digits", "linear", model__code_size=4, num_steps=3000,
                     log_every=1500)
  run_experiment(config, str(tmp_path), progress=False)
  last = metric_rows(tmp_path)[-1]
  assert last["pca_mse"] <= last["reconstruction_mse"] < 1.1 * last["pca_mse"]
  assert last["test_reconstruction_mse"] > 0


@pytest.mark.slow
def test_vae_on_digits_reports_its_bounds(tmp_path):
  config = config_of("vae_digits", num_steps=420, log_every=210, problem__eval_importance_samples=50,
                     problem__eval_test_samples=40)
  summary = run_experiment(config, str(tmp_path), progress=False)
  rows = metric_rows(tmp_path)
  assert rows[-1]["test_elbo"] > rows[0]["test_elbo"] + 5  # nats per image
  # The importance-weighted estimate of log p(x) lies above the ELBO of the same images.
  assert summary["test_log_likelihood"] > summary["test_log_likelihood_elbo"]
  assert summary["test_elbo_full"] == pytest.approx(rows[-1]["test_elbo"], abs=3)
  assert summary["test_log_likelihood_k"] == 50 and summary["test_log_likelihood_images"] == 40


@pytest.mark.slow
def test_noise_keys_are_a_function_of_the_step():
  """A stochastic finite sum gets a fresh key every step, the same however the run is cut:
  two chunks give the parameters of one run (what makes a resumed VAE run identical)."""
  config = config_of("vae_digits", "2", model__hidden=(8,))
  problem = build_problem(config)
  assert isinstance(problem, NoisyFiniteSum) and isinstance(problem, StochasticFiniteSum)
  assert_chunks_give_one_run(problem, build_method(config))
  # Different steps draw different noise: the batch's key changes the gradient (one compiled
  # program for both keys; op by op, the VAE's gradient costs seconds of dispatch).
  gradient = jax.jit(lambda problem, key: problem.mean_gradient(
      problem.init_params(), (problem.batch(jnp.arange(4)), key)))
  g1 = gradient(problem, jax.random.PRNGKey(0))
  g2 = gradient(problem, jax.random.PRNGKey(1))
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True))


@pytest.mark.parametrize("overrides, message", [
    (dict(optim__name="sag"), "needs a finite sum"),
    (dict(problem__loss="nll"), "problem.loss must be one of sinkhorn, mmd"),
    (dict(problem__epsilon=0.0), "problem.epsilon must be > 0"),
    (dict(model__latent_size=0), "model.latent_size must be in"),
])
def test_bad_pushforward_configs_are_refused(overrides, message):
  with pytest.raises(ConfigError, match=message):
    validate(config_of("pushforward_2d", "ring", **overrides))


@pytest.mark.slow
def test_cli_refuses_a_vae_on_unbounded_data(tmp_path):
  command = [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
             f"--config={os.path.join(ROOT, 'configs', 'vae_digits.py')}",
             f"--workdir={tmp_path / 'run'}", "--config.data.name=ring",
             "--config.data.num_samples=100"]
  result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().count("\n") == 0 and "intensities in [0, 1]" in result.stderr
  assert not (tmp_path / "run").exists()
