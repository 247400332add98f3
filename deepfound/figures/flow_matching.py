"""Pictures of flow matching and score matching (scripts/flow_matching_figures.py).

The model pictures come from single-seed trainings made here (``train_snapshots``: the driver in
chunks, the parameters kept at each snapshot), so they show one seed; the side-by-side table of
every 2-D model of 17.4 comes from the two benchmarks' bench.json (results/generative and
results/flow_matching), mean +- sd over their seeds.

* ``samples_over_training``: ODE samples of the ring and the grid at the snapshots.
* ``couplings``: the learned velocity at t = 0.5 and 64 ODE paths from t = 0 to 1, independent
  against OT coupling, with the paths' straightness.
* ``score_error``: the score model's error against the exact score of the noised ring, as a
  function of t, at the snapshots (it falls as training goes on).
* ``digits``: 100 flow-matching samples of the 8x8 digits beside 100 real ones.
* ``models_2d``: modes and high-quality fraction of every 17.4 model and of flow and score
  matching, with the anchors.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from deepfound.data.mixtures import MIXTURES, mode_metrics
from deepfound.figures import io
from deepfound.figures.common import mark_modes
from deepfound.models import flow_matching as fm

PATHS = 64


def train_snapshots(config: ml_collections.ConfigDict, snapshots: list[int]) -> tuple[Any, list]:
  """(problem, [params at each snapshot step]) of one run of ``config`` (snapshots ascending,
  each a multiple of config.log_every)."""
  from deepfound.experiment import build, precision_dtype, precision_scope, validate
  from deepfound.optim import driver

  validate(config)
  with precision_scope(config.precision):
    problem = build.build_problem(config)
    method = build.build_method(config)
    resolved = build.resolve_hyperparameters(config, build.problem_constants(problem))
    hyper = driver.hyperparameters(**resolved, dtype=precision_dtype(config.precision))
    state = driver.init_state(problem, method, hyper, jax.random.PRNGKey(config.seed))
    kept, done = [], 0
    for step in snapshots:
      if step > done:
        logs = (step - done) // config.log_every
        state, _ = driver.run_chunk_jit(problem, method, hyper, state, num_logs=logs,
                                        log_every=config.log_every)
        done = step
      kept.append(driver.reported_params(state))
  return problem, kept


def samples_over_training(out: str, runs: dict[str, tuple[Any, list, list[int]]]) -> dict:
  """One row per data set: ODE samples (2,500, adaptive Tsit5) at each snapshot."""
  rows = len(runs)
  cols = max(len(steps) for _, _, steps in runs.values())
  fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
  numbers = {}
  for r, (name, (problem, params, steps)) in enumerate(runs.items()):
    mixture = MIXTURES[name]
    numbers[name] = []
    for c, (p, step) in enumerate(zip(params, steps, strict=True)):
      samples = np.asarray(jax.jit(problem.sample, static_argnums=2)(
          p, jax.random.PRNGKey(0), 2_500))
      found = {k: float(v) for k, v in mode_metrics(jnp.asarray(samples), mixture.means,
                                                    mixture.sd).items()}
      numbers[name].append(dict(step=step, **found))
      ax = axes[r][c]
      ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
      mark_modes(ax, mixture)
      ax.set_title(f"{name}, step {step:,}\n{found['modes_captured']:.0f} modes, "
                   f"hq {found['high_quality_fraction']:.2f}", fontsize=8)
      ax.set_aspect("equal")
      ax.set_xticks([]), ax.set_yticks([])
  fig.suptitle("Flow matching (independent coupling): ODE samples over training", fontsize=10)
  io.save(fig, "samples_over_training", out, dict(numbers=numbers))
  return numbers


def couplings(out: str, runs: dict[str, tuple[Any, Any, Any]]) -> dict:
  """The velocity at t = 0.5 and ODE paths (Heun, 64 steps, kept at every step) per coupling."""
  import diffrax

  fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.2), squeeze=False)
  numbers = {}
  for ax, (name, (problem, params, model)) in zip(axes[0], runs.items(), strict=True):
    field = model.field(params)
    noise = jax.random.normal(jax.random.PRNGKey(5), (PATHS, 2))
    times = jnp.linspace(0.0, 1.0, 65)
    term = diffrax.ODETerm(lambda t, y, args, field=field: field(y, t))
    sol = diffrax.diffeqsolve(term, diffrax.Heun(), 0.0, 1.0, 1 / 64, noise,
                              saveat=diffrax.SaveAt(ts=times), max_steps=64)
    paths = np.asarray(problem.to_data(sol.ys))  # (times, PATHS, 2)
    grid = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 17), np.linspace(-2.5, 2.5, 17)), -1)
    grid = grid.reshape(-1, 2)
    arrows = np.asarray(field(jnp.asarray(grid, jnp.float32), 0.5))
    straight = float(fm.straightness(field, jax.random.normal(jax.random.PRNGKey(2), (1000, 2)),
                                     fm.Solver())[0])
    points = np.asarray(problem.to_data(jnp.asarray(grid, jnp.float32)))
    ax.quiver(points[:, 0], points[:, 1], arrows[:, 0], arrows[:, 1], color="0.7", width=0.003)
    for k in range(PATHS):
      ax.plot(paths[:, k, 0], paths[:, k, 1], lw=0.7, alpha=0.8)
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=6, color="k", zorder=3)
    ax.set_title(f"{name}: straightness {straight:.3f}", fontsize=9)
    ax.set_aspect("equal")
    numbers[name] = dict(straightness=straight)
  fig.suptitle("Velocity at t = 0.5 (arrows) and ODE paths from N(0, I) to the ring", fontsize=10)
  io.save(fig, "couplings", out, dict(numbers=numbers))
  return numbers


def score_error(out: str, problem, params: list, steps: list[int], model,
                name: str = "ring") -> dict:
  """s(t)^2 |score - exact|^2 against t on 1,000 test points, one curve per snapshot."""
  times = np.linspace(0.01, 1.0, 40)
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  numbers = {}
  points = problem.test_samples[:1_000]
  for p, step in zip(params, steps, strict=True):
    errors = np.asarray(jax.jit(jax.vmap(lambda t, p=p: jnp.mean(model.errors(p, points, t))))(
        jnp.asarray(times, points.dtype)))
    numbers[str(step)] = errors.tolist()
    ax.semilogy(times, errors, label=f"step {step:,}")
  ax.set_xlabel("t (0: data, 1: noise)")
  ax.set_ylabel("s(t)^2 E|score - exact|^2")
  ax.set_title(f"Denoising score matching (VP) on the {name}: error against the exact score",
               fontsize=9)
  ax.legend(fontsize=8)
  io.save(fig, "score_error", out, dict(times=times.tolist(), errors=numbers))
  return numbers


def digits(out: str, problem, params, real: np.ndarray, summary: dict) -> dict:
  samples = np.asarray(jax.jit(problem.sample, static_argnums=2)(
      params, jax.random.PRNGKey(0), 100))
  fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
  for ax, images, title in ((axes[0], np.clip(samples, 0, 1), "flow matching samples"),
                            (axes[1], real[:100], "real test digits")):
    ax.imshow(io.tile(images, 10, 10, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
  fig.suptitle(", ".join(f"{k} {v:.3g}" for k, v in summary.items()), fontsize=8)
  io.save(fig, "digits", out, dict(metrics=summary))
  return summary


ANCHORS = dict(ring=(8, 0.95), grid=(25, 0.95))
PACGAN = dict(ring=(7.9, 0.956), grid=(23.8, 0.913))  # PacGAN2's table


def models_2d(out: str, generative_bench: str, flow_bench: str) -> dict:
  """Modes and high-quality fraction of every 2-D model of both benchmarks (mean +- sd)."""
  rows = []
  with open(generative_bench) as f:
    for name, case in json.load(f)["cases"].items():
      if name.split("_")[-1] in ANCHORS and "modes_captured" in case["mean"]:
        rows.append((name, name.split("_")[-1], case["mean"]["modes_captured"],
                     case["sd"]["modes_captured"], case["mean"]["high_quality_fraction"],
                     case["sd"]["high_quality_fraction"], case["num_seeds"]))
  with open(flow_bench) as f:
    for name, case in json.load(f)["cases"].items():
      data = name.split("_")[1]
      if data in ANCHORS and "modes_captured" in case["metrics"] and "small" not in name:
        m = case["metrics"]
        rows.append((name, data, m["modes_captured"]["mean"], m["modes_captured"]["sd"],
                     m["high_quality_fraction"]["mean"], m["high_quality_fraction"]["sd"],
                     case["num_seeds"]))
  fig, axes = plt.subplots(2, 2, figsize=(11, 7))
  for c, data in enumerate(ANCHORS):
    mine = [r for r in rows if r[1] == data]
    labels = [r[0] for r in mine]
    for r_axis, (col, sd_col, anchor, pacgan, title) in enumerate((
        (2, 3, ANCHORS[data][0], PACGAN[data][0], "modes captured"),
        (4, 5, ANCHORS[data][1], PACGAN[data][1], "high-quality fraction"))):
      ax = axes[r_axis][c]
      ax.barh(labels, [r[col] for r in mine], xerr=[r[sd_col] for r in mine], color="C0")
      ax.axvline(anchor, color="C3", ls="--", label="target")
      ax.axvline(pacgan, color="C2", ls=":", label="PacGAN2")
      ax.set_title(f"{data}: {title} (mean +- sd over seeds)", fontsize=9)
      ax.tick_params(labelsize=7)
      ax.legend(fontsize=7)
  fig.tight_layout()
  io.save(fig, "models_2d", out, dict(rows=[dict(case=r[0], data=r[1], modes=r[2], modes_sd=r[3],
                                                 high_quality=r[4], high_quality_sd=r[5],
                                                 seeds=r[6]) for r in rows]))
  return dict(rows=len(rows))


def make_all(out: str, steps: int, generative_bench: str, log=print,
             coupled_steps: int = 10_000, digits_steps: int | None = None) -> dict:
  """Every picture: the trainings (``steps`` each for the 2-D models, ``coupled_steps`` for the
  couplings at batch 128, ``digits_steps`` or the config's for the digits), then the drawings."""
  from configs import flow_matching_2d, flow_matching_digits, score_matching_2d
  from deepfound.experiment.flow_matching import dynamics_of

  done = {}
  snapshots = [steps // 10, steps // 3, steps]
  runs = {}
  for name in ("ring", "grid"):
    config = flow_matching_2d.get_config(name)
    config.num_steps, config.log_every = steps, steps // 30
    problem, params = train_snapshots(config, snapshots)
    runs[name] = (problem, params, snapshots)
    log(f"trained flow matching on the {name}")
  done["samples_over_training"] = samples_over_training(out, runs)
  coupled = {}
  for coupling in ("independent", "ot"):
    config = flow_matching_2d.get_config(f"ring,{coupling}")
    config.optim.batch_size, config.num_steps = 128, coupled_steps
    config.log_every = coupled_steps // 10
    problem, (params,) = train_snapshots(config, [coupled_steps])
    coupled[coupling] = (problem, params, dynamics_of(config, problem))
    log(f"trained the {coupling} coupling")
  done["couplings"] = couplings(out, coupled)
  config = score_matching_2d.get_config("ring")
  config.num_steps, config.log_every = steps, steps // 30
  problem, params = train_snapshots(config, snapshots)
  done["score_error"] = score_error(out, problem, params, snapshots, dynamics_of(config, problem))
  log("trained score matching on the ring")
  config = flow_matching_digits.get_config()
  if digits_steps is not None:
    config.num_steps, config.log_every = digits_steps, digits_steps // 10
  problem, (params,) = train_snapshots(config, [config.num_steps])
  final = jax.device_get(jax.jit(problem.final_metrics)(params))
  keep = ("test_bits_per_dim", "classes_covered", "class_kl", "frechet_distance")
  real = np.asarray(problem.to_data(problem.test_samples))
  done["digits"] = digits(out, problem, params, real, {k: float(final[k]) for k in keep})
  log("trained flow matching on the digits")
  flow_bench = os.path.join(out, "bench.json")
  if os.path.exists(generative_bench) and os.path.exists(flow_bench):
    done["models_2d"] = models_2d(out, generative_bench, flow_bench)
  with open(os.path.join(out, "figures.json"), "w") as f:
    f.write(io.dumps(done))
  return done
