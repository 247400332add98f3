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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/generative",
                    "Output directory (results/generative regenerates the committed one).")
flags.DEFINE_string("out_name", "bench", "Base name of the .md and .json written into --out.")
flags.DEFINE_list("cases", ["all"], "Case names, or the groups cheap, slow, all.")
flags.DEFINE_integer("num_seeds", 10, "Seeds per case, run as one vmapped program.")
flags.DEFINE_float("steps_scale", 1.0, "Multiplies every case's num_steps (quick checks: 0.01).")
flags.DEFINE_bool("merge", True, "Keep the other cases of an existing --out/--out_name.json "
                  "(--nomerge starts it afresh).")
flags.DEFINE_bool("render_only", False, "Rewrite the .md from the existing .json, running nothing.")


def main(argv):
  del argv
  from deepfound.benchmarks import generative

  f = flags.FLAGS
  try:
    names = generative.case_names(f.cases)
  except ValueError as e:
    fail(f"--cases: {e}")
  generative.run_cases(names, f.out, f.num_seeds, f.steps_scale, f.merge, f.render_only, f.out_name,
                       command=" ".join(["python"] + sys.argv),
                       log=lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
