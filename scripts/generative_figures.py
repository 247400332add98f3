"""Pictures of section 17.4 into --out: python scripts/generative_figures.py [--out=results/generative]

Reads --bench (bench.json of scripts/bench_generative.py, by default the one in --out) and the
MNIST VAE run in --vae_workdir (its latest checkpoint, reopened by restore_run), and runs three
small trainings through the runner into --runs_dir (the 2-latent VAE and the linear and MLP
auto-encoders on digits, seconds each). Writes density_2d, pushforward_2d, modes_curves,
flow_rules, autoencoder_digits, vae_mnist, vae_digits_latent and training_curves (PNG + JSON each)
and figures.json (what was drawn from what, the key numbers, what was skipped and why). A picture
whose input is missing is skipped with a note; a missing bench.json is an error (exit status 2).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import fail, flags_parser  # noqa: E402
from deepfound.errors import ConfigError  # noqa: E402

flags.DEFINE_string("out", "runs/generative",
                    "Output directory (results/generative regenerates the committed one; its bench.md "
                    "and bench.json are kept).")
flags.DEFINE_string("bench", None, "bench.json of scripts/bench_generative.py (default: <out>/bench.json).")
flags.DEFINE_string("vae_workdir", "runs/vae_mnist",
                    "Run directory of configs/vae_mnist.py (vae_mnist.png, the VAE's training curves).")
flags.DEFINE_bool("train", True, "Run the small trainings (autoencoder reconstructions, digits latent map).")
flags.DEFINE_integer("ae_steps", 5_000, "num_steps of the two auto-encoders (their configs say 20,000).")
flags.DEFINE_integer("vae_digits_steps", None,
                     "num_steps of the 2-latent digits VAE (default: its config's, 4,200).")
flags.DEFINE_string("runs_dir", None,
                    "Run directories of the small trainings (ae_linear, ae_mlp, vae_digits_2; a complete "
                    "run there is reused); default: a temporary folder, deleted at the end.")


def main(argv):
  del argv
  from configs import autoencoder_digits, vae_digits
  from deepfound.figures import generative

  start = time.perf_counter()
  out = flags.FLAGS.out
  bench = flags.FLAGS.bench or os.path.join(out, "bench.json")
  configs = (dict(autoencoder_digits=autoencoder_digits.get_config, vae_digits=vae_digits.get_config)
             if flags.FLAGS.train else None)
  try:
    summary = generative.make_all(out, bench, flags.FLAGS.vae_workdir, configs,
                                  ae_steps=flags.FLAGS.ae_steps,
                                  vae_digits_steps=flags.FLAGS.vae_digits_steps,
                                  runs_dir=flags.FLAGS.runs_dir,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
  except (generative.MissingInput, ConfigError) as e:  # a bench.json, or a run directory, to fix
    fail(str(e))
  print(f"{len(summary['drawn'])} pictures in {out} ({', '.join(summary['drawn']) or 'none'}), "
        f"{len(summary['skipped'])} skipped, {time.perf_counter() - start:.0f} s; see "
        f"{os.path.join(out, 'figures.json')}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
