"""Throughput of the digits GAN against PyTorch: python scripts/bench_gan_speed.py (results/bench/gan.md).

Game steps per second of our training loop of ``configs/gan_digits.py`` (alternating, one
discriminator step per generator step, adam for both, batch 64) against a plain PyTorch CPU loop of
the same models, losses, batch and scheme; see ``deepfound/benchmarks/gan_speed.py``.

Needs PyTorch, which is not a dependency: `pip install torch==2.13.0` (a CPU build on these
machines).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/bench",
                    "Output directory (results/bench regenerates the committed one).")
flags.DEFINE_integer("steps", 500, "S: game steps of the short block; the long block has 3 S "
                     "(a rate is the marginal cost 2 S / (T(3 S) - T(S))).")
flags.DEFINE_integer("repeats", 7, "Rounds of interleaved blocks (median reported).")
flags.DEFINE_bool("torch_compile", True, "Also time PyTorch with torch.compile'd losses.")
flags.DEFINE_list("torch_threads", [], "Thread counts of the PyTorch rows (torch.set_num_threads; "
                  "default: one per schedulable core, and 1).")
flags.DEFINE_bool("spin", True, "Also time the eager PyTorch loop alone in a subprocess whose "
                  "OpenMP threads spin (OMP_WAIT_POLICY=active), after the interleaved rounds.")
flags.DEFINE_string("omp_wait_policy", "passive",
                    "OMP_WAIT_POLICY for PyTorch's OpenMP threads ('' keeps libgomp's default, "
                    "active spinning, which stalls on a shared machine); an existing value wins.")


def main(argv):
  del argv
  from deepfound.benchmarks.timing import prepare_torch

  if problem := prepare_torch(flags.FLAGS.omp_wait_policy):
    fail(problem)
  try:
    threads = tuple(int(n) for n in flags.FLAGS.torch_threads)
  except ValueError:
    fail(f"--torch_threads must be integers, got {flags.FLAGS.torch_threads}")
  if flags.FLAGS.steps < 1 or flags.FLAGS.repeats < 1 or any(n < 1 for n in threads):
    fail("--steps, --repeats and every --torch_threads must be >= 1")
  from configs import gan_digits
  from deepfound.benchmarks.gan_speed import run_benchmark

  results = run_benchmark(flags.FLAGS.out, " ".join(["python"] + sys.argv), gan_digits.get_config(),
                          steps=flags.FLAGS.steps, repeats=flags.FLAGS.repeats,
                          torch_compile=flags.FLAGS.torch_compile,
                          torch_threads=threads or None, spin=flags.FLAGS.spin,
                          log=lambda line: print(line, file=sys.stderr))
  for name, rate in results["rates"].items():
    print(f"{name}: {rate['steps_per_second']:,.0f} steps/s", file=sys.stderr)
  print(f"ours / fastest PyTorch ({results['fastest_torch']}): {results['ratio']:.2f}",
        file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
