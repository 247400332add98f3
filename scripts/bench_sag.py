"""Benchmark of the stochastic optimization core against scikit-learn, on one quiet machine.

    python scripts/bench_sag.py            # writes results/bench/sag.json and results/bench/sag.md

1. Per-step cost of SAG (and SGD, SAGA, SVRG) at n = 2,000 and n = 200,000 (p = 100, float32):
   the ratio must stay near 1 (target <= 1.5), i.e. per-step cost independent of n.
2. SAG seconds per epoch against ``LogisticRegression(solver='sag')`` on the same float32 data
   (n = 200,000, p = 100), same epochs, same step 1/L_max, same L2 weight, both dividing by the
   number of samples seen during the first epoch; with the objective each reaches.
3. SGD and SGA seconds per epoch against ``SGDClassifier(loss='log_loss', average=...)``.
Timings are medians of repeated runs, compilation excluded.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/bench",
                    "Output directory (results/bench regenerates the committed one).")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
flags.DEFINE_integer("epochs", 5, "Epochs for the scikit-learn comparisons.")
flags.DEFINE_integer("large_n", 200_000, "The large n.")


def main(argv):
  del argv
  from deepfound.benchmarks.sag import run_benchmark

  run_benchmark(flags.FLAGS.out, flags.FLAGS.repeats, flags.FLAGS.epochs, flags.FLAGS.large_n,
                command=" ".join(["python"] + sys.argv))


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
