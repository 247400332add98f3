"""Section 17.4's targets, measured over seeds: python scripts/bench_generative.py [--cases=...]

Each case runs --num_seeds initializations and sampling seeds of one config in one vmapped
program (deepfound/benchmarks/generative.py) and reports the last logged metrics' mean and sd:
GMMs against scikit-learn's EM on the same points, flows (adam at n = 100,000; sgd, sag, adam side
by side at n = 10,000, where SAG's per-sample gradient memory fits), push-forward generators
(MMD, Sinkhorn), linear and MLP auto-encoders against PCA. bench.json also keeps, per 2-D case,
seed 0's samples and log-density grid for the pictures (scripts/generative_figures.py).
Writes bench.md and bench.json into --out (results/generative regenerates the committed copy;
--out_name names another pair, e.g. for an accelerator's share of the cases).
"""

import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/generative",
                    "Output directory (results/generative regenerates the committed one).")
flags.DEFINE_string("out_name", "bench", "Base name of the .md and .json written into --out.")
flags.DEFINE_list("cases", ["all"], "Case names, or the groups cheap, slow, all.")
flags.DEFINE_integer("num_seeds", 10, "Seeds per case, run as one vmapped program.")
flags.DEFINE_float("steps_scale", 1.0, "Multiplies every case's num_steps (quick checks: 0.01).")
flags.DEFINE_bool("merge", False, "Keep the other cases of an existing --out/--out_name.json.")
flags.DEFINE_bool("render_only", False, "Rewrite the .md from the existing .json, running nothing.")

# The flows run at CPU sizes (8 couplings of 2 x 64 units, batch 256): configs/density_2d.py's
# default (16 couplings of 2 x 128, batch 512, 40,000 steps) is for an accelerator.
FLOW_CPU = dict(model__num_layers=8, model__hidden=(64, 64), optim__batch_size=256, num_steps=20_000)
LR_10K = 1e-4  # sgd, sag and adam alike (3e-4 sent 2 of 3 sgd seeds to NaN)
# SAG keeps one gradient per sample and parameter: 10,000 samples of the CPU flow (35k parameters,
# 1.4 GB a seed in float32, hence 3 seeds); the three rules on the same problem, rate and steps.
FLOW_10K = dict(FLOW_CPU, data__num_samples=10_000, optim__batch_size=16,
                optim__learning_rate=LR_10K, num_steps=20_000)
# name -> (config module, its argument, overrides). Steps and rates are the configs' unless set.
CASES = {
    "gmm_ring": ("density_2d", "ring,gmm", {}),
    "gmm_grid": ("density_2d", "grid,gmm", {}),
    "flow_ring": ("density_2d", "ring", FLOW_CPU),
    "flow_grid": ("density_2d", "grid", FLOW_CPU),
    "flow_ring_10k_sgd": ("density_2d", "ring", dict(FLOW_10K, optim__name="sgd")),
    "flow_ring_10k_sag": ("density_2d", "ring", dict(FLOW_10K, optim__name="sag")),
    "flow_ring_10k_adam": ("density_2d", "ring", dict(FLOW_10K, optim__name="adam")),
    "mmd_ring": ("pushforward_2d", "ring", dict(problem__loss="mmd")),
    "mmd_grid": ("pushforward_2d", "grid", dict(problem__loss="mmd")),
    # Sinkhorn runs hundreds of iterations a step: far fewer steps than MMD on a CPU.
    "sinkhorn_ring": ("pushforward_2d", "ring", dict(problem__loss="sinkhorn", num_steps=4_000,
                                                     optim__l0=1_000.0, log_every=500)),
    "sinkhorn_grid": ("pushforward_2d", "grid", dict(problem__loss="sinkhorn", num_steps=1_000,
                                                     log_every=250)),
    "ae_linear_2": ("autoencoder_digits", "linear", dict(model__code_size=2)),
    "ae_linear_8": ("autoencoder_digits", "linear", dict(model__code_size=8)),
    "ae_linear_16": ("autoencoder_digits", "linear", dict(model__code_size=16)),
    "ae_mlp_8": ("autoencoder_digits", "mlp", dict(model__code_size=8)),
}
# Fewer seeds where a CPU run is long (--num_seeds caps all).
SEEDS = {"flow_ring_10k_sgd": 3, "flow_ring_10k_sag": 3, "flow_ring_10k_adam": 3,
         "sinkhorn_ring": 1, "sinkhorn_grid": 1}
GROUPS = {
    "cheap": ["gmm_ring", "gmm_grid", "ae_linear_2", "ae_linear_8", "ae_linear_16", "ae_mlp_8",
              "mmd_ring", "mmd_grid"],
    "slow": ["flow_ring", "flow_grid", "flow_ring_10k_adam", "flow_ring_10k_sgd",
             "flow_ring_10k_sag", "sinkhorn_ring", "sinkhorn_grid"],
}
GROUPS["all"] = GROUPS["cheap"] + GROUPS["slow"]
SHOWN = ("objective", "test_nll", "kl_gap", "modes_captured", "high_quality_fraction", "mode_kl",
         "reconstruction_mse", "pca_mse")


def case_config(name: str, steps_scale: float = 1.0):
  module, arg, overrides = CASES[name]
  config = importlib.import_module(f"configs.{module}").get_config(arg)
  for key, value in overrides.items():
    group, _, field = key.rpartition("__")
    (config[group] if group else config)[field] = value
  steps = max(config.log_every, int(config.num_steps * steps_scale) // config.log_every * config.log_every)
  config.num_steps = steps
  return config


def _markdown(results: dict, command: str) -> str:
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
  facts = results["facts"]
  lines += ["", f"Backend {facts['backend']} ({facts['device']}), jax {facts['jax']}, "
            f"{facts['seconds']:.0f} s in all."]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  import jax
  import numpy as np

  from deepfound.benchmarks.generative import em_baseline, picture_data, seed_runs
  from deepfound.experiment import precision_scope

  names = []
  for entry in flags.FLAGS.cases:
    names += GROUPS.get(entry, [entry])
  unknown = [n for n in names if n not in CASES]
  if unknown:
    fail(f"--cases: unknown {', '.join(unknown)}; expected {', '.join([*GROUPS, *CASES])}")
  start = time.perf_counter()
  results = dict(cases={}, em={})
  existing = os.path.join(flags.FLAGS.out, flags.FLAGS.out_name + ".json")
  if (flags.FLAGS.merge or flags.FLAGS.render_only) and os.path.exists(existing):
    with open(existing) as f:
      results.update({k: v for k, v in json.load(f).items() if k in ("cases", "em", "facts")})
  if flags.FLAGS.render_only:
    with open(existing[:-len(".json")] + ".md", "w") as f:
      f.write(_markdown(results, " ".join(["python"] + sys.argv)))
    return
  for name in names:
    config = case_config(name, flags.FLAGS.steps_scale)
    seeds = min(flags.FLAGS.num_seeds, SEEDS.get(name, flags.FLAGS.num_seeds))
    run = seed_runs(config, seeds)
    problem, final = run.pop("problem"), run.pop("final_params")
    with precision_scope(config.precision):
      pictures = picture_data(problem, jax.tree.map(lambda leaf: leaf[0], final))
    results["cases"][name] = dict(run, rule=config.optim.name, num_steps=config.num_steps,
                                  command=" ".join(["python"] + sys.argv),
                                  num_seeds=seeds, config=json.loads(config.to_json()),
                                  pictures=pictures)
    print(f"{name}: " + ", ".join(f"{k} {run['mean'][k]:.4g}+-{run['sd'][k]:.2g}"
                                  for k in SHOWN if k in run["mean"])
          + f" ({run['run_seconds']:.0f} s)", file=sys.stderr)
    if config.model.name == "gmm":
      results["em"][name] = em_baseline(np.asarray(problem.samples, np.float64),
                                        np.asarray(problem.test_samples, np.float64),
                                        config.model.num_components)
    _write(results, start)  # after every case: a long list that is cut short keeps its results


def _write(results: dict, start: float) -> None:
  import jax

  from deepfound.strict_json import dumps

  device = jax.devices()[0]
  results["facts"] = dict(backend=jax.default_backend(), device=device.device_kind, jax=jax.__version__,
                          seconds=time.perf_counter() - start, num_seeds=flags.FLAGS.num_seeds)
  os.makedirs(flags.FLAGS.out, exist_ok=True)
  base = os.path.join(flags.FLAGS.out, flags.FLAGS.out_name)
  command = " ".join(["python"] + sys.argv)
  for suffix, text in ((".json", dumps(results, indent=1) + "\n"), (".md", _markdown(results, command))):
    with open(base + suffix + ".tmp", "w") as f:
      f.write(text)
    os.replace(base + suffix + ".tmp", base + suffix)
  print(f"wrote {base}.md and {base}.json", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
