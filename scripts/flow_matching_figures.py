"""Pictures of flow matching and score matching into --out:
python scripts/flow_matching_figures.py [--out=results/flow_matching]

Trains single seeds here (deepfound/figures/flow_matching.py; about 15 minutes on 2 CPU cores at
the default --steps): flow matching on the ring and the grid (samples over training), the
independent and OT couplings at batch 128 (velocity fields and ODE paths), score matching on the
ring (its error against the exact score over t, at three points of training) and flow matching on
the digits (samples). Then draws every 2-D model of 17.4 beside flow and score matching from
--generative_bench and <out>/bench.json (scripts/bench_flow_matching.py), when both exist.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("out", "runs/flow_matching",
                    "Output directory (results/flow_matching regenerates the committed one).")
flags.DEFINE_integer("steps", 30_000, "Training steps of the 2-D flow and score models.")
flags.DEFINE_integer("coupled_steps", 10_000, "Training steps of the two couplings (batch 128).")
flags.DEFINE_integer("digits_steps", None, "Training steps on the digits (default: its config's).")
flags.DEFINE_string("generative_bench", "results/generative/bench.json",
                    "bench.json of scripts/bench_generative.py (the 17.4 models).")


def main(argv):
  del argv
  from deepfound.figures import flow_matching

  f = flags.FLAGS
  if f.steps < 30 or f.steps % 30:
    fail(f"--steps must be a positive multiple of 30, got {f.steps}")
  for name in ("coupled_steps", "digits_steps"):
    value = getattr(f, name)
    if value is not None and (value < 10 or value % 10):
      fail(f"--{name} must be a positive multiple of 10, got {value}")
  flow_matching.make_all(f.out, f.steps, f.generative_bench,
                         log=lambda line: print(line, file=sys.stderr),
                         coupled_steps=f.coupled_steps, digits_steps=f.digits_steps)
  print(f"wrote the pictures into {f.out}")


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
