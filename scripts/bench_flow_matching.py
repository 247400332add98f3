"""Flow matching and score matching over seeds: python scripts/bench_flow_matching.py [--cases=...]

Each case runs --num_seeds seeds of one config in one vmapped program, then every seed's
end-of-run metrics (deepfound/benchmarks/flow_matching.py): mode metrics, kl_gap, w2,
straightness, score_error, reverse-SDE samples, and for the flow-matching cases on 2-D data the
2-Wasserstein distance reached with 1 ... 128 Euler steps (independent against OT coupling).
Writes bench.md and bench.json into --out (results/flow_matching regenerates the committed copy).
Groups: ring, couplings (independent, ot, sinkhorn at batch 128), grid, rules (adam, sgd,
saga side by side at n = 10,000), digits, all.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/flow_matching",
                    "Output directory (results/flow_matching regenerates the committed one).")
flags.DEFINE_list("cases", ["ring"], "Case names, or the groups ring, couplings, grid, rules, digits, all.")
flags.DEFINE_integer("num_seeds", 10, "Seeds per case, run as one vmapped program.")
flags.DEFINE_float("steps_scale", 1.0, "Multiplies every case's num_steps (quick checks: 0.01).")
flags.DEFINE_bool("merge", True, "Keep the other cases of an existing --out/bench.json "
                  "(--nomerge starts it afresh).")


def main(argv):
  del argv
  from deepfound.benchmarks import flow_matching

  f = flags.FLAGS
  try:
    names = flow_matching.case_names(f.cases)
  except ValueError as e:
    fail(f"--cases: {e}")
  if f.num_seeds < 1 or not f.steps_scale > 0:
    fail("--num_seeds must be >= 1 and --steps_scale > 0")
  flow_matching.run_cases(names, f.out, f.num_seeds, f.steps_scale, f.merge,
                          command=" ".join(["python"] + sys.argv),
                          log=lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
