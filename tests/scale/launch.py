"""Starts a multi-process JAX program on this machine, as a cluster's launcher would: N local
processes, each with its own CPU devices, joined through a coordinator on a free local port.

``launch(argvs)`` runs ``argvs[i]`` as process i with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` appended (``deepfound.distributed``'s flags), and
returns each process's ``subprocess.CompletedProcess`` (return code, stdout, stderr), in process
order. No process outlives it: when one fails, the others get ``grace`` seconds to end on their
own (a refusal that every process makes alike), then each one's process group is killed; past
``timeout`` every process is killed and ``TimeoutError`` raised with their outputs' tails.

    results = launch([[sys.executable, "scripts/sweep.py", ...]] * 2, devices_per_process=2)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
  """A TCP port that nothing listens on now (the kernel's pick for port 0)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def environment(devices_per_process: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
  """os.environ with ``env`` over it, the CPU backend only, and ``devices_per_process`` CPU
  devices (XLA_FLAGS)."""
  merged = dict(os.environ, **(env or {}))
  merged["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
  merged["JAX_PLATFORMS"] = "cpu"
  return merged


def _kill(process: subprocess.Popen) -> None:
  """SIGKILL to the process's group (it leads its own session), then reaps it."""
  if process.poll() is None:
    try:
      os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  process.wait()


def launch(argvs: Sequence[Sequence[str]], env: Mapping[str, str] | None = None,
           timeout: float = 120.0, devices_per_process: int = 2, grace: float = 5.0,
           coordinator_flags: bool = True) -> list[subprocess.CompletedProcess]:
  """Runs ``argvs[i]`` as process i of ``len(argvs)`` (from the repository's root) and returns
  their outcomes in process order; see the module's docstring. ``coordinator_flags=False``
  appends nothing (for commands that carry their own)."""
  port = free_port()
  processes, outputs = [], []
  try:
    for index, argv in enumerate(argvs):
      extra = ([f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={len(argvs)}",
                f"--process_id={index}"] if coordinator_flags else [])
      out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # no pipe to fill up
      outputs.append((out, err))
      processes.append(subprocess.Popen(
          [*argv, *extra], cwd=ROOT, env=environment(devices_per_process, env), stdout=out,
          stderr=err, stdin=subprocess.DEVNULL, start_new_session=True))
    deadline, failed_at = time.monotonic() + timeout, None
    while any(p.poll() is None for p in processes):
      now = time.monotonic()
      if failed_at is None and any(p.returncode not in (None, 0) for p in processes):
        failed_at = now
      if now > deadline:
        for p in processes:
          _kill(p)
        tails = [_read(err)[-2000:] for _, err in outputs]
        raise TimeoutError(f"processes still running after {timeout:g} s; their stderr: {tails}")
      if failed_at is not None and now > failed_at + grace:
        break
      time.sleep(0.05)
  finally:
    for p in processes:
      _kill(p)
  return [subprocess.CompletedProcess(p.args, p.returncode, _read(out), _read(err))
          for p, (out, err) in zip(processes, outputs, strict=True)]


def _read(file) -> str:
  file.seek(0)
  return file.read().decode(errors="replace")
