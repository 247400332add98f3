"""Reopening a run directory: its config, its setup and its state at the latest checkpoint, the way
the runner resumes it. The one way figures and scripts reload a run."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
import optax

from deepfound.errors import ConfigError
from deepfound.experiment.build import Setup, build
from deepfound.experiment.checkpoint import Checkpointer
from deepfound.experiment.config import precision_scope, stored_config
from deepfound.experiment.outputs import RunFiles, read_json
from deepfound.optim.engine import engine_for


class MissingRun(ConfigError):
  """``workdir`` holds no run, or no checkpoint of it yet."""


@dataclasses.dataclass(frozen=True)
class RestoredRun:
  """A run as its latest checkpoint left it. A float64 run's arrays are float64: compute with them
  inside ``precision_scope(run.config.precision)``."""

  workdir: str
  config: ml_collections.ConfigDict  # config.json's, with the keys added since at their defaults
  setup: Setup  # ``build(config)``: data, problem, rule, hyperparameters
  state: Any  # the engine's state (a pytree of device arrays) at ``step``
  params: optax.Params  # the engine's reported iterate of ``state`` (an average, for averaging rules)
  step: int  # the step of the latest checkpoint

  @property
  def files(self) -> RunFiles:
    return RunFiles(self.workdir)


def restore_run(workdir: str, attempts: int = 3) -> RestoredRun:
  """The run in ``workdir`` at its latest checkpoint, restored as the runner resumes it: the config
  of config.json (``stored_config``: an older run's config gets the keys added since at their
  defaults), ``build`` of it, the engine's initial state as the template of ``Checkpointer.restore``.

  Raises ``MissingRun`` (a ``ConfigError``) when ``workdir``, its config.json or a checkpoint is
  missing. A run still training replaces its checkpoint as it goes (only the latest is kept): a
  checkpoint gone between listing and reading is tried again, ``attempts`` times in all, with the
  new latest; an unreadable or corrupt checkpoint that is still the latest is a ``ConfigError``.
  """
  files = RunFiles(workdir)
  if not os.path.isfile(files.config):
    where = "holds no run" if os.path.isdir(workdir) else "does not exist"
    raise MissingRun(f"{files.config} not found: {workdir} {where}")
  stored = read_json(files.config)
  if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
    raise ConfigError(f"{files.config} has no 'config': is {workdir} a run directory?")
  config = stored_config(stored["config"])
  if not Checkpointer.saved_steps(workdir):
    raise MissingRun(f"{os.path.join(workdir, 'checkpoints')} has no checkpoint yet (the first comes "
                     f"after checkpoint_every = {config.checkpoint_every} steps)")
  with precision_scope(config.precision):
    setup = build(config)
    runs = engine_for(setup.problem)
    like = runs.init_state(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(config.seed))
    state, step = _restore_latest(workdir, like, attempts)
    params = runs.final_params(state)
  return RestoredRun(workdir=workdir, config=config, setup=setup, state=state, params=params, step=step)


def _restore_latest(workdir: str, like, attempts: int):
  """(state, step) of the latest checkpoint, with the structure of ``like``."""
  for attempt in range(attempts):
    step = max(Checkpointer.saved_steps(workdir), default=None)
    if step is None:
      raise MissingRun(f"{os.path.join(workdir, 'checkpoints')} has no checkpoint")
    try:
      with Checkpointer(workdir, read_only=True) as checkpointer:
        return checkpointer.restore(step, like), step
    except ConfigError:
      if attempt == attempts - 1:
        raise
      time.sleep(2.0)
      if max(Checkpointer.saved_steps(workdir), default=None) == step:
        raise  # still the latest: the checkpoint itself is unreadable or corrupt
  raise ValueError(f"attempts must be >= 1, got {attempts}")
