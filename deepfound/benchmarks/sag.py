"""SAG/SGD/SGA: per-step scaling in n, and seconds per epoch against scikit-learn."""

from __future__ import annotations

import functools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.benchmarks.timing import machine, median_seconds, versions, write_results
from deepfound.data import make_logistic_data
from deepfound.optim import driver
from deepfound.problems import make_problem, solve_optimum

NUM_FEATURES = 100
SCALING_STEPS = 100_000
SGD_ETA0 = 0.05


def objective64(x: np.ndarray, y: np.ndarray, params: np.ndarray, l2: float) -> float:
  """The L2-regularized logistic objective in float64, the same for both sides."""
  margins = y.astype(np.float64) * (x.astype(np.float64) @ params.astype(np.float64))
  return float(np.mean(np.logaddexp(0.0, -margins)) + 0.5 * l2 * params @ params)


def _time_run(problem, method, hyper, num_steps, repeats):
  key = jax.random.PRNGKey(0)
  run = lambda: driver.run(problem, method, hyper, key, num_steps=num_steps,  # noqa: E731
                           log_every=num_steps)
  seconds = median_seconds(run, repeats=repeats)
  state, _ = run()
  return seconds, np.asarray(driver.reported_params(state))


def scaling(large_n: int, repeats: int) -> list[dict]:
  """Marginal seconds per step at n = 2,000 and n = ``large_n``.

  Each measurement is (time of 3 S steps - time of S steps) / 2 S, which cancels what a run
  pays once (the objective evaluation, O(n p), dispatch). Sizes are timed in alternation (small,
  large, small, ...) so that drifts in machine speed hit both; the ratio is the median of the
  per-pair ratios.
  """
  problems = {}
  for n in (2_000, large_n):
    x, y = make_logistic_data(n, NUM_FEATURES, seed=0)
    problems[n] = make_problem(x, y, l2=1e-4)
  key = jax.random.PRNGKey(0)
  rows = []
  for name in ("sag", "saga", "svrg", "sgd"):
    method = driver.Method(name, schedule="constant")
    hyper = driver.hyperparameters(1e-3)

    def seconds(problem, steps, warm, method=method, hyper=hyper):
      run = functools.partial(driver.run, problem, method, hyper, key, num_steps=steps,
                              log_every=steps)
      return median_seconds(run, repeats=1, warmup=0 if warm else 1)

    per_step = {n: [] for n in problems}
    for r in range(repeats):
      for n, problem in problems.items():
        short = seconds(problem, SCALING_STEPS, warm=r > 0)
        long = seconds(problem, 3 * SCALING_STEPS, warm=r > 0)
        per_step[n].append((long - short) / (2 * SCALING_STEPS))
    small, large = np.asarray(per_step[2_000]), np.asarray(per_step[large_n])
    ratio = float(np.median(large / small))
    rows.append(dict(method=name, us_per_step_small_n=1e6 * float(np.median(small)),
                     us_per_step_large_n=1e6 * float(np.median(large)), ratio=ratio))
    print(f"scaling {name}: {1e6 * np.median(small):.3f} us/step at n=2000, "
          f"{1e6 * np.median(large):.3f} at n={large_n}, ratio {ratio:.2f}", flush=True)
  return rows


def versus_sklearn(large_n: int, epochs: int, repeats: int) -> list[dict]:
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression, SGDClassifier

  x, y = make_logistic_data(large_n, NUM_FEATURES, seed=0)
  n = large_n
  inverse_c = 1.0  # scikit-learn's C = 1: objective C sum_i loss + |w|^2 / 2 = n (mean + l2/2 |w|^2)
  l2 = inverse_c / n
  problem = make_problem(x, y, l2=l2)
  step = 1.0 / problem.max_sample_lipschitz()
  optimum = solve_optimum(problem).value
  print(f"E* = {optimum:.6f} (float64 Newton)", flush=True)
  rows = []

  def sklearn_seconds(make):
    times, model = [], None
    for _ in range(repeats):
      model = make()
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), model.coef_.ravel()

  # SAG: same step 1/L_max, same L2, same epochs. scikit-learn divides by the number of samples
  # seen during the first epoch (our average_over_seen); the chapter's SAG divides by n.
  theirs_s, theirs_params = sklearn_seconds(lambda: LogisticRegression(
      solver="sag", C=1.0 / inverse_c, fit_intercept=False, max_iter=epochs, tol=0.0,
      random_state=0))
  for label, seen in (("sag (average over seen, as scikit-learn)", True), ("sag (divide by n)", False)):
    ours_s, ours_params = _time_run(
        problem, driver.Method("sag", average_over_seen=seen), driver.hyperparameters(step),
        epochs * n, repeats)
    rows.append(_row(label, "LogisticRegression(solver='sag')", epochs, ours_s, theirs_s,
                     objective64(x, y, ours_params, l2), objective64(x, y, theirs_params, l2),
                     optimum))

  # SGD / SGA against SGDClassifier without / with averaging. Both sides use the same step
  # shape, eta0 / (1 + sqrt(l)) here and eta0 / t^0.5 in scikit-learn ('invscaling'); (17.8) has
  # no scikit-learn counterpart. Ours samples uniformly with replacement (the chapter's scheme),
  # scikit-learn shuffles each epoch.
  for name, average in (("sgd", False), ("sga", True)):
    method = driver.Method(name, schedule="inverse_sqrt")
    hyper = driver.hyperparameters(SGD_ETA0, 1.0)
    ours_s, ours_params = _time_run(problem, method, hyper, epochs * n, repeats)
    theirs_s, theirs_params = sklearn_seconds(lambda average=average: SGDClassifier(
        loss="log_loss", penalty="l2", alpha=l2, fit_intercept=False, max_iter=epochs, tol=None,
        learning_rate="invscaling", eta0=SGD_ETA0, power_t=0.5, average=average,
        random_state=0))
    rows.append(_row(name, f"SGDClassifier(loss='log_loss', average={average})", epochs, ours_s,
                     theirs_s, objective64(x, y, ours_params, l2),
                     objective64(x, y, theirs_params, l2), optimum))
  return rows


def _row(name, baseline, epochs, ours_s, theirs_s, ours_objective, theirs_objective, optimum):
  row = dict(method=name, baseline=baseline, epochs=epochs,
             ours_s_per_epoch=ours_s / epochs, baseline_s_per_epoch=theirs_s / epochs,
             ratio=ours_s / theirs_s, ours_objective=ours_objective,
             baseline_objective=theirs_objective, optimum=optimum)
  print(f"{name} vs {baseline}: {row['ours_s_per_epoch']:.4f} s/epoch vs "
        f"{row['baseline_s_per_epoch']:.4f} (ratio {row['ratio']:.2f}); objective "
        f"{ours_objective:.6f} vs {theirs_objective:.6f}", flush=True)
  return row


def run_benchmark(out: str, repeats: int, epochs: int, large_n: int, command: str) -> dict:
  results = dict(
      command=command,
      machine=machine("platform", "processor", "cpu_count", "backend", "devices"),
      versions=versions("jax", "sklearn", "numpy"),
      dtype=str(jnp.zeros(()).dtype), num_features=NUM_FEATURES, repeats=repeats,
      scaling=scaling(large_n, repeats),
      versus_sklearn=versus_sklearn(large_n, epochs, repeats),
  )
  write_results(out, "sag", results, markdown(results, large_n))
  return results


def markdown(results: dict, large_n: int) -> str:
  lines = [
      "# Stochastic optimization core: benchmark",
      "",
      f"Command: `{results['command']}`  ",
      f"Machine: {results['machine']['cpu_count']} CPU cores, backend "
      f"{results['machine']['backend']}; jax {results['versions']['jax']}, scikit-learn "
      f"{results['versions']['sklearn']}; float32, p = {results['num_features']}, medians of "
      f"{results['repeats']} runs, compilation excluded.",
      "",
      "## Per-step cost against n (constant step 1e-3)",
      "",
      f"Marginal cost: (time of {3 * SCALING_STEPS:,} steps - time of {SCALING_STEPS:,} steps) / "
      f"{2 * SCALING_STEPS:,},",
      "which leaves out what a run pays once. Small and large n are timed in alternation, each",
      "pair giving a ratio; the table shows medians.",
      "",
      f"| method | us/step, n = 2,000 | us/step, n = {large_n:,} | ratio (target <= 1.5) |",
      "|---|---|---|---|",
  ]
  for r in results["scaling"]:
    lines.append(f"| {r['method']} | {r['us_per_step_small_n']:.3f} | "
                 f"{r['us_per_step_large_n']:.3f} | {r['ratio']:.2f} |")
  lines += [
      "",
      f"## Seconds per epoch against scikit-learn (n = {large_n:,}, same data, same epochs)",
      "",
      "Objectives are float64 evaluations of each side's final iterate; E* = "
      f"{results['versus_sklearn'][0]['optimum']:.6f} (float64 Newton).",
      "",
      "| ours | baseline | epochs | ours s/epoch | baseline s/epoch | ratio | ours E - E* "
      "| baseline E - E* |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in results["versus_sklearn"]:
    lines.append(
        f"| {r['method']} | `{r['baseline']}` | {r['epochs']} | {r['ours_s_per_epoch']:.4f} | "
        f"{r['baseline_s_per_epoch']:.4f} | {r['ratio']:.2f} | "
        f"{r['ours_objective'] - r['optimum']:.2e} | {r['baseline_objective'] - r['optimum']:.2e} |"
    )
  lines.append("")
  return "\n".join(lines)
