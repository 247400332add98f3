"""Shared command-line plumbing: flag parsing and the exit-status contract.

Exit 0 on success; 2 with one line on stderr for a bad config, flag or data file, or a file that
cannot be written (a full disk, a read-only directory); 1 when a run diverges; 130 on Ctrl-C
(the run resumes from its last checkpoint). ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from absl import flags, logging

from deepfound import _xla_flags

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def fail(message: str, status: int = EXIT_BAD_INPUT) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def _one_line(message: str) -> str:
  """The first line of a flag error, or for a config file that raised, its exception line."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if not lines:
    return ""
  if len(lines) > 1:  # config_flags embeds the cause (a traceback, a path) after the first line
    return f"{lines[0].rstrip(':')}: {lines[-1]}"
  return lines[0]


def _print_help(describe: Callable[[], str] | None) -> None:
  """The script's docstring, its flags, and (train.py, sweep.py) the registered rules, data sets
  and config keys; exit status 0."""
  doc = (sys.modules["__main__"].__doc__ or "").strip()
  print(doc + "\n\nFlags:\n" + flags.FLAGS.main_module_help().strip()
        + ("\n\n" + describe() if describe else ""))
  sys.exit(0)


def flags_parser(required: Sequence[str], describe: Callable[[], str] | None = None
                 ) -> Callable[[list[str]], list[str]]:
  """An ``app.run`` flags parser that turns flag errors into one line and exit status 2;
  ``--help`` prints the usage (and ``describe()``, the registries) with exit status 0. It first
  adds deepfound's XLA CPU flags to XLA_FLAGS (``_xla_flags.py``)."""

  def parse(argv: list[str]) -> list[str]:
    # A script's run, not the library's import, sets XLA's CPU flags: they must be in XLA_FLAGS
    # before JAX starts its backend (at the first computation), and code that only imports
    # deepfound keeps its environment as it was.
    _xla_flags.apply()
    if not any(arg in ("--verbose", "--verbose=true") for arg in argv[1:]):
      # jax's backend probing and orbax log at INFO, and orbax logs an ERROR line for a corrupt
      # checkpoint that the one-line message already covers; --verbose shows them all.
      logging.set_verbosity(logging.FATAL)
    if any(arg in ("--help", "-h", "--helpshort", "--helpfull", "-?") for arg in argv[1:]):
      _print_help(describe)
    try:
      remaining = flags.FLAGS(argv)
    except flags.Error as e:
      fail(_one_line(str(e)) or type(e).__name__)
    except (AttributeError, KeyError) as e:  # ml_collections, on an override of a missing key
      keys = [a.split("=")[0] for a in argv if a.startswith("--config.")]
      missing = [k for k in keys if str(e).strip("'\"") in k.split(".")] or keys
      fail(f"{missing[0] if missing else 'config'}: no such config key")
    except Exception as e:  # noqa: BLE001 - a config file that raises while loading
      fail(f"could not load the config: {type(e).__name__}: {_one_line(str(e))}")
    for name in required:
      if flags.FLAGS[name].value is None:
        fail(f"--{name} is required")
    if "config" in flags.FLAGS and flags.FLAGS["config"].value is not None:
      try:  # config_flags loads the file lazily: surface a missing or broken file here
        flags.FLAGS["config"].value.to_dict()
      except Exception as e:  # noqa: BLE001
        fail(f"could not load the config: {_one_line(str(e))}")
    return remaining

  return parse


def run_main(fn: Callable[[], object]) -> None:
  """Calls ``fn``, mapping known failures to their exit status."""
  from deepfound.data import DataError
  from deepfound.experiment import ConfigError, DivergenceError

  verbose = "verbose" in flags.FLAGS and flags.FLAGS.verbose
  try:
    fn()
  except (ConfigError, DataError) as e:
    if verbose:
      traceback.print_exc()
    fail(str(e))
  except DivergenceError as e:
    if verbose:
      traceback.print_exc()
    fail(str(e), EXIT_DIVERGED)
  except KeyboardInterrupt:
    fail("interrupted; run the same command again to resume from the last checkpoint",
         EXIT_INTERRUPTED)
  except OSError as e:
    if verbose:
      traceback.print_exc()
    where = f": {e.filename}" if e.filename else ""
    fail(f"{e.strerror or type(e).__name__}{where} (a run resumes from its last checkpoint once "
         "this is fixed)")
