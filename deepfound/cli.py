"""Shared command-line plumbing: flag parsing and the exit-status contract.

Exit 0 on success; 2 with one line on stderr for a bad config, flag or data file, or a file that
cannot be written (a full disk, a read-only directory); 1 when a run diverges; 130 on Ctrl-C
(the run resumes from its last checkpoint). ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

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


def _exit_now(status: int) -> NoReturn:
  """Leaves the process without the interpreter's teardown. After a failure, threads that
  nothing can join may still run: an XLA compilation that Ctrl-C interrupted goes on in its
  thread (a teardown under it ends in a segmentation fault), and TensorStore finishes the reads
  and writes of a checkpoint that failed, calling back into asyncio loops that are closed. By
  now the run's files are closed (its with and finally blocks have run, the checkpointer is
  closed), and the kernel releases the workdir's lock."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


def _library_noise(unraisable) -> bool:
  """An error that orbax or TensorStore reports from a callback or a finalizer once a checkpoint
  read or write has failed (an asyncio loop closed, a coroutine never finished); the failure
  itself gets its one line."""
  paths = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(unraisable.exc_traceback)]
  code = getattr(unraisable.object, "cr_code", None)  # a coroutine finalized unfinished
  if code is not None:
    paths.append(code.co_filename)
  return any(f"{os.sep}{name}{os.sep}" in path
             for path in paths for name in ("orbax", "tensorstore", "asyncio"))


def _install_run_handlers(verbose: bool) -> None:
  """Ctrl-C raises KeyboardInterrupt from here on (a script's start-up handler, which leaves at
  once, gives way to it), unless SIGINT is ignored (a background job). A KeyboardInterrupt that
  lands in a finalizer or a garbage-collector callback, where Python only reports it, is raised
  again in the main thread instead of being lost; the libraries' noise after a failed checkpoint
  read or write is dropped unless ``verbose``."""
  if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.default_int_handler):
    signal.signal(signal.SIGINT, signal.default_int_handler)
  previous = sys.unraisablehook

  def hook(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
      # Sent again once this hook has returned (raised in here, it would be lost again), as a
      # signal to the main thread, which also wakes it from a blocking call.
      timer = threading.Timer(0.05, signal.pthread_kill,
                              (threading.main_thread().ident, signal.SIGINT))
      timer.daemon = True
      timer.start()
    elif verbose or not _library_noise(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook


def _failure_line(error: BaseException) -> tuple[str, int] | None:
  """The one line and the exit status for a known failure, or None."""
  from deepfound.data import DataError
  from deepfound.experiment import ConfigError, DivergenceError

  if isinstance(error, (ConfigError, DataError)):
    return str(error), EXIT_BAD_INPUT
  if isinstance(error, DivergenceError):
    return str(error), EXIT_DIVERGED
  if isinstance(error, KeyboardInterrupt):
    return ("interrupted; run the same command again to resume from the last checkpoint",
            EXIT_INTERRUPTED)
  if isinstance(error, OSError):
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
      return (f"the disk is full: cannot write {error.filename or 'the outputs'} "
              f"({error.strerror}); free some space, then run the same command again to resume "
              "from the last checkpoint"), EXIT_BAD_INPUT
    where = f": {error.filename}" if error.filename else ""
    return (f"{error.strerror or type(error).__name__}{where} (a run resumes from its last "
            "checkpoint once this is fixed)"), EXIT_BAD_INPUT
  return None


def run_main(fn: Callable[[], object]) -> None:
  """Calls ``fn``, mapping known failures to one line on stderr and their exit status; after a
  failure the process leaves at once (``_exit_now``)."""
  verbose = "verbose" in flags.FLAGS and flags.FLAGS.verbose
  _install_run_handlers(verbose)
  try:
    fn()
  except SystemExit as e:  # fn's own fail() or sys.exit(): its line, if any, is printed
    if e.code is not None and not isinstance(e.code, int):
      print(e.code, file=sys.stderr)
    _exit_now(e.code if isinstance(e.code, int) else int(e.code is not None))
  except BaseException as e:  # noqa: BLE001 - an unknown error keeps its traceback
    failure = _failure_line(e)
    if verbose or failure is None:
      traceback.print_exc()
    if failure is None:
      _exit_now(1)
    print(f"error: {failure[0]}", file=sys.stderr)
    _exit_now(failure[1])
