"""Throughput of VAE training against PyTorch: python scripts/bench_vae.py (results/bench/vae.md).

Our adam training loop of ``configs/vae_mnist.py`` (and its IWAE variant, k = 5) against a plain
PyTorch CPU loop of the same model, batch and bound; see ``deepfound/benchmarks/vae.py``.

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
flags.DEFINE_integer("steps", 200, "Training steps per timed block.")
flags.DEFINE_integer("repeats", 7, "Timed blocks of each loop, interleaved (median reported).")
flags.DEFINE_list("importance_samples", ["1", "5"], "k of the bound: 1 is the VAE, > 1 the IWAE.")
flags.DEFINE_bool("torch_compile", True, "Also time PyTorch with a torch.compile'd loss.")
flags.DEFINE_string("omp_wait_policy", "passive",
                    "OMP_WAIT_POLICY for PyTorch's OpenMP threads ('' keeps libgomp's default, "
                    "active spinning, which stalls on a shared machine); an existing value wins.")


def main(argv):
  del argv
  from deepfound.benchmarks.timing import prepare_torch

  if problem := prepare_torch(flags.FLAGS.omp_wait_policy):
    fail(problem)
  try:
    ks = tuple(int(k) for k in flags.FLAGS.importance_samples)
  except ValueError:
    fail(f"--importance_samples must be integers, got {flags.FLAGS.importance_samples}")
  if flags.FLAGS.steps < 1 or flags.FLAGS.repeats < 1 or not ks or min(ks) < 1:
    fail("--steps, --repeats and every --importance_samples must be >= 1")
  from configs import vae_mnist
  from deepfound.benchmarks.vae import run_benchmark

  results = run_benchmark(flags.FLAGS.out, " ".join(["python"] + sys.argv), vae_mnist.get_config(),
                          steps=flags.FLAGS.steps, repeats=flags.FLAGS.repeats,
                          importance_samples=ks, torch_compile=flags.FLAGS.torch_compile,
                          log=lambda line: print(line, file=sys.stderr))
  for key, variant in results["variants"].items():
    print(f"{key}: ours {variant['ours']['samples_per_second']:,.0f} samples/s, torch "
          f"{variant['torch']['samples_per_second']:,.0f} (x{variant['ratio']:.2f})", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
