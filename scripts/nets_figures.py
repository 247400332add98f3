"""Pictures of section 17.3 into results/nets/: python scripts/nets_figures.py"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402
from deepfound.strict_json import dumps  # noqa: E402

flags.DEFINE_string("out", "runs/nets",
                    "Output directory (results/nets regenerates the committed one).")


def main(argv):
  del argv
  from configs import mlp_digits, mlp_moons
  from deepfound.figures.nets import make_all

  start = time.perf_counter()
  summary = make_all(flags.FLAGS.out, mlp_digits.get_config, mlp_moons.get_config)
  summary["seconds"] = time.perf_counter() - start
  with open(os.path.join(flags.FLAGS.out, "summary.json"), "w") as f:
    f.write(dumps(summary, indent=2) + "\n")
  print(json.dumps(summary, indent=1), file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
