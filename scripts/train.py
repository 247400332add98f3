"""Runs one experiment: python scripts/train.py --config=configs/<file>.py[:<arg>] --workdir=DIR.

Writes config.json, metrics.jsonl, summary.json, params.npz and checkpoints into DIR; rerunning
the same command on DIR resumes an interrupted run. Exit status 2 on a bad config, flag or data
file (one line on stderr), 1 when the run diverges, 130 on Ctrl-C (one line; the same command
resumes).

On many processes (hosts, or one process per GPU), every process runs the same command with
--distributed (SLURM, Open MPI or a TPU pod: detected) or with --coordinator_address=host:port
--num_processes=N --process_id=i; see deepfound/distributed.py.
"""

import os
import sys

import _early_interrupt  # scripts/, beside this file: before the slow imports

_early_interrupt.install("run")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from deepfound import distributed  # noqa: E402
from deepfound.cli import flags_parser, run_main  # noqa: E402
from deepfound.experiment import describe  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
flags.DEFINE_string("workdir", None, "Directory for the run's outputs and checkpoints.")
flags.DEFINE_bool("verbose", False, "Show tracebacks on errors.")
flags.DEFINE_bool("progress", True, "Print a progress line per chunk.")
distributed.define_flags()


def main(argv):
  del argv
  from deepfound.experiment import run_experiment

  given = config_flags.get_override_values(flags.FLAGS["config"])

  def run():
    distributed.initialize_from_flags()  # before any JAX computation
    run_experiment(_CONFIG.value, flags.FLAGS.workdir, flags.FLAGS.progress, given)

  run_main(run)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(["config", "workdir"], describe))
