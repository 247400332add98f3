"""Benchmark of sweeps: python scripts/bench_sweep.py  (writes results/bench/sweep.{md,json})."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/bench",
                    "Output directory (results/bench regenerates the committed one).")
flags.DEFINE_integer("epochs", 5, "Epochs of every run and fit.")
flags.DEFINE_integer("num_samples", 20_000, "n of the synthetic set.")


def main(argv):
  del argv
  from deepfound.benchmarks.sweep import run_benchmark

  run_benchmark(flags.FLAGS.out, flags.FLAGS.epochs, flags.FLAGS.num_samples,
                command=" ".join(["python"] + sys.argv))


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
