"""Regenerates the figures of section 17.1 into results/figures/ (PNG + JSON each).

    python scripts/figures.py [--out=results/figures]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402
from deepfound.strict_json import dumps  # noqa: E402

flags.DEFINE_string("out", "runs/figures",
                    "Output directory (results/figures regenerates the committed one).")


def main(argv):
  del argv
  from deepfound.figures.stochastic import make_all

  start = time.perf_counter()
  summary = make_all(flags.FLAGS.out, log=lambda line: print(line, file=sys.stderr, flush=True))
  summary["total_seconds"] = time.perf_counter() - start
  summary["command"] = " ".join(["python"] + sys.argv)
  with open(os.path.join(flags.FLAGS.out, "summary.json"), "w") as f:
    f.write(dumps(summary, indent=2, default=float) + "\n")
  print(f"figures written to {flags.FLAGS.out} in {summary['total_seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
