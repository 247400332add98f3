"""Flow matching and score matching over seeds (scripts/bench_flow_matching.py).

Each case runs ``num_seeds`` initializations and sampling seeds of one config in one vmapped
program (``benchmarks.generative.seed_runs``), then the models' end-of-run metrics (ODE
likelihood, adaptive-solver samples, straightness, reverse-SDE samples) for every seed in one
more vmapped program. ``euler_table`` draws samples of the trained fields with 1 ... 128 Euler
steps and measures their 2-Wasserstein distance to the test points: how many steps each coupling
needs for a given distance. Writes bench.json and bench.md into ``out``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import numpy as np

from deepfound.benchmarks.cases import expand_cases, facts, load_config
from deepfound.benchmarks.generative import seed_runs
from deepfound.benchmarks.timing import write_results
from deepfound.experiment import precision_scope
from deepfound.models import flow_matching as fm

SMALL = dict(data__num_samples=10_000, optim__batch_size=16, optim__schedule="constant",
             optim__learning_rate=1e-4, model__hidden=(128, 128, 128), optim__ema=None)
# name -> (config module, its argument, overrides). Steps and rates are the configs' unless set.
# the couplings side by side at equal steps: exact OT costs O(b^3) a step on the CPU, so a
# batch of 128, 10,000 steps and 3 seeds
# (the last iterate, as these cases were measured)
COUPLED = dict(optim__batch_size=128, num_steps=10_000, log_every=2_000, optim__ema=None)
GRID_30K = dict(num_steps=30_000, optim__l0=5_000.0, log_every=3_000)
CASES = {
    "fm_ring": ("flow_matching_2d", "ring", {}),
    # 2.5 times the steps, the rate's decay stretched alike: what 30 minutes of 2 CPU cores buy
    "fm_ring_long": ("flow_matching_2d", "ring", dict(num_steps=75_000, optim__l0=12_500.0,
                                                      log_every=7_500)),
    # The configs report the moving average of the weights (optim.ema 0.999); these report the
    # last iterate, as the configs did before.
    **{f"{name}_last_iterate": (module, arg, dict(overrides, optim__ema=None))
       for name, (module, arg, overrides) in (
           ("fm_ring", ("flow_matching_2d", "ring", {})),
           ("fm_ring_long", ("flow_matching_2d", "ring", dict(
               num_steps=75_000, optim__l0=12_500.0, log_every=7_500))),
           ("fm_grid", ("flow_matching_2d", "grid", GRID_30K)),
           ("sm_ring", ("score_matching_2d", "ring", {})),
           ("fm_digits", ("flow_matching_digits", "independent", {})))},
    "sm_ring": ("score_matching_2d", "ring", {}),
    # twice the steps, the rate's decay stretched alike
    "sm_ring_long": ("score_matching_2d", "ring", dict(num_steps=60_000, optim__l0=10_000.0,
                                                       log_every=6_000)),
    "fm_ring_b128_independent": ("flow_matching_2d", "ring", COUPLED),
    "fm_ring_b128_ot": ("flow_matching_2d", "ring,ot", COUPLED),
    "fm_ring_b128_sinkhorn": ("flow_matching_2d", "ring,sinkhorn", COUPLED),
    # the grid at 30,000 steps (l0 5,000), as the ring: its high-quality fraction is still
    # climbing at the end (0.834 at 27,000, 0.863 at 30,000)
    "fm_grid": ("flow_matching_2d", "grid", GRID_30K),
    # the config: three times the steps, the rate's decay stretched alike (l0 15,000)
    "fm_grid_long": ("flow_matching_2d", "grid", {}),
    "sm_grid": ("score_matching_2d", "grid", {}),
    # the rules side by side on one problem: n = 10,000 (SAG's memory of a gradient per point),
    # batch 16, a constant rate, the same steps
    "fm_ring_small_adam": ("flow_matching_2d", "ring", dict(SMALL, optim__name="adam")),
    "fm_ring_small_sgd": ("flow_matching_2d", "ring", dict(SMALL, optim__name="sgd",
                                                           optim__learning_rate=1e-2)),
    "fm_ring_small_saga": ("flow_matching_2d", "ring", dict(SMALL, optim__name="saga",
                                                            optim__learning_rate=1e-2)),
    "fm_digits": ("flow_matching_digits", "independent", {}),
    "fm_mnist": ("flow_matching_mnist", "independent", {}),  # for an accelerator
}
SEEDS = {"fm_ring_b128_independent": 3, "fm_ring_b128_ot": 3, "fm_ring_b128_sinkhorn": 3,
         "fm_ring_small_adam": 3, "fm_ring_small_sgd": 3, "fm_ring_small_saga": 3, "fm_digits": 3,
         "fm_mnist": 1, "fm_digits_last_iterate": 3}
GROUPS = {
    "ring": ["fm_ring", "fm_ring_long", "sm_ring"],
    "couplings": ["fm_ring_b128_independent", "fm_ring_b128_ot", "fm_ring_b128_sinkhorn"],
    "grid": ["fm_grid_long", "fm_grid", "sm_grid"],
    "rules": ["fm_ring_small_adam", "fm_ring_small_sgd", "fm_ring_small_saga"],
    "digits": ["fm_digits"],
}
GROUPS["all"] = [name for group in GROUPS.values() for name in group]
GROUPS["mnist"] = ["fm_mnist"]
SHOWN = ("modes_captured", "high_quality_fraction", "kl_gap", "test_nll", "w2", "w2_reference",
         "score_error", "straightness", "sde_modes_captured", "sde_high_quality_fraction",
         "test_bits_per_dim", "classes_covered", "class_kl", "frechet_distance", "nll_ode_steps",
         "sample_ode_steps", "ode_failures")
EULER_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
EULER_SEEDS = 3
EULER_POINTS = 2_500


def case_names(entries: list[str]) -> list[str]:
  return expand_cases(entries, GROUPS, CASES)


def _stats(values: np.ndarray) -> dict:
  finite = values[np.isfinite(values)]
  return dict(mean=float(finite.mean()) if finite.size else None,
              sd=float(finite.std()) if finite.size else None, per_seed=values.tolist())


def euler_table(problem, params, seeds: int) -> dict[str, list]:
  """Samples of the first ``seeds`` seeds of ``params`` (stacked) drawn with k Euler steps, k in
  ``EULER_STEPS``, against the adaptive solver's from the same starting noise: their root mean
  squared distance (the discretization error, which straight paths make small) and their
  2-Wasserstein distance to the test points. Returns {steps, rmse_mean, rmse_sd, w2_mean, w2_sd}."""
  test = problem.to_data(problem.test_samples[:EULER_POINTS])
  chosen = jax.tree.map(lambda leaf: leaf[:seeds], params)

  def draw(solver):
    def one(p):
      return problem.sample(p, jax.random.PRNGKey(0), test.shape[0], solver=solver)
    return jax.jit(jax.vmap(one))(chosen)

  exact = draw(fm.Solver())
  rmse, w2 = [], []
  for k in EULER_STEPS:
    samples = draw(fm.Solver("euler", steps=k))
    rmse.append(np.sqrt(np.mean(np.sum(np.square(np.asarray(samples - exact)), -1), -1)))
    w2.append(np.asarray(jax.jit(jax.vmap(lambda s: fm.wasserstein2(s, test)))(samples)))
  rmse, w2 = np.stack(rmse), np.stack(w2)  # (steps, seeds)
  return dict(steps=list(EULER_STEPS), rmse_mean=rmse.mean(1).tolist(), rmse_sd=rmse.std(1).tolist(),
              w2_mean=w2.mean(1).tolist(), w2_sd=w2.std(1).tolist())


def run_cases(names: list[str], out: str, num_seeds: int, steps_scale: float = 1.0,
              merge: bool = False, command: str = "", log: Callable[[str], None] = print) -> dict:
  start = time.perf_counter()
  results = dict(cases={})
  existing = os.path.join(out, "bench.json")
  if merge and os.path.exists(existing):
    with open(existing) as f:
      results["cases"].update(json.load(f).get("cases", {}))
  for name in names:
    module, arg, overrides = CASES[name]
    config = load_config(module, arg, overrides, steps_scale)
    seeds = min(num_seeds, SEEDS.get(name, num_seeds))
    run = seed_runs(config, seeds)
    problem, params = run.pop("problem"), run.pop("final_params")
    tic = time.perf_counter()
    with precision_scope(config.precision):
      final = jax.device_get(jax.jit(jax.vmap(problem.final_metrics))(params))
      final_seconds = time.perf_counter() - tic
      metrics = {k: np.asarray(v, np.float64) for k, v in final.items()}
      metrics.update({k: np.asarray(v, np.float64) for k, v in run["per_seed"].items()
                      if k not in metrics})
      euler = None
      if problem.test_samples.shape[-1] == 2 and config.model.name == "flow_matching":
        euler = euler_table(problem, params, min(seeds, EULER_SEEDS))
    results["cases"][name] = dict(
        rule=config.optim.name, num_steps=config.num_steps, num_seeds=seeds, command=command,
        metrics={k: _stats(v) for k, v in metrics.items()}, euler=euler,
        train_seconds=run["run_seconds"], compile_s=run["compile_s"],
        final_seconds=final_seconds, curves=run["curves"],
        config=json.loads(config.to_json()))
    log(f"{name}: " + ", ".join(f"{k} {results['cases'][name]['metrics'][k]['mean']:.4g}"
                                for k in SHOWN if k in metrics
                                and results['cases'][name]['metrics'][k]['mean'] is not None)
        + f" (train {run['run_seconds']:.0f} s, final {final_seconds:.0f} s)")
    results["facts"] = facts(start, num_seeds=num_seeds)
    base = write_results(out, "bench", results, markdown(results), indent=1)
    log(f"wrote {base}.md and {base}.json")
  return results


def _cell(entry) -> str:
  if entry is None or entry["mean"] is None:
    return ""
  return f"{entry['mean']:.4g} +- {entry['sd']:.2g}"


def markdown(results: dict) -> str:
  commands = sorted({r["command"] for r in results["cases"].values()})
  lines = ["# Flow matching and score matching over seeds\n",
           "Made by " + ", then ".join(f"`{c}`" for c in commands) + ".\n",
           "Mean +- sd over seeds (all seeds of a case in one vmapped program) of the end-of-run "
           "metrics: ODE likelihood (Tsit5, rtol = atol = 1e-5, exact trace in 2-D), samples by "
           "the same solver (mode metrics on 2,500; w2 between 2,500 samples and 2,500 test "
           "points, w2_reference the same between training and test points), straightness of "
           "the paths, reverse-SDE samples (sde_*). Anchors: ring 8/8 modes, grid 25/25, high "
           "quality >= 0.95, kl_gap <= 0.1 nats; PacGAN2 on the grid: 23.8 modes at 0.913.\n"]
  shown = [k for k in SHOWN if any(k in r["metrics"] for r in results["cases"].values())]
  lines.append("| case | rule | seeds | steps | train s | " + " | ".join(shown) + " |")
  lines.append("|---" * (len(shown) + 5) + "|")
  for name, r in results["cases"].items():
    lines.append(f"| {name} | {r['rule']} | {r['num_seeds']} | {r['num_steps']} | "
                 f"{r['train_seconds']:.0f} | "
                 + " | ".join(_cell(r["metrics"].get(k)) for k in shown) + " |")
  euler = {name: r["euler"] for name, r in results["cases"].items() if r.get("euler")}
  if euler:
    header = ["| case | " + " | ".join(f"k={k}" for k in EULER_STEPS) + " |",
              "|---" * (len(EULER_STEPS) + 1) + "|"]
    lines += ["", "Samples drawn with k Euler steps (mean over the first "
              f"{EULER_SEEDS} seeds): root mean squared distance to the adaptive solver's samples "
              "from the same noise (the discretization error; straight paths make it small):", "",
              *header]
    for name, table in euler.items():
      if "rmse_mean" in table:
        lines.append(f"| {name} | " + " | ".join(f"{w:.4f}" for w in table["rmse_mean"]) + " |")
    lines += ["", "and their 2-Wasserstein distance to 2,500 test points (w2_reference is its "
              "floor: sampling noise of the mode counts):", "", *header]
    for name, table in euler.items():
      lines.append(f"| {name} | " + " | ".join(f"{w:.3f}" for w in table["w2_mean"]) + " |")
  found = results["facts"]
  lines += ["", f"Backend {found['backend']} ({found['device']}), jax {found['jax']}, "
            f"{found['seconds']:.0f} s in all."]
  return "\n".join(lines) + "\n"

