r"""Sweeps config keys as one vmapped, sharded program per program shape.

    python scripts/sweep.py --config=configs/logreg_quantum.py:sgd --workdir=runs/sweep \
        --sweep="optim.learning_rate=logspace(-3, 0, 16); optim.l0=[10, 100, 1000]" \
        [--config.num_steps=20000] [--max_memory_mb=...]

A two-player game (model.name=gan) sweeps both players' learning rates, the sampling seed and
the initialization (model.seed) in one vmapped program (deepfound/sweep/games.py):

    python scripts/sweep.py --config=configs/gan_2d.py:ring --workdir=runs/gan_sweep \
        --sweep="optim.generator.learning_rate=[1e-4, 3e-4];
                 optim.discriminator.learning_rate=[1e-4, 3e-4]; model.seed=range(10)"

See deepfound/sweep/spec.py for the SPEC grammar. A progress line goes to stderr before and
after each compiled program (with the time elapsed and an estimate of the time left). Exit status
2 with one line on a bad SPEC, config, flag or data file, or a workdir that holds a train.py run
or a different sweep; nothing is written then. A sweep keeps no checkpoint: Ctrl-C stops it at
once (exit status 130, one line), with nothing written, and the same command starts it over.

On many processes, every process runs the same command with --distributed (SLURM, Open MPI or
a TPU pod: detected) or with --coordinator_address=host:port --num_processes=N --process_id=i
(deepfound/distributed.py): the runs are sharded over every process's devices, and process 0
alone writes the outputs and prints the progress lines.
"""

import os
import sys
import traceback

import _early_interrupt  # scripts/, beside this file: before the slow imports

_early_interrupt.install("sweep")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from deepfound import distributed  # noqa: E402
from deepfound.cli import EXIT_INTERRUPTED, fail, flags_parser, run_main  # noqa: E402
from deepfound.experiment import describe  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].")
flags.DEFINE_string("workdir", None, "Directory for the sweep's outputs.")
flags.DEFINE_string("sweep", None, "Keys and values to sweep (see deepfound/sweep/spec.py).")
flags.DEFINE_float("max_memory_mb", None, "Device memory budget per device (default: detected).")
flags.DEFINE_bool("verbose", False, "Show tracebacks on errors.")
distributed.define_flags()


def main(argv):
  del argv
  from deepfound.sweep import SpecError
  from deepfound.sweep.common import SweepMemoryError
  from deepfound.sweep.runner import duration, run_sweep

  def sweep():
    try:
      distributed.initialize_from_flags()  # before any JAX computation
      summary = run_sweep(_CONFIG.value, flags.FLAGS.sweep, flags.FLAGS.workdir,
                          flags.FLAGS.max_memory_mb,
                          log=lambda line: print(line, file=sys.stderr, flush=True),
                          given=config_flags.get_override_values(flags.FLAGS["config"]))
    except (SpecError, SweepMemoryError) as e:
      fail(str(e))
    except KeyboardInterrupt:
      # run_sweep returns at once; a compiled program may still be running in its thread, which
      # only leaving the process at once stops.
      print("error: interrupted; a sweep keeps no checkpoint and this one wrote no outputs; run "
            "the same command again to start it over", file=sys.stderr, flush=True)
      os._exit(EXIT_INTERRUPTED)
    except OSError as e:  # a full disk, a read-only folder: the outputs were not moved in
      if flags.FLAGS.verbose:
        traceback.print_exc()
      where = f": {e.filename}" if e.filename else ""
      fail(f"{e.strerror or type(e).__name__}{where}; the sweep wrote no outputs (it keeps no "
           "checkpoint: the same command starts it over once this is fixed)")
    if not distributed.is_main():
      return
    print(f"{summary['num_runs']} runs in {summary['num_programs']} program(s) in "
          f"{duration(summary['seconds'])}: {summary['runs_per_second']:.3g} runs/s; outputs in "
          f"{flags.FLAGS.workdir}", file=sys.stderr)

  run_main(sweep)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser(["config", "workdir", "sweep"], describe))
