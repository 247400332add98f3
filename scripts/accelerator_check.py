"""Checks and times what an accelerator is for, on whatever backend JAX has.

    python scripts/accelerator_check.py [--small] [--out=runs/accelerator]

Writes accelerator.md (a table) and accelerator.json into --out: the backend and device; a
float32 SAG run on synthetic n = 1,000,000, p = 100 (steps/s, E - E*); a 4,096-run SAG step-size
sweep in one program (runs/s, run-steps/s); the digits MLP (samples/s, one seed and 8 vmapped
seeds); the checkpoint and resume path with the state on the device. --small runs it in seconds
on a CPU. A check that fails is reported in the table and the others still run.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/accelerator", "Output directory (results/bench for the record).")
flags.DEFINE_bool("small", False, "Small sizes: seconds on a CPU.")
flags.DEFINE_list("checks", None, "The checks to run (default: all): sag, step_time, sweep, "
                  "scaling, mlp, data_parallel, checkpoint.")
flags.DEFINE_list("unrolls", None, "step_time: the unrolls to time (default: the size's).")
flags.DEFINE_list("pages", None, "step_time: the page lengths to time (default: the size's).")
flags.DEFINE_list("scaling_runs", None, "scaling: the numbers of runs (default: the size's).")


def main(argv):
  del argv
  from configs import mlp_digits
  from deepfound.benchmarks.accelerator import parse_options, run_check
  from deepfound.cli import fail

  f = flags.FLAGS
  try:
    checks, sizes = parse_options(f.small, f.checks, unrolls=f.unrolls, pages=f.pages,
                                  scaling_runs=f.scaling_runs)
  except ValueError as e:
    fail(str(e))
  config = mlp_digits.get_config("sgd")
  config.optim.schedule = "constant"
  run_check(flags.FLAGS.out, flags.FLAGS.small, config, " ".join(["python"] + sys.argv),
            log=lambda line: print(line, file=sys.stderr, flush=True), sizes=sizes, checks=checks)
  print(open(os.path.join(flags.FLAGS.out, "accelerator.md")).read())


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
