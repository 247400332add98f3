"""Section 17.4.3's targets, measured over seeds: python scripts/bench_gan.py [--cases=...]

Each case runs --num_seeds initializations and sampling seeds of one GAN config in one vmapped
program (deepfound/benchmarks/gans.py) and reports the last log point's mode metrics on 2,500
samples (modes captured, high-quality fraction, KL of the mode histogram from uniform): mean and
sd over the seeds, a diverged seed counting as 0 modes. PacGAN's Table 1 is the anchor: GAN ring
6.3 +- 0.5 modes / 98.2 % high quality, grid 17.3 +- 0.8 / 94.8 %; PacGAN2 ring 7.9 +- 0.1 / 95.6 %,
grid 23.8 +- 0.7 / 91.3 %. Writes bench.md and bench.json into --out (results/gans regenerates the
committed copy); bench.json keeps seed 0's samples at every log point for the pictures
(scripts/gan_figures.py).
"""

import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/gans", "Output directory (results/gans regenerates the committed one).")
flags.DEFINE_list("cases", ["cpu"], "Case names, or the groups cpu, schemes, all (these at a "
                  "CPU size), full (PacGAN's networks: for an accelerator).")
flags.DEFINE_integer("num_seeds", 10, "Seeds per case, run as one vmapped program.")
flags.DEFINE_float("steps_scale", 1.0, "Multiplies every case's num_steps (quick checks: 0.01).")
flags.DEFINE_bool("merge", False, "Keep the other cases of an existing --out/bench.json.")
flags.DEFINE_string("sweep", None, "A case whose learning rates to sweep instead: a grid of "
                    "generator x discriminator rates x seeds in one vmapped program (sweep.json).")
flags.DEFINE_list("sweep_rates", ["3e-5", "1e-4", "3e-4", "1e-3"], "The sweep's rates (both players).")
flags.DEFINE_integer("sweep_seeds", 3, "Seeds per rate pair in --sweep.")

# PacGAN's networks (4 x 400 generator, 3 x 200 discriminator) cost about 6 GFLOP a step for 10
# seeds: hours on a 2-core CPU. The CPU cases shrink them (3 x 128 and 2 x 128) and the run
# (configs/gan_2d.py's adam settings and minibatches of 100 packs otherwise).
CPU = dict(model__hidden=(128, 128, 128), model__discriminator_hidden=(128, 128),
           num_steps=30_000, log_every=3_000)
# PacGAN's own networks and run length (configs/gan_2d.py), for an accelerator.
FULL = dict(num_steps=30_000, log_every=3_000)
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
}
GROUPS = {
    "cpu": ["ring_js", "ring_js_pack2", "grid_js", "grid_js_pack2"],
    "schemes": ["ring_js_simultaneous", "ring_js_extragradient", "ring_js_optimistic",
                "ring_wgan_gp", "ring_wgan_clip", "ring_js_svre", "ring_wgan_gp_b05"],
    "full": ["grid_js_pack2_full", "grid_js_full", "ring_js_full", "ring_js_pack2_full",
             "grid_js_svre_full", "grid_js_extragradient_full"],
}
GROUPS["all"] = GROUPS["cpu"] + GROUPS["schemes"]
SHOWN = ("modes_captured", "high_quality_fraction", "mode_kl")
KEPT_SAMPLES = 1_000  # seed 0's generated points kept at every log point, for the pictures


def case_config(name: str, steps_scale: float = 1.0):
  arg, overrides = CASES[name]
  config = importlib.import_module("configs.gan_2d").get_config(arg)
  for key, value in overrides.items():
    group, _, field = key.rpartition("__")
    node = config
    for part in group.split("__") if group else ():
      node = node[part]
    node[field] = value
  steps = max(config.log_every,
              int(config.num_steps * steps_scale) // config.log_every * config.log_every)
  config.num_steps = steps
  return config


def _markdown(results: dict) -> str:
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
  facts = results["facts"]
  lines += ["", f"Backend {facts['backend']} ({facts['device']}), jax {facts['jax']}, "
            f"{facts['seconds']:.0f} s for the last invocation."]
  return "\n".join(lines) + "\n"


def _maxout(config: dict) -> str:
  pieces = config["model"].get("maxout_pieces", 1)
  return f" maxout {pieces}" if pieces > 1 else ""


def main(argv):
  del argv
  from deepfound.benchmarks.gans import game_seed_runs

  if flags.FLAGS.sweep:
    return _sweep(flags.FLAGS.sweep)
  names = []
  for entry in flags.FLAGS.cases:
    names += GROUPS.get(entry, [entry])
  unknown = [n for n in names if n not in CASES]
  if unknown:
    fail(f"--cases: unknown {', '.join(unknown)}; expected {', '.join([*GROUPS, *CASES])}")
  start = time.perf_counter()
  results = dict(cases={})
  existing = os.path.join(flags.FLAGS.out, "bench.json")
  if flags.FLAGS.merge and os.path.exists(existing):
    with open(existing) as f:
      results["cases"].update(json.load(f)["cases"])
  for name in names:
    config = case_config(name, flags.FLAGS.steps_scale)
    run = game_seed_runs(config, flags.FLAGS.num_seeds, keep_samples=KEPT_SAMPLES)
    samples = run.pop("samples")
    results["cases"][name] = dict(run, num_steps=config.num_steps, num_seeds=flags.FLAGS.num_seeds,
                                  command=" ".join(["python"] + sys.argv),
                                  config=json.loads(config.to_json()),
                                  samples=samples.round(3).tolist())
    print(f"{name}: " + ", ".join(f"{k} {run['mean'][k]:.3g}+-{run['sd'][k]:.2g}" for k in SHOWN)
          + f" ({run['run_seconds']:.0f} s)", file=sys.stderr)
    _write(results, start)


def _sweep(name: str) -> None:
  """--sweep: modes captured over a grid of both players' learning rates, one program."""
  import jax

  from deepfound.benchmarks.gans import game_rate_sweep
  from deepfound.strict_json import dumps

  if name not in CASES:
    fail(f"--sweep: unknown case {name}; expected one of {', '.join(CASES)}")
  config = case_config(name, flags.FLAGS.steps_scale)
  rates = [float(r) for r in flags.FLAGS.sweep_rates]
  result = game_rate_sweep(config, rates, rates, flags.FLAGS.sweep_seeds)
  result.update(case=name, num_steps=config.num_steps, command=" ".join(["python"] + sys.argv),
                backend=jax.default_backend())
  os.makedirs(flags.FLAGS.out, exist_ok=True)
  path = os.path.join(flags.FLAGS.out, "sweep.json")
  with open(path + ".tmp", "w") as f:
    f.write(dumps(result, indent=1) + "\n")
  os.replace(path + ".tmp", path)
  modes = result["last"]["modes_captured"]
  print(f"wrote {path}: {result['runs']} runs in {result['run_seconds']:.0f} s; mean modes by "
        f"(generator, discriminator) rate: " + str([[round(sum(c) / len(c), 1) for c in row]
                                                   for row in modes]), file=sys.stderr)


def _write(results: dict, start: float) -> None:
  import jax

  from deepfound.strict_json import dumps

  results["facts"] = dict(backend=jax.default_backend(), device=jax.devices()[0].device_kind,
                          jax=jax.__version__, seconds=time.perf_counter() - start)
  os.makedirs(flags.FLAGS.out, exist_ok=True)
  base = os.path.join(flags.FLAGS.out, "bench")
  for suffix, text in ((".json", dumps(results, indent=1) + "\n"), (".md", _markdown(results))):
    with open(base + suffix + ".tmp", "w") as f:
      f.write(text)
    os.replace(base + suffix + ".tmp", base + suffix)
  print(f"wrote {base}.md and {base}.json", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
