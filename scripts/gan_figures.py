"""Pictures of section 17.4.3 (GANs) into --out: python scripts/gan_figures.py [--out=results/gans]

Reads --bench (bench.json of scripts/bench_gan.py) and --sweep (its --sweep's sweep.json), trains
the digits GAN (configs/gan_digits.py) for --digits_steps in one program with its parameters
recorded at 4 x --digits_points log points, and with --mnist_workdir restores a configs/gan_mnist.py
run. Writes (PNG each; JSON beside each and figures.json with --json):

  samples_ring, samples_grid  rows = the cases on that data set, columns = first, two middle and last
                              log points: seed 0's generated points over the modes (crosses, 3-sd
                              circles), titled with loss / scheme / pack and modes captured there
  modes_curves                modes captured (top) and high-quality fraction (bottom) over training,
                              one line per case (mean +- 1 sd over seeds), one column per data set
  rate_sweep                  heat maps of the mean modes captured and high-quality fraction over
                              (generator rate, discriminator rate), the value in each cell
  digits_samples              10 x 10 generated 8x8 digits from fixed latents at --digits_points steps,
                              titled with classes covered, class KL and Frechet distance
  digits_curves               those three classifier metrics over training (4 log points a grid)
  mnist_samples               (--mnist_workdir) 100 digits of the latest checkpoint and the run's
                              classifier curves
  mnist_over_training         (--mnist_train) configs/gan_mnist.py trained here for --mnist_steps
                              (default the config's 10,000: about 10 minutes on 2 CPU cores),
                              10 x 10 digits at --digits_points steps, titled as digits_samples

A picture whose input is missing is skipped with a printed line.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402

flags.DEFINE_string("out", "results/gans", "Output directory.")
flags.DEFINE_string("bench", None, "bench.json of scripts/bench_gan.py (default: <out>/bench.json).")
flags.DEFINE_string("sweep", None, "sweep.json of scripts/bench_gan.py --sweep (default: <out>/sweep.json).")
flags.DEFINE_bool("train", True, "Train the digits GAN (digits_samples, digits_curves).")
flags.DEFINE_integer("digits_steps", 10_000, "Generator steps of the digits GAN (configs/gan_digits.py).")
flags.DEFINE_integer("digits_points", 5, "Sample grids of the digits run (its curves log 4 times a grid).")
flags.DEFINE_string("mnist_workdir", None,
                    "Run directory of configs/gan_mnist.py (mnist_samples); none: skipped.")
flags.DEFINE_bool("mnist_train", False, "Train configs/gan_mnist.py here (mnist_over_training; "
                  "needs scripts/fetch_mnist.py first).")
flags.DEFINE_integer("mnist_steps", None, "Generator steps of the MNIST GAN (default: the config's).")
flags.DEFINE_bool("json", False, "Write each picture's numbers beside it (<name>.json) and figures.json.")


def main(argv):
  del argv
  from configs import gan_digits, gan_mnist
  from deepfound.figures import gans

  start = time.perf_counter()
  f = flags.FLAGS
  bench = f.bench or os.path.join(f.out, "bench.json")
  sweep = f.sweep or os.path.join(f.out, "sweep.json")
  summary = gans.make_all(f.out, bench, sweep, gan_digits.get_config() if f.train else None,
                          digits_steps=f.digits_steps,
                          digits_points=max(1, f.digits_points), mnist_workdir=f.mnist_workdir,
                          mnist_config=gan_mnist.get_config() if f.mnist_train else None,
                          mnist_steps=f.mnist_steps,
                          with_json=f.json,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
  print(f"{len(summary['drawn'])} pictures in {f.out} ({', '.join(summary['drawn']) or 'none'}), "
        f"{len(summary['skipped'])} skipped, {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
