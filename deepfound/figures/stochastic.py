"""Figures 17.1, 17.4, 17.5, 17.6 and Theorem 52 of section 17.1, from our update rules.

Every set of runs of one method is one ``vmap`` of ``driver.run`` over PRNG keys (and starting
points), so one compiled program. Runs are in float64 so that suboptimality curves are exact down
to 1e-12; E* is the float64 Newton optimum of each problem.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from deepfound.data import load_quantum, make_logistic_data
from deepfound.figures import io
from deepfound.optim import driver
from deepfound.problems import make_problem, solve_optimum

NUM_RUNS = 10
TOUR_STEPS = 100_000


@dataclasses.dataclass
class Quantum:
  """The quantum problem of Figures 17.1, 17.5 and 17.6, with its constants."""

  problem: object
  optimum: float  # E*, float64 Newton
  lipschitz: float
  max_sample_lipschitz: float

  @classmethod
  def load(cls) -> Quantum:
    problem = make_problem(*load_quantum(seed=0), dtype=jnp.float64)
    return cls(problem, solve_optimum(problem).value, problem.lipschitz(),
               problem.max_sample_lipschitz())


def run_many(problem, method: driver.Method, learning_rate: float, num_runs: int, num_steps: int,
             log_every: int, l0: float = 1.0, strong_convexity: float = 1.0, seed: int = 0,
             params0=None, record_params: bool = False) -> driver.LogPoint:
  """``num_runs`` runs of one method as one vmapped program (different keys, same settings)."""
  hyper = driver.hyperparameters(learning_rate, l0, strong_convexity, dtype=jnp.float64)
  keys = jax.vmap(jax.random.PRNGKey)(seed + jnp.arange(num_runs))
  run = functools.partial(driver.run, problem, method, hyper, num_steps=num_steps,
                          log_every=log_every, record_params=record_params)
  if params0 is None:
    _, points = jax.vmap(run)(keys)
  else:
    _, points = jax.vmap(run)(keys, params0)
  return jax.device_get(points)


def _with_start(points: driver.LogPoint, start_objective: float) -> tuple[np.ndarray, np.ndarray]:
  """Steps and objectives with the starting point (step 0) prepended, runs along axis 0."""
  objective = np.atleast_2d(np.asarray(points.objective))
  steps = np.asarray(points.step)
  steps = steps[0] if steps.ndim > 1 else steps
  start = np.full((objective.shape[0], 1), start_objective)
  return np.concatenate([[0], steps]), np.concatenate([start, objective], axis=1)


def _log_gap(objective: np.ndarray, optimum: float) -> np.ndarray:
  gap = objective - optimum
  return np.log10(np.where(gap > 0, gap, np.nan))  # gaps at float64 round-off show as gaps


def figure_17_1(quantum: Quantum, out: str) -> dict:
  """BGD on the quantum problem, rate 0.5, 5000 iterations: E and log10(E - E*)."""
  points = run_many(quantum.problem, driver.Method("bgd"), 0.5, 1, 5000, 10)
  steps, objective = _with_start(points, float(np.log(2.0)))
  tour_optimum = float(objective.min())  # what the numerical tour used as E*
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
  axes[0].plot(steps, objective[0])
  axes[0].set(xlabel="iteration l", ylabel="E(w_l)", title="BGD, rate 0.5")
  axes[1].plot(steps, _log_gap(objective[0], quantum.optimum), label="E* = float64 optimum")
  axes[1].plot(steps, _log_gap(objective[0], tour_optimum), "--",
               label="E* = min of this curve (the tour's)")
  axes[1].set(xlabel="iteration l", ylabel="log10(E(w_l) - E*)")
  axes[1].legend()
  fig.suptitle("Figure 17.1: batch gradient descent, logistic regression on the quantum data")
  data = dict(
      optimum=quantum.optimum, tour_optimum=tour_optimum,
      optimum_difference=tour_optimum - quantum.optimum,
      lipschitz=quantum.lipschitz, learning_rate=0.5,
      series=[io.series("BGD objective", steps, objective)],
  )
  io.save(fig, "figure_17_1_bgd", out, data)
  return data


def figure_17_4(out: str, num_runs: int = 4096, num_steps: int = 2000) -> dict:
  """SGD on f1 + f2, f1 = (b - 1)^2, f2 = (b + 1)^2, b0 ~ U[-1/2, 1/2]: trajectories, density.

  Our least-squares problem with x_i = 1 and y = (1, -1) has E_i = (b - y_i)^2 / 2 = f_i / 2, so
  SGD on f_i with step tau is SGD on E_i with step 2 tau; the schedule is (17.8) with (for f)
  tau0 = 0.1 and l0 = 50.
  """
  tau0, l0 = 0.1, 50.0
  problem = make_problem(np.ones((2, 1)), np.array([1.0, -1.0]), loss="least_squares",
                         dtype=jnp.float64)
  starts = jax.random.uniform(jax.random.PRNGKey(1), (num_runs, 1), jnp.float64, -0.5, 0.5)
  points = run_many(problem, driver.Method("sgd", schedule="inverse_time"), 2 * tau0, num_runs,
                    num_steps, 1, l0=l0, params0=starts, record_params=True)
  paths = np.concatenate([np.asarray(starts), np.asarray(points.params)[..., 0]], axis=1)
  steps = np.arange(num_steps + 1)
  bins = np.linspace(-1.0, 1.0, 121)
  density = np.stack([np.histogram(paths[:, k], bins=bins, density=True)[0] for k in steps], axis=1)
  shown = 60
  fig, axes = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, layout="constrained")
  axes[0].plot(steps, paths[:shown].T, lw=0.5, alpha=0.6)
  axes[0].set(ylabel="b_l", ylim=(-1.05, 1.05),
              title=f"{shown} of {num_runs} SGD trajectories, tau_l = {tau0}/(1 + l/{l0:g})")
  axes[1].imshow(np.log1p(density), origin="lower", aspect="auto", cmap="magma",
                 extent=(0, num_steps, bins[0], bins[-1]))
  axes[1].set(xlabel="iteration l", ylabel="b_l", title="density of b_l over runs (log(1 + p))")
  fig.suptitle("Figure 17.4: SGD on f1 + f2 clusters around b* = 0")
  spread = paths.std(axis=0)
  data = dict(
      tau0=tau0, l0=l0, num_runs=num_runs, step_scale_note="schedule for f_i; E_i = f_i / 2",
      final_mean=float(paths[:, -1].mean()), final_std=float(spread[-1]),
      series=[io.series("trajectories (first 60)", steps, paths[:shown]),
              io.series("std of b_l over runs", steps, spread)],
      density=dict(bins=bins.tolist(), every=50, values=density[:, ::50].T.tolist()),
  )
  io.save(fig, "figure_17_4_sgd_1d", out, data)
  return data


def _tour_runs(quantum: Quantum, log_every: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """SGD, SGA and SAG with the tour's parameters, NUM_RUNS runs each."""
  settings = {
      "SGD": (driver.Method("sgd", schedule="inverse_time"), 0.05, 100.0),
      "SGA": (driver.Method("sga", schedule="inverse_sqrt"), 0.05, 100.0),
      "SAG": (driver.Method("sag"), 0.002, 1.0),
  }
  curves = {}
  for name, (method, rate, l0) in settings.items():
    points = run_many(quantum.problem, method, rate, NUM_RUNS, TOUR_STEPS, log_every, l0=l0)
    curves[name] = _with_start(points, float(np.log(2.0)))
  return curves


def figure_17_5(quantum: Quantum, tour: dict, out: str) -> dict:
  """SGD (10 runs) against BGD (dashed), both against sampled gradients."""
  n = quantum.problem.num_samples
  epochs = TOUR_STEPS // n
  bgd = run_many(quantum.problem, driver.Method("bgd"), 0.5, 1, epochs, 1)
  bgd_steps, bgd_objective = _with_start(bgd, float(np.log(2.0)))
  steps, sgd = tour["SGD"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
  for ax, transform, label in ((axes[0], lambda v: v, "E"),
                               (axes[1], lambda v: _log_gap(v, quantum.optimum), "log10(E - E*)")):
    ax.plot(steps, transform(sgd).T, lw=0.6, color="tab:blue", alpha=0.7)
    ax.plot(bgd_steps * n, transform(bgd_objective[0]), "k--", lw=1.5, label="BGD (x n)")
    ax.set(xlabel="sampled gradients (SGD steps; BGD iterations x n)", ylabel=label)
    ax.legend()
  fig.suptitle("Figure 17.5: SGD, tau0 = 0.05, l0 = 100, 10 runs, against BGD (rate 0.5)")
  final_gap = sgd[:, -1] - quantum.optimum
  data = dict(
      optimum=quantum.optimum,
      sgd_final_gap_median=float(np.median(final_gap)),
      bgd_final_gap=float(bgd_objective[0, -1] - quantum.optimum),
      series=[io.series("SGD", steps, sgd), io.series("BGD", bgd_steps * n, bgd_objective)],
  )
  io.save(fig, "figure_17_5_sgd_vs_bgd", out, data)
  return data


def _rate_fit(steps: np.ndarray, objective: np.ndarray, optimum: float) -> float:
  """Slope of log10(median E - E*) against log10(l) over the last decade of iterations."""
  gap = np.median(objective, axis=0) - optimum
  keep = (steps >= steps[-1] / 10) & (gap > 0)
  return float(np.polyfit(np.log10(steps[keep]), np.log10(gap[keep]), 1)[0])


def figure_17_6(quantum: Quantum, tour: dict, out: str, tour_optimum: float, epochs: int = 30,
                l2: float = 0.01) -> dict:
  """log10(E - E*) for SGD, SGA, SAG (tour parameters); then, beyond the chapter, SAG at 1/L_max,
  SAGA, SVRG and SARAH on the same problem and on its L2-regularized (strongly convex) version,
  the same number of steps each (epochs count every sample gradient: SVRG's snapshots and
  SARAH's full passes and two gradients a step included). The tour's runs are shown against the
  true E* and, as the chapter's printed figure, against ``tour_optimum`` (the minimum of the
  BGD curve of Figure 17.1)."""
  n = quantum.problem.num_samples
  regularized = make_problem(*load_quantum(seed=0), l2=l2, dtype=jnp.float64)
  problems = {
      "unregularized": (quantum.problem, quantum.optimum, quantum.max_sample_lipschitz),
      f"l2 = {l2:g}": (regularized, solve_optimum(regularized).value,
                       regularized.max_sample_lipschitz()),
  }
  beyond = {}
  # Step sizes are the usual practical choices, larger than the proven ones (SAG's proof takes
  # 1/(16 L_max), SVRG's below 1/(4 L_max)).
  for key, (problem, optimum, max_lipschitz) in problems.items():
    inverse = 1.0 / max_lipschitz
    for name, method, rate in (("SAG, 1/L_max", driver.Method("sag"), inverse),
                               ("SAGA, 1/(3 L_max)", driver.Method("saga"), inverse / 3),
                               ("SVRG, 1/(3 L_max)", driver.Method("svrg"), inverse / 3),
                               ("SARAH, 1/L_max", driver.Method("sarah"), inverse)):
      points = run_many(problem, method, rate, NUM_RUNS, epochs * n, n // 10)
      steps, objective = _with_start(points, float(np.log(2.0)))
      # Epochs count every sample gradient, SVRG's and SARAH's full passes included.
      beyond[(key, name)] = (driver.epochs_done(method, n, steps), objective, optimum)

  names = list(tour) + sorted({name for _, name in beyond})
  colors = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
  fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
  axes = axes.ravel()
  for ax, optimum, which in ((axes[0], quantum.optimum, "E* = float64 optimum"),
                             (axes[1], tour_optimum, "E* = min of BGD (the chapter's)")):
    for name, (steps, objective) in tour.items():
      ax.plot(steps, _log_gap(objective, optimum).T, lw=0.6, color=colors[name], alpha=0.6)
      ax.plot([], [], color=colors[name], label=name)
    ax.set(xlabel="iteration l", ylabel="log10(E - E*)",
           title=f"tour parameters, 10 runs each; {which}")
    ax.legend()
  for ax, key in zip(axes[2:], problems, strict=True):
    for (problem_key, name), (epoch, objective, optimum) in beyond.items():
      if problem_key == key:
        ax.plot(epoch, _log_gap(objective, optimum).T, lw=0.6, color=colors[name], alpha=0.6)
        ax.plot([], [], color=colors[name], label=name)
    ax.set(xlabel="epochs (sample gradients / n, full passes included)",
           ylabel="log10(E - E*)", title=f"beyond the chapter: {key}")
    ax.legend()
  fig.suptitle("Figure 17.6: SGD, SGA and SAG; variance reduction at larger steps")
  summary = {name: dict(final_gap_median=float(np.median(obj[:, -1]) - quantum.optimum),
                        loglog_slope_last_decade=_rate_fit(steps[1:], obj[:, 1:], quantum.optimum))
             for name, (steps, obj) in tour.items()}
  for (key, name), (epoch, objective, optimum) in beyond.items():
    gap = np.median(objective, axis=0) - optimum
    summary[f"{name} ({key})"] = dict(
        final_gap_median=float(gap[-1]),
        epochs_to_gap_1e_6=float(epoch[np.argmax(gap < 1e-6)]) if np.any(gap < 1e-6) else None,
    )
  for name, (_, obj) in tour.items():
    summary[name]["final_gap_median_tour_optimum"] = float(np.median(obj[:, -1]) - tour_optimum)
  data = dict(
      optimum=quantum.optimum, tour_optimum=tour_optimum,
      max_sample_lipschitz=quantum.max_sample_lipschitz,
      optimum_regularized=problems[f"l2 = {l2:g}"][1], summary=summary,
      series=[io.series(name, steps, obj) for name, (steps, obj) in tour.items()]
      + [io.series(f"{name} ({key})", epoch, obj, x_unit="epochs")
         for (key, name), (epoch, obj, _) in beyond.items()],
  )
  io.save(fig, "figure_17_6_sgd_sga_sag", out, data)
  return data


@dataclasses.dataclass(frozen=True)
class Theorem52Setup:
  """A mu-strongly convex finite sum with bounded gradients along the SGD iterates."""

  num_samples: int = 50
  num_features: int = 3
  l2: float = 0.5  # mu: E is l2-strongly convex
  seed: int = 0


def theorem_52_estimate(setup: Theorem52Setup, num_runs: int, num_steps: int, log_every: int,
                        seed: int = 0) -> dict[str, np.ndarray | float]:
  """Monte-Carlo E||b_l - b*||^2 of SGD with tau_l = 1/(mu (l + 1)) and the bound R / (l + 1).

  Constants: mu = l2. From b0 = 0 with this step, b_l is an average of the vectors -s x_i / l2
  (|s| <= 1), so ||b_l|| <= max_i ||x_i|| / l2 and ||grad E_i(b_l)|| <= |s| ||x_i|| + l2 ||b_l||
  <= 2 max_i ||x_i|| =: C. R = max(||b0 - b*||^2, C^2 / mu^2): (17.9) prints ||b0 - b*|| without
  the square, but the proof's first step needs eps_0 = ||b0 - b*||^2 <= R.
  """
  x, y = make_logistic_data(setup.num_samples, setup.num_features, seed=setup.seed,
                            dtype=np.float64)
  problem = make_problem(x, y, l2=setup.l2, dtype=jnp.float64)
  best = solve_optimum(problem).params
  mu = setup.l2
  bound_c = 2.0 * float(np.max(np.linalg.norm(x, axis=1)))
  radius = max(float(np.sum(best**2)), bound_c**2 / mu**2)
  points = run_many(problem, driver.Method("sgd", schedule="strongly_convex"), 1.0, num_runs,
                    num_steps, log_every, strong_convexity=mu, seed=seed, record_params=True)
  distance = np.sum((np.asarray(points.params) - best) ** 2, axis=-1)  # (runs, points)
  steps = np.asarray(points.step)[0]
  return dict(steps=steps, mean=distance.mean(axis=0),
              standard_error=distance.std(axis=0, ddof=1) / np.sqrt(num_runs),
              bound=radius / (steps + 1.0), radius=radius, C=bound_c, mu=mu)


def theorem_52(out: str, num_runs: int = 10_000, num_steps: int = 10_000) -> dict:
  setup = Theorem52Setup()
  estimate = theorem_52_estimate(setup, num_runs, num_steps, log_every=10)
  steps = estimate["steps"]
  fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
  ax.loglog(steps, estimate["mean"], label=f"Monte-Carlo E||b_l - b*||^2 ({num_runs} runs)")
  ax.fill_between(steps, estimate["mean"] - 3 * estimate["standard_error"],
                  estimate["mean"] + 3 * estimate["standard_error"], alpha=0.3, label="+- 3 s.e.")
  ax.loglog(steps, estimate["bound"], "k--", label="bound R / (l + 1) of (17.9)")
  ax.set(xlabel="iteration l", ylabel="squared distance to b*")
  ax.legend()
  fig.suptitle("Theorem 52: SGD with tau_l = 1/(mu (l+1)) on L2-regularized logistic regression")
  ratio = estimate["mean"] / estimate["bound"]
  data = dict(
      setup=dataclasses.asdict(setup), radius=estimate["radius"], C=estimate["C"],
      mu=estimate["mu"], num_runs=num_runs, max_ratio_estimate_to_bound=float(ratio.max()),
      loglog_slope_last_decade=float(np.polyfit(
          np.log10(steps[steps >= steps[-1] / 10]),
          np.log10(estimate["mean"][steps >= steps[-1] / 10]), 1)[0]),
      series=[io.series("Monte-Carlo mean", steps, estimate["mean"]),
              io.series("standard error", steps, estimate["standard_error"]),
              io.series("bound R/(l+1)", steps, estimate["bound"])],
  )
  io.save(fig, "theorem_52_sgd_bound", out, data)
  return data


def make_all(out: str, log: Callable[[str], None] = print) -> dict:
  """Every figure of section 17.1 into ``out``; returns their summaries and timings."""
  results, timings = {}, {}
  with jax.enable_x64(True):
    start = time.perf_counter()
    quantum = Quantum.load()
    timings["setup"] = time.perf_counter() - start

    def timed(name, fn):
      tic = time.perf_counter()
      results[name] = fn()
      timings[name] = time.perf_counter() - tic
      log(f"{name}: {timings[name]:.1f} s")

    timed("figure_17_1", lambda: figure_17_1(quantum, out))
    timed("figure_17_4", lambda: figure_17_4(out))
    tour = {}
    timed("tour_runs", lambda: tour.update(_tour_runs(quantum, log_every=100)) or {})
    timed("figure_17_5", lambda: figure_17_5(quantum, tour, out))
    timed("figure_17_6", lambda: figure_17_6(quantum, tour, out,
                                             results["figure_17_1"]["tour_optimum"]))
    timed("theorem_52", lambda: theorem_52(out))
  results.pop("tour_runs", None)
  scalars = {name: {k: v for k, v in data.items() if k not in ("series", "density")}
             for name, data in results.items()}
  return dict(results=scalars, timings=timings)
