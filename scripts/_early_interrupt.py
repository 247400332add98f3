"""The Ctrl-C handler scripts install before their imports (which take seconds): one line and
exit status 130 instead of a KeyboardInterrupt traceback. Standard library only, since it runs
before anything else is imported; ``deepfound.cli.run_main`` hands Ctrl-C back to
KeyboardInterrupt once the work starts. A SIGINT that is ignored (a background job) stays
ignored."""

import os
import signal

EXIT_INTERRUPTED = 130  # deepfound.cli's, which is not imported yet


def install(what: str) -> None:
  """Installs the handler; ``what`` names the work in its message ("run", "sweep")."""
  message = f"error: interrupted before the {what} started; nothing was written\n".encode()

  def interrupted(signum, frame) -> None:
    del signum, frame
    os.write(2, message)
    os._exit(EXIT_INTERRUPTED)

  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, interrupted)
