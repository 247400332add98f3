"""Checkpoints of a run's on-device state (orbax), from which the same command resumes."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import jax
import orbax.checkpoint as ocp

from deepfound.errors import ConfigError


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


class Checkpointer:
  """Keeps the latest state of a run under ``<workdir>/checkpoints`` (writes are atomic)."""

  def __init__(self, workdir: str):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                             enable_async_checkpointing=False),
    )

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
    """Saves ``state``; a Ctrl-C during the save takes effect once the save is complete (an
    interrupt inside orbax can abort the process or leave a temporary directory)."""
    with _deferred_interrupt():
      self._manager.save(step, args=ocp.args.StandardSave(_nonempty_leaves(state)))
      self._manager.wait_until_finished()

  def restore(self, step: int, like):
    """Restores the state saved at ``step`` with the structure, shapes and dtypes of ``like``;
    an unreadable checkpoint is a ``ConfigError`` that says what to delete."""
    leaves, treedef = jax.tree.flatten(like)
    try:
      saved = self._manager.restore(step, args=ocp.args.StandardRestore(_nonempty_leaves(like)))
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds
      directory = os.path.join(self._manager.directory, str(step))
      raise ConfigError(f"the checkpoint {directory} cannot be read ({type(e).__name__}); delete "
                        f"{self._manager.directory} to start this run over, or use another "
                        "--workdir") from e
    restored = [saved.get(str(i), leaf) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(treedef, restored)

  def close(self) -> None:
    self._manager.close()
