"""Throughput of net training against PyTorch: python scripts/bench_nets.py (results/bench/nets.md).

Needs PyTorch, which is not a dependency: `pip install torch==2.13.0` (a CPU build on these
machines).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/bench",
                    "Output directory (results/bench regenerates the committed one).")


def main(argv):
  del argv
  from deepfound.benchmarks.timing import prepare_torch

  if problem := prepare_torch(""):
    fail(problem)
  from configs import mlp_digits
  from deepfound.benchmarks.nets import run_benchmark

  config = mlp_digits.get_config("sgd")
  config.optim.schedule = "constant"
  results = run_benchmark(flags.FLAGS.out, " ".join(["python"] + sys.argv), config)
  print(f"ours {results['ours_samples_per_second']:,.0f} samples/s, torch "
        f"{results['torch_samples_per_second']:,.0f} (x{results['ratio']:.2f}); 8 seeds "
        f"x{results['ratio_8_seeds']:.2f}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
