"""Section 17.4.3's targets, measured: many seeds of a GAN in one vmapped program
(``scripts/bench_gan.py``).

``game_seed_runs(config, num_seeds)`` builds the GAN ``num_seeds`` times (model.seed, +1, ...:
different initializations of both players) and runs all of them, each with its own sampling key,
as one ``jax.vmap`` of ``optim.game.run``: one compile, one program. It returns every seed's
last logged metrics (modes captured, high-quality fraction, mode KL on 2,500 samples), their
mean and standard deviation, and the curves. ``run_cases`` runs the cases of ``CASES`` so and
writes bench.json and bench.md; ``game_rate_sweep`` (``sweep_case``: sweep.json) runs a grid of
both players' learning rates x seeds through the sweep package (``deepfound.sweep.runner``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.benchmarks.cases import expand_cases, facts, load_config, stack_trees
from deepfound.benchmarks.timing import write_results, write_text
from deepfound.experiment import build, precision_scope, validate
from deepfound.optim import game
from deepfound.strict_json import dumps
from deepfound.sweep.runner import run_sweep

MODE_METRICS = ("modes_captured", "high_quality_fraction", "mode_kl")
CLASS_METRICS = ("classes_covered", "class_kl", "frechet_distance")

# PacGAN's networks (4 x 400 generator, 3 x 200 discriminator) cost about 6 GFLOP a step for 10
# seeds: hours on a 2-core CPU. The CPU cases shrink them (3 x 128 and 2 x 128) and the run
# (configs/gan_2d.py's adam settings and minibatches of 100 packs otherwise).
CPU = dict(model__hidden=(128, 128, 128), model__discriminator_hidden=(128, 128),
           num_steps=30_000, log_every=3_000)
# PacGAN's own networks and run length (configs/gan_2d.py), for an accelerator.
FULL = dict(num_steps=30_000, log_every=3_000)
# name -> (the argument of configs/gan_2d.py, overrides).
CASES = {
    "ring_js": ("ring", CPU),
    "ring_js_pack2": ("ring,2", CPU),
    "grid_js": ("grid", CPU),
    "grid_js_pack2": ("grid,2", CPU),
    "ring_js_simultaneous": ("ring", dict(CPU, optim__scheme="simultaneous")),
    "ring_js_extragradient": ("ring", dict(CPU, optim__scheme="extragradient")),
    "ring_js_optimistic": ("ring", dict(CPU, optim__scheme="optimistic")),
    "ring_wgan_gp": ("ring", dict(CPU, problem__loss="wgan_gp", optim__discriminator_steps=5)),
    "ring_wgan_clip": ("ring", dict(CPU, problem__loss="wgan_clip", optim__discriminator_steps=5)),
    "ring_js_svre": ("ring", dict(CPU, optim__scheme="svre")),
    # Gulrajani et al.'s adam setting for WGAN-GP (beta1 = 0.5, beta2 = 0.9), as configs/gan_mnist.py
    "ring_wgan_gp_b05": ("ring", dict(CPU, problem__loss="wgan_gp", optim__discriminator_steps=5,
                                      optim__generator__b1=0.5, optim__generator__b2=0.9,
                                      optim__discriminator__b1=0.5, optim__discriminator__b2=0.9)),
    # PacGAN's discriminator units are maxout units of 5 pieces; the cases above use relu.
    "ring_js_maxout": ("ring", dict(CPU, model__maxout_pieces=5)),
    "grid_js_maxout": ("grid", dict(CPU, model__maxout_pieces=5)),
    "grid_js_pack2_maxout": ("grid,2", dict(CPU, model__maxout_pieces=5)),
    "ring_js_maxout_full": ("ring", dict(FULL, model__maxout_pieces=5)),
    "grid_js_maxout_full": ("grid", dict(FULL, model__maxout_pieces=5)),
    "grid_js_pack2_maxout_full": ("grid,2", dict(FULL, model__maxout_pieces=5)),
    "ring_js_full": ("ring", FULL),
    "ring_js_pack2_full": ("ring,2", FULL),
    "grid_js_full": ("grid", FULL),
    "grid_js_pack2_full": ("grid,2", FULL),
    "grid_js_pack3_full": ("grid,3", FULL),
    "grid_js_pack4_full": ("grid,4", FULL),
    "grid_js_svre_full": ("grid", dict(FULL, optim__scheme="svre")),
    "grid_js_extragradient_full": ("grid", dict(FULL, optim__scheme="extragradient")),
    # the moving average of the generator's weights (optim.generator.ema; Yazici et al. 2019),
    # reported in place of its last iterate: the same games, evaluated at the average
    "grid_js_ema": ("grid", dict(CPU, optim__generator__ema=0.999)),
    "grid_js_pack2_ema": ("grid,2", dict(CPU, optim__generator__ema=0.999)),
    "grid_js_pack2_ema_full": ("grid,2", dict(FULL, optim__generator__ema=0.999)),
    # PacGAN's own harness (fjxmlzn/PacGAN, synthetic_data_experiments/2DGrid_GAN&PacGAN): on
    # top of the sizes and adam settings above, a maxout discriminator (5 pieces), a generator
    # with batch normalization after each hidden layer, weights from N(0, 0.02^2), and both
    # players updated at once from the same point (ALI's training algorithm: simultaneous);
    # they train 400 epochs of the 100,000 points (400,000 steps of 100).
    **{f"{name}_pacgan_full": (arg, dict(FULL, model__maxout_pieces=5, model__generator_norm="batch",
                                         model__init_stddev=0.02, optim__scheme="simultaneous"))
       for name, arg in (("ring_js", "ring"), ("ring_js_pack2", "ring,2"), ("grid_js", "grid"),
                         ("grid_js_pack2", "grid,2"))},
    "grid_js_pack2_pacgan_ema_full": ("grid,2", dict(
        FULL, model__maxout_pieces=5, model__generator_norm="batch", model__init_stddev=0.02,
        optim__scheme="simultaneous", optim__generator__ema=0.999)),
}
GROUPS = {
    "cpu": ["ring_js", "ring_js_pack2", "grid_js", "grid_js_pack2"],
    "schemes": ["ring_js_simultaneous", "ring_js_extragradient", "ring_js_optimistic",
                "ring_wgan_gp", "ring_wgan_clip", "ring_js_svre", "ring_wgan_gp_b05"],
    "full": ["grid_js_pack2_full", "grid_js_full", "ring_js_full", "ring_js_pack2_full",
             "grid_js_svre_full", "grid_js_extragradient_full"],
    "harness": ["grid_js_pack2_pacgan_full", "grid_js_pacgan_full", "ring_js_pacgan_full",
                "ring_js_pack2_pacgan_full"],
}
GROUPS["averaged"] = ["grid_js_ema", "grid_js_pack2_ema"]
GROUPS["all"] = GROUPS["cpu"] + GROUPS["schemes"]
SHOWN = ("modes_captured", "high_quality_fraction", "mode_kl")
KEPT_SAMPLES = 1_000  # seed 0's generated points kept at every log point, for the pictures


def case_names(entries: list[str]) -> list[str]:
  """The cases of ``entries`` (case or group names); a ValueError names unknown ones."""
  return expand_cases(entries, GROUPS, CASES)


def case_config(name: str, steps_scale: float = 1.0) -> ml_collections.ConfigDict:
  """The config of case ``name``, its num_steps times ``steps_scale``."""
  arg, overrides = CASES[name]
  return load_config("gan_2d", arg, overrides, steps_scale)


def _seeded_setups(config: ml_collections.ConfigDict, num_seeds: int) -> list[build.Setup]:
  """The game of ``config`` built for model.seed, model.seed + 1, ...: the same data, each seed's
  initial parameters (call inside the precision's scope)."""
  setups = []
  for offset in range(num_seeds):
    seeded = ml_collections.ConfigDict(config.to_dict())
    seeded.model.seed = config.model.seed + offset
    setups.append(build.build(seeded))
  return setups


def game_seed_runs(config: ml_collections.ConfigDict, num_seeds: int,
                   keep_samples: int = 0) -> dict[str, Any]:
  """``num_seeds`` runs of the game of ``config`` in one program; with ``keep_samples``, seed 0's
  generated points (from the problem's fixed latents) at every log point, for pictures."""
  validate(config)
  with precision_scope(config.precision):
    setups = _seeded_setups(config, num_seeds)
    setup = setups[0]
    problem = setup.problem  # same data for every seed; only the parameters differ
    params = stack_trees([s.problem.init_params() for s in setups])
    keys = jax.vmap(jax.random.PRNGKey)(config.seed + jnp.arange(num_seeds))

    def one(problem, key, start):
      return game.run(problem, setup.method, setup.hyper, key, start,
                      num_steps=config.num_steps, log_every=config.log_every,
                      record_params=bool(keep_samples))

    program = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    tic = time.perf_counter()
    compiled = program.lower(problem, keys, params).compile()
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    states, points = compiled(problem, keys, params)
    points = jax.device_get(points)
    run_seconds = time.perf_counter() - tic
    samples = None
    if keep_samples:  # seed 0's generator at each log point: (log points, keep_samples, d)
      generators = jax.tree.map(lambda leaf: leaf[0], points.params[0])
      latents = problem.test_latents[:keep_samples]
      samples = np.asarray(jax.vmap(lambda g: problem.generate(g, latents))(generators))
  points = points._replace(params=None)
  extras = points.extras or {}
  last = dict(objective=np.asarray(points.objective)[:, -1])
  last.update({name: np.asarray(values)[:, -1] for name, values in extras.items()})
  finite = np.isfinite(last["objective"]) & np.isfinite(last["generator_loss"])
  # A diverged seed counts as zero modes (it generates nothing usable), and is reported apart.
  kept = {k: np.where(finite, v, 0.0) if k in ("modes_captured", "high_quality_fraction") else v
          for k, v in last.items()}
  return dict(
      per_seed={k: v.tolist() for k, v in last.items()},
      diverged=int(np.sum(~finite)),
      mean={k: float(np.nanmean(v)) for k, v in kept.items()},
      sd={k: float(np.nanstd(v)) for k, v in kept.items()},
      curves=dict(step=np.asarray(points.step)[0].tolist(),
                  **{k: np.asarray(v).tolist() for k, v in extras.items()
                     if k in MODE_METRICS + CLASS_METRICS}),
      run_seconds=run_seconds, compile_s=compile_s,
      steps_per_second=num_seeds * config.num_steps / run_seconds, samples=samples,
  )


def game_rate_sweep(config: ml_collections.ConfigDict, generator_rates, discriminator_rates,
                    num_seeds: int, workdir: str | None = None,
                    log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
  """Every (generator rate, discriminator rate, seed) of a grid, run by the sweep package
  (``run_sweep``: one vmapped program where the game's functions do not depend on model.seed):
  the last log point's mode metrics, shaped (generator rates, discriminator rates, seeds).

  Seed s runs with sampling seed ``config.seed + s`` and model.seed ``config.model.seed + s``
  (each seed its own initialization, as ``game_seed_runs``). A diverged run (the sweep's rule: V
  or a player's loss not finite at the last log point, or a player's parameters broken) counts as
  0 modes and 0 high-quality samples. The sweep's outputs go to ``workdir`` (default: a temporary
  directory, removed).
  """
  g_rates = [float(r) for r in generator_rates]
  d_rates = [float(r) for r in discriminator_rates]
  seeds = [config.seed + s for s in range(num_seeds)]
  model_seeds = [config.model.seed + s for s in range(num_seeds)]
  # The runs of a spec are the product of its factors, the last varying fastest: run
  # (i, j, s) is number (i * len(d_rates) + j) * num_seeds + s.
  spec = (f"optim.generator.learning_rate={g_rates}; optim.discriminator.learning_rate={d_rates}; "
          f"zip(seed={seeds}, model.seed={model_seeds})")
  with tempfile.TemporaryDirectory() as scratch:
    where = workdir or os.path.join(scratch, "sweep")
    summary = run_sweep(config, spec, where, log=log)
    with open(os.path.join(where, "sweep.jsonl")) as f:
      rows = sorted((json.loads(line) for line in f), key=lambda row: row["run"])
  shape = (len(g_rates), len(d_rates), num_seeds)
  diverged = np.asarray([row["diverged"] for row in rows]).reshape(shape)
  last = {}
  for name in MODE_METRICS:
    if rows and all(name in row for row in rows):
      values = np.asarray([np.nan if row[name] is None else row[name] for row in rows],
                          float).reshape(shape)
      last[name] = values if name == "mode_kl" else np.where(diverged, 0.0, values)
  runs = int(np.prod(shape))
  return dict(generator_rates=g_rates, discriminator_rates=d_rates, num_seeds=num_seeds,
              runs=runs, diverged=int(diverged.sum()),
              last={k: v.tolist() for k, v in last.items()}, compile_s=summary["compile_s"],
              run_seconds=summary["run_seconds"],
              steps_per_second=runs * config.num_steps / summary["run_seconds"])


# ----------------------------------------------------------------------------------------------
# The benchmark over the cases (scripts/bench_gan.py)


def run_cases(names: list[str], out: str, num_seeds: int, steps_scale: float = 1.0,
              merge: bool = False, command: str = "", log: Callable[[str], None] = print) -> dict:
  """Each case of ``names`` over ``num_seeds`` seeds in one program (``game_seed_runs``, seed
  0's samples kept for the pictures); bench.json and bench.md in ``out`` rewritten after each
  case, with the other cases of an existing bench.json where ``merge``."""
  start = time.perf_counter()
  results = dict(cases={})
  existing = os.path.join(out, "bench.json")
  if merge and os.path.exists(existing):
    with open(existing) as f:
      results["cases"].update(json.load(f)["cases"])
  for name in names:
    config = case_config(name, steps_scale)
    run = game_seed_runs(config, num_seeds, keep_samples=KEPT_SAMPLES)
    samples = run.pop("samples")
    results["cases"][name] = dict(run, num_steps=config.num_steps, num_seeds=num_seeds,
                                  command=command, config=json.loads(config.to_json()),
                                  samples=samples.round(3).tolist())
    log(f"{name}: " + ", ".join(f"{k} {run['mean'][k]:.3g}+-{run['sd'][k]:.2g}" for k in SHOWN)
        + f" ({run['run_seconds']:.0f} s)")
    results["facts"] = facts(start)
    base = write_results(out, "bench", results, markdown(results), indent=1)
    log(f"wrote {base}.md and {base}.json")
  return results


def sweep_case(name: str, out: str, rates: list[float], num_seeds: int, steps_scale: float = 1.0,
               command: str = "", log: Callable[[str], None] = print) -> dict:
  """``game_rate_sweep`` of case ``name`` over ``rates`` for both players; writes sweep.json
  into ``out``."""
  import jax

  config = case_config(name, steps_scale)
  result = game_rate_sweep(config, rates, rates, num_seeds)
  result.update(case=name, num_steps=config.num_steps, command=command,
                backend=jax.default_backend())
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "sweep.json")
  write_text(path, dumps(result, indent=1) + "\n")
  modes = result["last"]["modes_captured"]
  log(f"wrote {path}: {result['runs']} runs in {result['run_seconds']:.0f} s; mean modes by "
      f"(generator, discriminator) rate: " + str([[round(sum(c) / len(c), 1) for c in row]
                                                 for row in modes]))
  return result


def markdown(results: dict) -> str:
  """bench.md: a row per case, mean +- sd over its seeds of the mode metrics."""
  commands = sorted({r["command"] for r in results["cases"].values()})
  lines = ["# GANs on PacGAN's 2-D mixtures, over seeds\n",
           "Made by " + ", then ".join(f"`{c}`" for c in commands) + ".\n",
           "Mean +- sd over seeds of the last log point's mode metrics on 2,500 samples (all seeds of "
           "a case in one vmapped program; a diverged seed counts as 0 modes and 0 high-quality "
           "samples). PacGAN's Table 1: GAN ring 6.3 +- 0.5 modes / 98.2 % high quality, grid 17.3 "
           "+- 0.8 / 94.8 %; PacGAN2 ring 7.9 +- 0.1 / 95.6 %, grid 23.8 +- 0.7 / 91.3 %.\n",
           "| case | loss | scheme | pack | G / D hidden | seeds (diverged) | steps | modes | "
           "high quality | mode KL | seeds x steps/s |", "|---" * 11 + "|"]
  for name, r in results["cases"].items():
    c = r["config"]
    cells = [f"{r['mean'][k]:.3g} +- {r['sd'][k]:.2g}" for k in SHOWN]
    scheme = c["optim"]["scheme"]
    if scheme == "alternating":
      scheme += f" k={c['optim']['discriminator_steps']}"
    lines.append(f"| {name} | {c['problem']['loss']} | {scheme}"
                 f" | {c['problem']['pack']} | {tuple(c['model']['hidden'])} / "
                 f"{tuple(c['model']['discriminator_hidden'])}{_maxout(c)} | "
                 f"{r['num_seeds']} ({r['diverged']}) | "
                 f"{r['num_steps']:,} | " + " | ".join(cells) + f" | {r['steps_per_second']:,.0f} |")
  found = results["facts"]
  lines += ["", f"Backend {found['backend']} ({found['device']}), jax {found['jax']}, "
            f"{found['seconds']:.0f} s for the last invocation."]
  return "\n".join(lines) + "\n"


def _maxout(config: dict) -> str:
  pieces = config["model"].get("maxout_pieces", 1)
  return f" maxout {pieces}" if pieces > 1 else ""
