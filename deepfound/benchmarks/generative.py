"""Section 17.4's targets, measured: many seeds of a generative model in one vmapped program.

``seed_runs(config, num_seeds)`` builds the model ``num_seeds`` times (model.seed, model.seed + 1,
...: different initializations) and runs all of them, each with its own sampling key, as one
``jax.vmap`` of ``driver.run``: one compile, one program. It returns every seed's last logged
metrics and their mean and standard deviation. ``em_baseline`` fits scikit-learn's
``GaussianMixture`` (EM) to the same training points; ``pca_baseline`` is in the auto-encoder
metrics themselves (``pca_mse``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.benchmarks.cases import expand_cases, facts, load_config, stack_trees
from deepfound.benchmarks.timing import write_results, write_text
from deepfound.experiment import build, precision_dtype, precision_scope, validate
from deepfound.optim import driver
from deepfound.problems.generative import LossFiniteSum, NoisyFiniteSum, PushForward

# The spline flows run at configs/density_2d.py's size (its CPU configuration). RealNVP runs at a
# CPU size (8 couplings of 2 x 64 units, batch 256), not the config's accelerator size (16 of
# 2 x 128, batch 512, 40,000 steps).
REALNVP_CPU = dict(model__num_layers=8, model__hidden=(64, 64), optim__batch_size=256,
                   num_steps=20_000)
LR_10K = 1e-4  # sgd, sag and adam alike on RealNVP (3e-4 sent 2 of 3 sgd seeds to NaN)
# SAG keeps one gradient per sample and parameter: 10,000 samples of the CPU flow (35k parameters
# for RealNVP, 1.4 GB a seed in float32; 61k for the spline flow, 2.4 GB), hence 3 seeds; the
# three rules on the same problem, rate, batch and steps.
REALNVP_10K = dict(REALNVP_CPU, data__num_samples=10_000, optim__batch_size=16,
                   optim__learning_rate=LR_10K, num_steps=20_000)
# Each rule at the best rate of a grid (sgd 3e-4, 1e-3, 3e-3; sag 1e-3, 3e-3, 1e-2; adam 3e-4, 1e-3,
# 3e-3) by kl_gap after 5,000 steps, one seed.
SPLINE_10K_RATES = dict(sgd=1e-3, sag=3e-3, adam=3e-4)
SPLINE_10K = dict(data__num_samples=10_000, optim__batch_size=16, optim__schedule="inverse_time",
                  optim__l0=5_000.0, num_steps=20_000)
# name -> (config module, its argument, overrides). Steps and rates are the configs' unless set.
SINKHORN_5K = dict(num_steps=5_000, log_every=1_000, optim__l0=500.0)
SINKHORN_ABLATION = {
    "": {},
    "_balanced": dict(problem__rho=None),
    "_no_scaling": dict(problem__epsilon_start=None),  # 100 iterations at epsilon from the start
    "_eps1e-2": dict(problem__epsilon=1e-2),
    "_b64": dict(optim__batch_size=64),
    "_b256": dict(optim__batch_size=256),
    "_iters40": dict(problem__sinkhorn_iterations=40),  # 31 of them scale epsilon down
    "_threshold": dict(problem__sinkhorn_iterations=2_000, problem__sinkhorn_threshold=1e-3),
    "_momentum": dict(problem__sinkhorn_momentum=1.3),
}
# MMD on the grid before configs/pushforward_2d.py took a wider generator and optim.ema
NARROW = dict(model__hidden=(128, 128, 128), optim__ema=None, num_steps=40_000)
CASES = {
    "gmm_ring": ("density_2d", "ring,gmm", {}),
    "gmm_grid": ("density_2d", "grid,gmm", {}),
    "flow_ring": ("density_2d", "ring", {}),
    "flow_grid": ("density_2d", "grid", {}),
    "flow_ring_10k_sgd": ("density_2d", "ring", dict(SPLINE_10K, optim__name="sgd",
                                                      optim__learning_rate=SPLINE_10K_RATES["sgd"])),
    "flow_ring_10k_sag": ("density_2d", "ring", dict(SPLINE_10K, optim__name="sag",
                                                      optim__learning_rate=SPLINE_10K_RATES["sag"])),
    "flow_ring_10k_adam": ("density_2d", "ring", dict(SPLINE_10K, optim__name="adam",
                                                       optim__learning_rate=SPLINE_10K_RATES["adam"])),
    "flow_digits": ("density_digits", None, {}),
    "realnvp_digits": ("density_digits", None, dict(model__transform="affine",
                                                    model__mixing="alternate")),
    "realnvp_ring": ("density_2d", "ring,realnvp", REALNVP_CPU),
    "realnvp_grid": ("density_2d", "grid,realnvp", REALNVP_CPU),
    "realnvp_ring_10k_sgd": ("density_2d", "ring,realnvp", dict(REALNVP_10K, optim__name="sgd")),
    "realnvp_ring_10k_sag": ("density_2d", "ring,realnvp", dict(REALNVP_10K, optim__name="sag")),
    "realnvp_ring_10k_adam": ("density_2d", "ring,realnvp", dict(REALNVP_10K, optim__name="adam")),
    "mmd_ring": ("pushforward_2d", "ring,mmd", {}),
    # the config: a generator of 3 x 256, its weights' moving average (optim.ema 0.999), 80,000
    # steps
    "mmd_grid": ("pushforward_2d", "grid,mmd", {}),
    # what each part does (3 seeds): the earlier config (3 x 128, the last iterate, 40,000
    # steps), then one change at a time from it, and the config at the earlier length
    "mmd_grid_128_last_iterate": ("pushforward_2d", "grid,mmd", NARROW),
    "mmd_grid_wide": ("pushforward_2d", "grid,mmd", dict(NARROW, model__hidden=(256, 256, 256))),
    "mmd_grid_lr3e-3": ("pushforward_2d", "grid,mmd", dict(NARROW, optim__learning_rate=3e-3)),
    "mmd_grid_ema": ("pushforward_2d", "grid,mmd", dict(NARROW, optim__ema=0.999)),
    "mmd_grid_wide_ema": ("pushforward_2d", "grid,mmd", dict(num_steps=40_000)),
    # configs/pushforward_2d.py's Sinkhorn (unbalanced, epsilon scaled within each solve of 100
    # iterations): the ring on the CPU, the grid on an accelerator.
    "sinkhorn_ring": ("pushforward_2d", "ring", {}),
    "sinkhorn_grid": ("pushforward_2d", "grid", {}),
    # What each Sinkhorn setting does (SINKHORN_ABLATION): the ring config at 5,000 steps with
    # one thing changed.
    **{f"sinkhorn_ring_5k{suffix}": ("pushforward_2d", "ring", dict(SINKHORN_5K, **change))
       for suffix, change in SINKHORN_ABLATION.items()},
    "ae_linear_2": ("autoencoder_digits", "linear", dict(model__code_size=2)),
    "ae_linear_8": ("autoencoder_digits", "linear", dict(model__code_size=8)),
    "ae_linear_16": ("autoencoder_digits", "linear", dict(model__code_size=16)),
    "ae_mlp_8": ("autoencoder_digits", "mlp", dict(model__code_size=8)),
}
# Fewer seeds where a CPU run is long (--num_seeds caps all).
SEEDS = {"flow_ring_10k_sgd": 3, "flow_ring_10k_sag": 3, "flow_ring_10k_adam": 3,
         "realnvp_ring_10k_sgd": 3, "realnvp_ring_10k_sag": 3, "realnvp_ring_10k_adam": 3,
         "mmd_grid_wide": 3, "mmd_grid_lr3e-3": 3, "mmd_grid_ema": 3, "mmd_grid_wide_ema": 3,
         **{f"sinkhorn_ring_5k{suffix}": 2 for suffix in SINKHORN_ABLATION}}
GROUPS = {
    "cheap": ["gmm_ring", "gmm_grid", "ae_linear_2", "ae_linear_8", "ae_linear_16", "ae_mlp_8",
              "mmd_ring", "mmd_grid"],
    "slow": ["flow_ring", "flow_grid", "flow_digits", "realnvp_digits", "flow_ring_10k_adam",
             "flow_ring_10k_sgd", "flow_ring_10k_sag", "realnvp_ring", "realnvp_grid",
             "realnvp_ring_10k_adam", "realnvp_ring_10k_sgd", "realnvp_ring_10k_sag",
             "sinkhorn_ring"],
    "accelerator": ["sinkhorn_grid"],  # 10 seeds x 40,000 Sinkhorn steps of 256: hours on a CPU
}
GROUPS["sinkhorn_ablation"] = [f"sinkhorn_ring_5k{suffix}" for suffix in SINKHORN_ABLATION]
GROUPS["all"] = GROUPS["cheap"] + GROUPS["slow"]
SHOWN = ("objective", "test_nll", "kl_gap", "modes_captured", "high_quality_fraction", "mode_kl",
         "reconstruction_mse", "pca_mse")


def case_names(entries: list[str]) -> list[str]:
  """The cases of ``entries`` (case or group names); a ValueError names unknown ones."""
  return expand_cases(entries, GROUPS, CASES)


def case_config(name: str, steps_scale: float = 1.0) -> ml_collections.ConfigDict:
  """The config of case ``name``, its num_steps times ``steps_scale``."""
  module, arg, overrides = CASES[name]
  return load_config(module, arg, overrides, steps_scale)


SNAPSHOT = "generated_snapshot"  # the extra of a push-forward's log points that seed_runs adds
SNAPSHOT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # the points of training whose samples are kept


def _with_snapshots(problem: PushForward, num: int) -> PushForward:
  """``problem`` whose log points also record h_theta of its first ``num`` evaluation latents."""
  inner = problem.metrics_fn

  def metrics_fn(params, problem):
    return dict(inner(params, problem), **{SNAPSHOT: problem.generate(params,
                                                                       problem.eval_latents[:num])})

  return dataclasses.replace(problem, metrics_fn=metrics_fn)


def seed_runs(config: ml_collections.ConfigDict, num_seeds: int,
              snapshot_samples: int = 0) -> dict[str, Any]:
  """``num_seeds`` runs of ``config`` (initialization and sampling seeds 0, 1, ...) in one program.

  Returns dict(per_seed={metric: [values]}, diverged (seeds whose objective is not finite),
  mean={...}, sd={...} (over the other seeds), run_seconds, compile_s, steps_per_second (of all
  seeds together), problem, final_params) with the metrics of the last log point. With
  ``snapshot_samples`` > 0 and a push-forward model, also snapshots=dict(step=[...],
  samples=[...]): seed 0's generated points (that many fixed latents) at the log points nearest
  to ``SNAPSHOT_FRACTIONS`` of training, recorded inside the same program.
  """
  validate(config)
  with precision_scope(config.precision):
    problems = []
    for offset in range(num_seeds):
      seeded = ml_collections.ConfigDict(config.to_dict())
      seeded.model.seed = config.model.seed + offset
      problems.append(build.build_problem(seeded))
    problem = problems[0]  # the data are the same for every seed; only the parameters differ
    if snapshot_samples and isinstance(problem, PushForward):
      problem = _with_snapshots(problem, snapshot_samples)
    params = stack_trees([p.init_params() for p in problems])
    method = build.build_method(config)
    resolved = build.resolve_hyperparameters(config, build.problem_constants(problem))
    hyper = driver.hyperparameters(**resolved, dtype=precision_dtype(config.precision))
    keys = jax.vmap(jax.random.PRNGKey)(config.seed + jnp.arange(num_seeds))

    def one(problem, key, start):
      return driver.run(problem, method, hyper, key, start, num_steps=config.num_steps,
                        log_every=config.log_every)

    program = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    tic = time.perf_counter()
    compiled = program.lower(problem, keys, params).compile()
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    states, points = compiled(problem, keys, params)
    points = jax.device_get(points)
    run_seconds = time.perf_counter() - tic
  extras = dict(points.extras or {})
  steps = np.asarray(points.step)[0]
  snapshots = None
  if SNAPSHOT in extras:
    generated = np.asarray(extras.pop(SNAPSHOT))[0]  # seed 0: (log points, samples, d)
    picked = sorted({int(np.argmin(np.abs(steps - f * config.num_steps)))
                     for f in SNAPSHOT_FRACTIONS})
    snapshots = dict(step=[int(steps[k]) for k in picked],
                     samples=[generated[k].tolist() for k in picked])
  last = dict(objective=np.asarray(points.objective)[:, -1])
  last.update({name: np.asarray(values)[:, -1] for name, values in extras.items()})
  if driver.selects(problem) is not None:  # the iterate each seed reports: its best log point's
    with precision_scope(config.precision):
      final = jax.jit(jax.vmap(problem.final_metrics))(driver.final_params(states))
    last.update({name: np.asarray(value) for name, value in final.items()})
    last["selected_step"] = np.asarray(states.best.step, np.float64)
  # A seed whose objective is not finite diverged: counted apart, left out of the statistics
  # (its mode metrics would count as zeros otherwise).
  finite = np.isfinite(last["objective"])
  kept = {k: v[finite] for k, v in last.items()}
  return dict(
      per_seed={k: v.tolist() for k, v in last.items()},
      diverged=int(np.sum(~finite)),
      mean={k: float(np.nanmean(v)) if v.size else float("nan") for k, v in kept.items()},
      sd={k: float(np.nanstd(v)) if v.size else float("nan") for k, v in kept.items()},
      curves=dict(step=steps.tolist(), **{k: np.asarray(v).tolist() for k, v in extras.items()},
                  objective=np.asarray(points.objective).tolist()),
      run_seconds=run_seconds, compile_s=compile_s,
      steps_per_second=num_seeds * config.num_steps / run_seconds,
      problem=problem, final_params=driver.final_params(states),
      **({} if snapshots is None else dict(snapshots=snapshots)),
  )


GRID_POINTS = 120  # per axis, of the log-density picture
IMAGE_SAMPLES = 64  # samples (and test images) kept of an image model with a sampler
SNAPSHOT_SAMPLES = 1_000  # generated points per training snapshot of a push-forward


def picture_data(problem, params, num_samples: int = 2_500, seed: int = 0) -> dict[str, Any]:
  """What the 2-D pictures show of one fitted model (``params`` of one seed): its samples, the
  test points, and for a density model its log-density on a grid over the data's box."""
  out = dict(test=np.asarray(problem.test_samples[:num_samples]).tolist())
  images = problem.test_samples.shape[-1] != 2
  if images and isinstance(problem, LossFiniteSum | NoisyFiniteSum) and problem.sample_fn is not None:
    # An image model with a sampler (a flow on digits): a page of its samples and test images.
    samples = problem.sample(params, jax.random.PRNGKey(seed), IMAGE_SAMPLES)
    return dict(test=np.asarray(problem.test_samples[:IMAGE_SAMPLES]).tolist(),
                samples=np.asarray(samples).tolist())
  samplers = (LossFiniteSum, PushForward)
  if not isinstance(problem, samplers) or images:
    return out
  try:
    samples = problem.sample(params, jax.random.PRNGKey(seed), num_samples)
  except TypeError:  # a finite sum without a sampler (an auto-encoder)
    return out
  out["samples"] = np.asarray(samples).tolist()
  if isinstance(problem, LossFiniteSum):  # a density model: -sample_loss is log rho
    test = np.asarray(problem.test_samples)
    low, high = test.min(axis=0), test.max(axis=0)
    pad = 0.15 * (high - low)
    axes = [np.linspace(low[k] - pad[k], high[k] + pad[k], GRID_POINTS) for k in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="xy"), axis=-1).reshape(-1, 2)
    log_density = -jax.vmap(problem.sample_loss, (None, 0))(params, jnp.asarray(grid, test.dtype))
    out.update(grid_x=axes[0].tolist(), grid_y=axes[1].tolist(),
               log_density=np.asarray(log_density).reshape(GRID_POINTS, GRID_POINTS).tolist())
  return out


def em_baseline(samples: np.ndarray, test_samples: np.ndarray, num_components: int,
                seed: int = 0) -> dict[str, float]:
  """scikit-learn's GaussianMixture (EM, full covariances, k-means start) on the same points:
  its average train and test log-likelihoods and its fit time."""
  from sklearn.mixture import GaussianMixture

  tic = time.perf_counter()
  mixture = GaussianMixture(num_components, covariance_type="full", tol=1e-6, max_iter=1000,
                            n_init=3, random_state=seed).fit(samples)
  seconds = time.perf_counter() - tic
  return dict(train_log_likelihood=float(mixture.score(samples)),
              test_log_likelihood=float(mixture.score(test_samples)), seconds=seconds,
              converged=bool(mixture.converged_), iterations=int(mixture.n_iter_))


# ----------------------------------------------------------------------------------------------
# The benchmark over the cases (scripts/bench_generative.py)


def run_cases(names: list[str], out: str, num_seeds: int, steps_scale: float = 1.0,
              merge: bool = False, render_only: bool = False, out_name: str = "bench",
              command: str = "", log: Callable[[str], None] = print) -> dict:
  """Each case of ``names`` over min(``num_seeds``, its ``SEEDS``) seeds in one program
  (``seed_runs``; seed 0's pictures, and EM on the GMM cases); ``out_name``.json and .md in
  ``out`` rewritten after each case (a long list cut short keeps its results), with the cases of
  an existing ``out_name``.json where ``merge``. ``render_only``: rewrites the .md from the
  existing .json, running nothing."""
  start = time.perf_counter()
  results = dict(cases={}, em={})
  existing = os.path.join(out, out_name + ".json")
  if (merge or render_only) and os.path.exists(existing):
    with open(existing) as f:
      results.update({k: v for k, v in json.load(f).items() if k in ("cases", "em", "facts")})
  if render_only:
    write_text(existing[:-len(".json")] + ".md", markdown(results, command))
    return results
  for name in names:
    config = case_config(name, steps_scale)
    seeds = min(num_seeds, SEEDS.get(name, num_seeds))
    run = seed_runs(config, seeds, snapshot_samples=SNAPSHOT_SAMPLES)
    problem, final = run.pop("problem"), run.pop("final_params")
    with precision_scope(config.precision):
      pictures = picture_data(problem, jax.tree.map(lambda leaf: leaf[0], final))
    if "snapshots" in run:
      pictures["snapshots"] = run.pop("snapshots")
    results["cases"][name] = dict(run, rule=config.optim.name, num_steps=config.num_steps,
                                  command=command, num_seeds=seeds,
                                  config=json.loads(config.to_json()), pictures=pictures)
    log(f"{name}: " + ", ".join(f"{k} {run['mean'][k]:.4g}+-{run['sd'][k]:.2g}"
                                for k in SHOWN if k in run["mean"])
        + f" ({run['run_seconds']:.0f} s)")
    if config.model.name == "gmm":
      results["em"][name] = em_baseline(np.asarray(problem.samples, np.float64),
                                        np.asarray(problem.test_samples, np.float64),
                                        config.model.num_components)
    results["facts"] = facts(start, num_seeds=num_seeds)
    base = write_results(out, out_name, results, markdown(results, command), indent=1)
    log(f"wrote {base}.md and {base}.json")
  return results


def markdown(results: dict, command: str) -> str:
  """bench.md: a row per case, mean +- sd over its seeds of the last logged metrics; the GMMs
  against EM."""
  commands = sorted({r.get("command", command) for r in results["cases"].values()})
  lines = ["# Section 17.4 over seeds\n", "Made by " + ", then ".join(f"`{c}`" for c in commands)
           + " (--merge keeps the cases of earlier runs).\n",
           "Mean +- sd over seeds of the last logged point (all seeds of a case in one vmapped program; "
           "seeds that diverged, a non-finite objective, are counted apart and left out).\n"]
  lines.append("| case | rule | seeds (diverged) | steps | " + " | ".join(SHOWN) + " | seeds x steps/s |")
  lines.append("|---" * (len(SHOWN) + 5) + "|")
  for name, r in results["cases"].items():
    cells = [f"{r['mean'][k]:.4g} +- {r['sd'][k]:.2g}" if k in r["mean"] else "" for k in SHOWN]
    diverged = r.get("diverged", sum(v is None for v in r["per_seed"]["objective"]))
    lines.append(f"| {name} | {r['rule']} | {r['num_seeds']} ({diverged}) | {r['num_steps']} | "
                 + " | ".join(cells)
                 + f" | {r['steps_per_second']:,.0f} |")
  selected = {name: r for name, r in results["cases"].items() if "selected_step" in r["mean"]}
  if selected:
    lines += ["", "Cases that hold out a validation set and report, per seed, the iterate of the "
              "best validation NLL (its log point's step; NLLs in nats per image, bits per "
              "dimension of the discrete pixels):", "",
              "| case | selected step | final_valid_nll | final_test_nll | final_test_bits_per_dim "
              "| last test_nll | last test_bits_per_dim |", "|---" * 7 + "|"]
    for name, r in selected.items():
      cells = [f"{r['mean'][k]:.4g} +- {r['sd'][k]:.2g}" if k in r["mean"] else ""
               for k in ("selected_step", "final_valid_nll", "final_test_nll",
                         "final_test_bits_per_dim", "test_nll", "test_bits_per_dim")]
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
  if results.get("em"):
    lines += ["", "GMM by our rules against scikit-learn's EM (GaussianMixture, full covariances, "
              "k-means start, n_init 3, tol 1e-6) on the same 100,000 training points; average "
              "log-likelihood in nats:", "",
              "| case | EM train | ours train (mean, worst seed) | ours - EM (mean, worst) | seeds within "
              "1e-3 of EM or above | EM test | ours test (mean) |", "|---|---|---|---|---|---|---|"]
    for name, em in results["em"].items():
      ours = [-v for v in results["cases"][name]["per_seed"]["objective"]]
      test = [-v for v in results["cases"][name]["per_seed"]["test_nll"]]
      gaps = [o - em["train_log_likelihood"] for o in ours]
      close = sum(g >= -1e-3 for g in gaps)
      lines.append(f"| {name} | {em['train_log_likelihood']:.5f} | {sum(ours) / len(ours):.5f}, "
                   f"{min(ours):.5f} | {sum(gaps) / len(gaps):+.5f}, {min(gaps):+.5f} | "
                   f"{close} of {len(gaps)} | {em['test_log_likelihood']:.5f} | "
                   f"{sum(test) / len(test):.5f} |")
  found = results["facts"]
  lines += ["", f"Backend {found['backend']} ({found['device']}), jax {found['jax']}, "
            f"{found['seconds']:.0f} s in all."]
  return "\n".join(lines) + "\n"
