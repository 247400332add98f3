r"""Sweeps config keys as one vmapped, sharded program per program shape.

    python scripts/sweep.py --config=configs/logreg_quantum.py:sgd --workdir=runs/sweep \
        --sweep="optim.learning_rate=logspace(-3, 0, 16); optim.l0=[10, 100, 1000]" \
        [--config.num_steps=20000] [--max_memory_mb=...]

A two-player game (model.name=gan) sweeps both players' learning rates, the sampling seed and
the initialization (model.seed) in one vmapped program (deepfound/sweep/games.py):

    python scripts/sweep.py --config=configs/gan_2d.py:ring --workdir=runs/gan_sweep \
        --sweep="optim.generator.learning_rate=[1e-4, 3e-4];
                 optim.discriminator.learning_rate=[1e-4, 3e-4]; model.seed=range(10)"

See deepfound/sweep/spec.py for the SPEC grammar. Exit status 2 with one line on a bad SPEC,
config, flag or data file; nothing is written then.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from deepfound.cli import fail, flags_parser, run_main  # noqa: E402
from deepfound.experiment import describe  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
flags.DEFINE_string("workdir", None, "Directory for the sweep's outputs.")
flags.DEFINE_string("sweep", None, "Keys and values to sweep (see deepfound/sweep/spec.py).")
flags.DEFINE_float("max_memory_mb", None, "Device memory budget per device (default: detected).")
flags.DEFINE_bool("verbose", False, "Show tracebacks on errors.")


def main(argv):
  del argv
  from deepfound.sweep import SpecError
  from deepfound.sweep.common import SweepMemoryError
  from deepfound.sweep.runner import run_sweep

  def sweep():
    try:
      summary = run_sweep(_CONFIG.value, flags.FLAGS.sweep, flags.FLAGS.workdir,
                          flags.FLAGS.max_memory_mb,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    except (SpecError, SweepMemoryError) as e:
      fail(str(e))
    print(f"{summary['num_runs']} runs in {summary['num_programs']} program(s): "
          f"{summary['runs_per_second']:.1f} runs/s; outputs in {flags.FLAGS.workdir}",
          file=sys.stderr)

  run_main(sweep)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(["config", "workdir", "sweep"], describe))
