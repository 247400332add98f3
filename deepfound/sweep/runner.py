"""Runs a sweep: plans the runs of a SPEC over a config, groups them by compiled program, and
hands the groups to the sweep program of the config's problem kind (``common.PROGRAMS``), which
runs each group as one vmapped program sharded over the devices and writes the outputs."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import ml_collections

from deepfound.errors import ConfigError
from deepfound.experiment import build as experiment
from deepfound.experiment.config import validate
from deepfound.experiment.lock import WorkdirLock
from deepfound.experiment.models import MODELS
from deepfound.experiment.outputs import check_workdir
from deepfound.sweep.common import PROGRAMS, Group, SweepProgram, set_key
from deepfound.sweep.spec import SpecError, expand, parse


def _kind(config: ml_collections.ConfigDict) -> str | None:
  """The problem kind of ``config``'s model (None for a name validate refuses)."""
  name = config.model.name
  return MODELS.get(name).kind if name in MODELS else None


def program_for(config: ml_collections.ConfigDict) -> SweepProgram:
  """The sweep program of ``config``'s problem kind; ``SpecError`` if the config is refused
  before any key is swept, or if its kind has no sweep program."""
  kind = _kind(config)
  if kind is None:
    try:
      validate(config)
    except ConfigError as e:
      raise SpecError(str(e)) from e
  if kind not in PROGRAMS:
    raise SpecError(f"model.name={config.model.name} is a problem of kind {kind}, which has no "
                    "sweep program (deepfound.sweep.common.register_program)")
  return PROGRAMS.get(kind)


def plan(config: ml_collections.ConfigDict, spec: str) -> tuple[list[dict], list[Group]]:
  """Expands ``spec`` over ``config``; validates every run; groups runs by program."""
  program = program_for(config)
  factors = parse(spec)
  program.check_keys(config, [key for factor in factors for key in factor])
  values = expand(factors)
  groups: dict[tuple, Group] = {}
  for index, run in enumerate(values):
    run_config = copy.deepcopy(config)
    for key, value in run.items():
      set_key(run_config, key, value)
    if "model.name" in run and _kind(run_config) not in (None, program.name):
      raise SpecError(f"model.name={run_config.model.name}: a sweep cannot mix problem kinds "
                      f"({_kind(run_config)} and {program.name}, the kind of the config's "
                      f"model.name={config.model.name})")
    try:
      validate(run_config)
    except ConfigError as e:
      raise SpecError(f"run {index} ({_describe(run)}): {e}") from e
    key = tuple((k, v) for k, v in run.items() if k not in program.vmapped_keys)
    label = ", ".join(f"{k}={v}" for k, v in key) or program.label(run_config)
    group = groups.setdefault(key, Group(label, [], []))
    group.runs.append(index)
    group.configs.append(run_config)
  return values, list(groups.values())


def _describe(run: dict) -> str:
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in run.items())


def run_sweep(config: ml_collections.ConfigDict, spec: str, workdir: str,
              max_memory_mb: float | None = None, log: Callable[[str], None] = print) -> dict:
  """Runs every run of ``spec`` over ``config`` and writes the sweep's outputs into ``workdir``.

  Raises ``SpecError`` / ``ConfigError`` / ``DataError`` / ``SweepMemoryError`` before writing
  anything.
  """
  check_workdir(workdir)
  values, groups = plan(config, spec)
  program = program_for(config)
  budget = experiment.memory_budget(max_memory_mb or config.optim.max_memory_mb)
  with WorkdirLock(workdir):
    start = time.perf_counter()
    groups, results = program.run(groups, budget, log)
    total = time.perf_counter() - start
    return program.write_outputs(workdir, spec, values, groups, results, total)
