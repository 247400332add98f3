"""An exclusive lock on a workdir, so that two runs never write into one directory.

The lock is ``fcntl.flock`` on ``<workdir>/.lock``, which also holds the owner's process id. The
kernel releases a flock when its process dies, however it dies, so a lock left by a killed run is
never stale: the next run simply takes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil

from deepfound.errors import ConfigError

LOCK_NAME = ".lock"


class WorkdirLock:
  """``with WorkdirLock(workdir):`` holds the lock (creating ``workdir`` if needed); a second
  holder gets ``ConfigError`` naming the process that has it. A workdir that the lock created
  is removed again if the block fails before writing anything else into it."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._path = os.path.join(workdir, LOCK_NAME)
    self._fd: int | None = None
    self._created = False

  def __enter__(self) -> WorkdirLock:
    self._created = not os.path.exists(self.workdir)
    try:
      os.makedirs(self.workdir, exist_ok=True)
      self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise ConfigError(f"cannot use --workdir {self.workdir}: {e.strerror or e}") from e
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
      os.close(self._fd)
      self._fd = None
      raise ConfigError(f"--workdir {self.workdir} is in use by process {owner} (another run or "
                        "sweep); wait for it to end or use another --workdir") from None
    if not self._still_ours():  # the holder we waited on removed the directory as we opened it
      os.close(self._fd)
      self._fd = None
      raise ConfigError(f"--workdir {self.workdir} was removed while this run started; run again")
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
    return self

  def _still_ours(self) -> bool:
    try:
      return os.stat(self._path).st_ino == os.fstat(self._fd).st_ino
    except OSError:
      return False

  def __exit__(self, exc_type, exc, tb) -> None:
    if self._fd is None:
      return
    # Removing an empty workdir this run created happens while the lock is still held, so no
    # other run can have taken it in between.
    if exc_type is not None and self._created and os.listdir(self.workdir) == [LOCK_NAME]:
      shutil.rmtree(self.workdir, ignore_errors=True)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None
