"""Costs of section 17.2: python scripts/bench_autodiff.py  (writes results/autodiff/)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/autodiff",
                    "Output directory (results/autodiff regenerates the committed one).")


def main(argv):
  del argv
  from deepfound.benchmarks.autodiff import run_benchmark

  run_benchmark(flags.FLAGS.out, command=" ".join(["python"] + sys.argv))


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
