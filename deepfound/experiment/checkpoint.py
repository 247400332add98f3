"""Checkpoints of a run's on-device state (orbax), from which the same command resumes.

Each checkpoint carries the SHA-256 of its arrays in its orbax metadata; a restore recomputes it
and refuses a checkpoint whose data changed on disk (orbax checksums only the chunk indices, so
corrupt array bytes would otherwise come back as wrong numbers). Checkpoints saved before the
digest existed restore unverified.

A checkpoint holds whole arrays, however they were sharded: a restore places them as the state it
is given is placed (orbax reshards), so a run saved on 4 devices (``mesh.data=4``) resumes on 2
or 1 and back. With several processes, each one calls ``save`` and ``restore`` (orbax writes
each array once).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp

from deepfound import distributed
from deepfound.errors import ConfigError

DIGEST_KEY = "deepfound_sha256"  # custom metadata of a step: the SHA-256 of its arrays
_STEP_METADATA = "_CHECKPOINT_METADATA"  # orbax's file for a step's metadata
_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's suffix for a step still being written


@contextlib.contextmanager
def _deferred_interrupt():
  """Holds SIGINT back for the duration of the block, then raises KeyboardInterrupt if one came."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received:
    raise KeyboardInterrupt


def _nonempty_leaves(state) -> dict:
  """Leaves by position; orbax refuses zero-size arrays, which hold nothing to restore anyway."""
  return {str(i): leaf for i, leaf in enumerate(jax.tree.leaves(state)) if leaf.size}


def digest(leaves: dict) -> str:
  """The SHA-256 of ``leaves`` (position -> array): each one's position, dtype, shape and bytes,
  of the whole array however it is sharded (gathered across processes: every process must call
  this), so that a checkpoint restores onto another number of devices."""
  names = sorted(leaves, key=int)
  raw = [jax.random.key_data(leaves[name])
         if jax.dtypes.issubdtype(leaves[name].dtype, jax.dtypes.prng_key) else leaves[name]
         for name in names]
  sha = hashlib.sha256()
  for name, array in zip(names, distributed.gather(raw), strict=True):
    array = np.ascontiguousarray(array)
    sha.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
    sha.update(array.reshape(-1).view(np.uint8))
  return sha.hexdigest()


def _os_error(error: BaseException, path: str) -> OSError | None:
  """The OSError behind a failed orbax write, for ``path``, or None: TensorStore reports the
  errno inside a ValueError (``[os_error_code='28']``), orbax's own files as an OSError."""
  while error is not None:
    if isinstance(error, OSError) and error.errno:
      return OSError(error.errno, os.strerror(error.errno), path)
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
      return OSError(int(code.group(1)), os.strerror(int(code.group(1))), path)
    if os.strerror(errno.ENOSPC) in str(error):
      return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    error = error.__cause__ or error.__context__
  return None


class Checkpointer:
  """Keeps the latest state of a run under ``<workdir>/checkpoints`` (writes are atomic).

  ``with Checkpointer(workdir) as checkpointer:`` closes orbax's manager however the block ends;
  ``read_only`` opens a run that another process may still be writing (nothing is created or
  cleaned up).
  """

  def __init__(self, workdir: str, read_only: bool = False):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=not read_only, read_only=read_only,
            # a step a killed run left half-written goes when the next run starts
            cleanup_tmp_directories=not read_only, enable_async_checkpointing=False),
    )

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    try:
      self.close()
    except Exception:  # noqa: BLE001 - the error that ended the block says more
      if exc_type is None:
        raise

  @staticmethod
  def saved_steps(workdir: str) -> list[int]:
    """The steps of the complete checkpoints in ``workdir``, without opening them."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
      return []
    return [int(name) for name in os.listdir(directory) if name.isdigit()]

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    """Saves ``state`` with the digest of its arrays. A Ctrl-C during the save takes effect once
    the save is complete (an interrupt inside orbax can abort the process or leave a temporary
    directory). A write that fails (a full disk) raises an OSError naming the checkpoints
    directory, and the partial step is removed."""
    leaves = _nonempty_leaves(state)
    metadata = {DIGEST_KEY: digest(leaves)}
    with _deferred_interrupt():
      try:
        self._manager.save(step, args=ocp.args.StandardSave(leaves), custom_metadata=metadata)
        self._manager.wait_until_finished()
      except Exception as e:  # noqa: BLE001 - orbax and TensorStore raise many kinds
        shutil.rmtree(os.path.join(self.directory, f"{step}{_TMP_SUFFIX}"), ignore_errors=True)
        error = _os_error(e, self.directory)
        if error is None:
          raise
        raise error from e

  def restore(self, step: int, like):
    """Restores the state saved at ``step`` with the structure, shapes, dtypes and shardings
    of ``like``; an unreadable checkpoint, or one whose arrays do not match their digest, is a
    ``ConfigError`` that names it and says what to delete."""
    leaves, treedef = jax.tree.flatten(like)
    directory = os.path.join(self.directory, str(step))
    advice = f"delete {self.directory} to start this run over, or use another --workdir"
    expected = self._saved_digest(step)
    with _deferred_interrupt():  # orbax turns an interrupt inside a read into a read error
      try:
        saved = self._manager.restore(step, args=ocp.args.StandardRestore(_nonempty_leaves(like)))
      except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds
        raise ConfigError(f"the checkpoint {directory} cannot be read ({type(e).__name__}); "
                          f"{advice}") from e
    if expected is not None and digest(saved) != expected:
      raise ConfigError(f"the checkpoint {directory} is corrupt: its arrays do not match the "
                        f"SHA-256 saved with them; {advice}")
    restored = [saved.get(str(i), leaf) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(treedef, restored)

  def _saved_digest(self, step: int) -> str | None:
    """The digest saved with ``step`` (read from orbax's step metadata file, not through orbax,
    which reads a damaged file as empty); None for a checkpoint saved before digests."""
    path = os.path.join(self.directory, str(step), _STEP_METADATA)
    try:
      with open(path) as f:
        metadata = json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError) as e:
      raise ConfigError(f"the checkpoint {os.path.dirname(path)} cannot be read ({_STEP_METADATA}: "
                        f"{type(e).__name__}); delete {self.directory} to start this run over, "
                        "or use another --workdir") from e
    custom = metadata.get("custom_metadata") if isinstance(metadata, dict) else None
    return custom.get(DIGEST_KEY) if isinstance(custom, dict) else None

  def close(self) -> None:
    self._manager.close()
