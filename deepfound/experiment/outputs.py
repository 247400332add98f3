"""A run's files: config.json, metrics.jsonl, summary.json, params.npz (checkpoints: see
``checkpoint.py``). Writes are atomic (a temporary file, then a rename) or line-appends."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable

import numpy as np

from deepfound.errors import ConfigError
from deepfound.optim.engine import LogPoint
from deepfound.strict_json import dumps


def check_workdir(workdir: str) -> None:
  """A usable output directory, checked before anything is computed or written."""
  if not workdir or not workdir.strip():
    raise ConfigError("--workdir must name a directory, got an empty string")
  if os.path.islink(workdir) and not os.path.exists(workdir):
    raise ConfigError(f"--workdir {workdir} is a symbolic link to nothing ({os.readlink(workdir)})")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} exists and is not a directory")
  checkpoints = os.path.join(workdir, "checkpoints")
  if os.path.lexists(checkpoints) and not os.path.isdir(checkpoints):
    raise ConfigError(f"{checkpoints} exists and is not a directory; remove it or use another "
                      "--workdir")
  # A finished run in a workdir that cannot be written is still finished: the runner decides once
  # it knows the config is that run's.
  if not writable(workdir) and not os.path.isfile(os.path.join(workdir, "summary.json")):
    raise ConfigError(f"--workdir {workdir} is not writable")


def writable(workdir: str) -> bool:
  """Whether ``workdir`` (or the closest of its parents that exists) can be written."""
  parent = workdir if os.path.isdir(workdir) else os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  return os.access(parent, os.W_OK)


@contextlib.contextmanager
def _atomic(path: str, mode: str = "w"):
  """A file written as ``path + ".tmp"`` and renamed to ``path`` once complete; on failure the
  temporary file is removed, and an OSError names ``path`` (a failed write or close has no
  file name of its own)."""
  tmp = path + ".tmp"
  try:
    with open(tmp, mode) as f:
      yield f
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(e, OSError) and not e.filename:
      raise OSError(e.errno, e.strerror, path) from e
    raise


def read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read {path} ({e}); use another --workdir") from e


def write_json(path: str, value) -> None:
  with _atomic(path) as f:
    f.write(dumps(value, indent=2, sort_keys=True) + "\n")


def write_npz(path: str, arrays: dict) -> None:
  with _atomic(path, "wb") as f:
    np.savez(f, **arrays)


class RunFiles:
  """The files of one run in ``workdir``."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.config = os.path.join(workdir, "config.json")
    self.summary = os.path.join(workdir, "summary.json")
    self.metrics = os.path.join(workdir, "metrics.jsonl")
    self.params = os.path.join(workdir, "params.npz")

  def metric_lines(self) -> list[dict]:
    """The complete lines of the metrics file (a line cut short by a kill is dropped)."""
    rows = []
    if os.path.exists(self.metrics):
      with open(self.metrics) as f:
        for line in f:
          try:
            rows.append(json.loads(line))
          except ValueError:
            break
    return rows

  def truncate_metrics(self, last_step: int) -> list[dict]:
    """Keeps the metric lines up to ``last_step`` (a resumed run rewrites the rest)."""
    kept = [row for row in self.metric_lines() if row["step"] <= last_step]
    self.write_metrics(kept)
    return kept

  def write_metrics(self, rows: list[dict]) -> None:
    with _atomic(self.metrics) as f:
      f.writelines(dumps(row) + "\n" for row in rows)

  def append_metrics(self, rows: list[dict]) -> None:
    """Appends whole lines; a line cut short (a full disk, a kill) is dropped when read."""
    try:
      with open(self.metrics, "a") as f:
        f.writelines(dumps(row) + "\n" for row in rows)
    except OSError as e:
      if e.filename:
        raise
      raise OSError(e.errno, e.strerror, self.metrics) from e


def metric_rows(points: LogPoint, first_elapsed: float, chunk_seconds: float,
                epochs: Callable[[int], float | None], optimum: float | None) -> list[dict]:
  """One metrics.jsonl row per log point of a chunk (host arrays with a leading axis);
  ``epochs(step)`` gives the passes over the data after ``step`` steps (None: no finite n)."""
  steps = np.asarray(points.step)
  rows = []
  for k, step in enumerate(steps):
    objective = float(points.objective[k])
    epoch = epochs(step)
    epoch = None if epoch is None else float(epoch)
    rows.append(dict(
        step=int(step), epoch=epoch, objective=objective,
        suboptimality=None if optimum is None else objective - optimum,
        learning_rate=float(points.learning_rate[k]),
        **{name: float(values[k]) for name, values in (points.extras or {}).items()},
        # Points of a chunk come back together; their times are interpolated within it.
        elapsed_s=first_elapsed + chunk_seconds * (k + 1) / len(steps),
    ))
  return rows
