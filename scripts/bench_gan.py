"""Section 17.4.3's targets, measured over seeds: python scripts/bench_gan.py [--cases=...]

Each case runs --num_seeds initializations and sampling seeds of one GAN config in one vmapped
program (deepfound/benchmarks/gans.py) and reports the last log point's mode metrics on 2,500
samples (modes captured, high-quality fraction, KL of the mode histogram from uniform): mean and
sd over the seeds, a diverged seed counting as 0 modes. PacGAN's Table 1 is the anchor: GAN ring
6.3 +- 0.5 modes / 98.2 % high quality, grid 17.3 +- 0.8 / 94.8 %; PacGAN2 ring 7.9 +- 0.1 / 95.6 %,
grid 23.8 +- 0.7 / 91.3 %. Writes bench.md and bench.json into --out (results/gans regenerates the
committed copy); bench.json keeps seed 0's samples at every log point for the pictures
(scripts/gan_figures.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/gans", "Output directory (results/gans regenerates the committed one).")
flags.DEFINE_list("cases", ["cpu"], "Case names, or the groups cpu, schemes, all (these at a "
                  "CPU size), full (PacGAN's networks: for an accelerator).")
flags.DEFINE_integer("num_seeds", 10, "Seeds per case, run as one vmapped program.")
flags.DEFINE_float("steps_scale", 1.0, "Multiplies every case's num_steps (quick checks: 0.01).")
flags.DEFINE_bool("merge", True, "Keep the other cases of an existing --out/bench.json "
                  "(--nomerge starts it afresh).")
flags.DEFINE_string("sweep", None, "A case whose learning rates to sweep instead: a grid of "
                    "generator x discriminator rates x seeds in one vmapped program (sweep.json).")
flags.DEFINE_list("sweep_rates", ["3e-5", "1e-4", "3e-4", "1e-3"], "The sweep's rates (both players).")
flags.DEFINE_integer("sweep_seeds", 3, "Seeds per rate pair in --sweep.")


def main(argv):
  del argv
  from deepfound.benchmarks import gans

  f = flags.FLAGS
  command = " ".join(["python"] + sys.argv)

  def log(line):
    print(line, file=sys.stderr)

  if f.sweep:
    if f.sweep not in gans.CASES:
      fail(f"--sweep: unknown case {f.sweep}; expected one of {', '.join(gans.CASES)}")
    try:
      rates = [float(r) for r in f.sweep_rates]
    except ValueError:
      fail(f"--sweep_rates must be numbers, got {','.join(f.sweep_rates)}")
    gans.sweep_case(f.sweep, f.out, rates, f.sweep_seeds, f.steps_scale, command, log)
    return
  try:
    names = gans.case_names(f.cases)
  except ValueError as e:
    fail(f"--cases: {e}")
  gans.run_cases(names, f.out, f.num_seeds, f.steps_scale, f.merge, command, log)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
