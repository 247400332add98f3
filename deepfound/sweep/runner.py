"""Runs a sweep: plans the runs of a SPEC over a config, groups them by compiled program, and
hands the groups, one program at a time, to the sweep program of the config's problem kind
(``common.PROGRAMS``), which runs each group as one vmapped program sharded over the devices and
writes the outputs.

A sweep keeps no checkpoint: its outputs are written when every program has run, into a
scratch folder that then moves into the workdir, so a sweep that fails or is interrupted leaves
nothing of its own behind. ``config.json`` records the sweep (its config and SPEC); a different
sweep on the same workdir is refused, and the same one runs again and replaces its outputs.

On many processes (``deepfound.distributed``), every process plans the same runs (and refuses a
bad SPEC alike, before anything runs), the runs are sharded over every process's devices, and
process 0 alone checks and locks the workdir, prints the progress lines and writes the outputs;
a refusal there (a workdir in use, a different sweep) stops every process alike.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import ml_collections

from deepfound import distributed
from deepfound.errors import ConfigError
from deepfound.experiment import build as experiment
from deepfound.experiment.config import stored_config, validate
from deepfound.experiment.lock import WorkdirLock
from deepfound.experiment.models import MODELS
from deepfound.experiment.outputs import check_workdir, read_json, write_json
from deepfound.strict_json import dumps
from deepfound.sweep.common import PROGRAMS, Group, SweepProgram, checked_value, set_key
from deepfound.sweep.spec import SpecError, expand, parse

CONFIG = "config.json"  # the sweep's record: {"sweep": {"spec", "factors", "config"}}
SCRATCH = ".sweep.partial"  # the outputs being written, moved into the workdir when complete
# Keys that change how a sweep is run, not what it computes: a rerun may change them.
UNCOMPARED = ("optim.max_memory_mb",)


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


def factors_of(config: ml_collections.ConfigDict, spec: str) -> list[dict[str, list[Any]]]:
  """The factors of ``spec`` (``spec.parse``), every value checked against the type of its key
  in ``config`` before the runs are expanded (``common.checked_value``)."""
  program = program_for(config)
  factors = parse(spec)
  program.check_keys(config, [key for factor in factors for key in factor])
  return [{key: [checked_value(config, key, v) for v in values] for key, values in factor.items()}
          for factor in factors]


def plan(config: ml_collections.ConfigDict, spec: str, given: Collection[str] = ()
         ) -> tuple[list[dict], list[Group]]:
  """Expands ``spec`` over ``config``; validates every run (its swept keys and ``given``, the
  command line's overrides, count as set explicitly: refused where the run ignores them);
  groups runs by program."""
  program = program_for(config)
  values = expand(factors_of(config, spec))
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
      validate(run_config, given=set(run) | set(given))
    except ConfigError as e:
      raise SpecError(f"run {index} ({_describe(run)}): {e}") from e
    if run_config.mesh.data != 1:
      raise SpecError(f"mesh.data={run_config.mesh.data}: a sweep shards its runs over the devices, "
                      "not each run's minibatch; leave mesh.data at 1")
    key = tuple((k, v) for k, v in run.items() if k not in program.vmapped_keys)
    label = ", ".join(f"{k}={v}" for k, v in key) or program.label(run_config)
    group = groups.setdefault(key, Group(label, [], []))
    group.runs.append(index)
    group.configs.append(run_config)
  return values, list(groups.values())


def _describe(run: dict) -> str:
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in run.items())


def record(config: ml_collections.ConfigDict, spec: str) -> dict:
  """What ``config.json`` keeps of a sweep, as JSON reads it back."""
  sweep = dict(spec=spec, factors=factors_of(config, spec), config=json.loads(config.to_json()))
  return json.loads(dumps(dict(sweep=sweep)))


def _flat(tree, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix.rstrip("."): tree}
  return {k: v for name, sub in tree.items() for k, v in _flat(sub, f"{prefix}{name}.").items()}


def _differences(old: dict, new: dict) -> list[str]:
  """What differs between two sweeps' records: the SPEC's keys and values, and the config's
  keys that no run of the sweep sets (a swept key's base value is never used)."""
  differing = [] if old.get("factors") == new["factors"] else ["the sweep's keys or values"]
  swept = {key for factor in new["factors"] for key in factor} | set(UNCOMPARED)
  if "config" in old:
    try:  # keys added since that sweep count at their defaults
      base = _flat(json.loads(dumps(json.loads(stored_config(old["config"]).to_json()))))
    except Exception:  # noqa: BLE001 - a config.json edited by hand: it differs
      return differing + ["config"]
    mine = _flat(new["config"])
    differing += [k for k in sorted(set(base) | set(mine))
                  if k not in swept and base.get(k) != mine.get(k)]
  return differing


def check_same_sweep(workdir: str, config: ml_collections.ConfigDict, spec: str) -> None:
  """``ConfigError`` unless ``workdir`` is new or empty or holds this same sweep: a train.py run
  or a different sweep there is refused, naming what differs. A sweep's outputs from before
  config.json was written are compared by their SPEC (summary.json's)."""
  mine = record(config, spec)["sweep"]
  path, summary = os.path.join(workdir, CONFIG), os.path.join(workdir, "summary.json")
  if os.path.exists(path):
    stored = read_json(path)
    if not (isinstance(stored, dict) and isinstance(stored.get("sweep"), dict)):
      raise ConfigError(f"{workdir} holds a run of scripts/train.py, not a sweep; use another "
                        "--workdir")
    old = stored["sweep"]
  elif os.path.exists(os.path.join(workdir, "sweep.jsonl")) and os.path.exists(summary):
    try:
      old = dict(factors=json.loads(dumps(factors_of(config, read_json(summary)["spec"]))))
    except (SpecError, KeyError, TypeError) as e:
      raise ConfigError(f"{workdir} holds a sweep whose SPEC cannot be read back ({e}); use "
                        "another --workdir") from e
  else:
    return
  differing = _differences(old, mine)
  if differing:
    raise ConfigError(f"{workdir} holds a different sweep ({', '.join(differing)} differ); use "
                      f"another --workdir, or delete {workdir} to replace that sweep")


class _Cancelled(Exception):
  """The caller of ``run_sweep`` was interrupted: the programs stop at the next boundary."""


def _in_background(work: Callable[[threading.Event], Any]) -> Any:
  """``work(cancel)`` in a worker thread, so that the calling (main) thread, which alone
  receives signals, stays responsive: a Ctrl-C raises ``KeyboardInterrupt`` here at once, while
  a compiled program is still running, and sets ``cancel`` so that the worker stops at the
  next call of a program. Elsewhere than in the main thread, ``work`` runs inline."""
  cancel = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    return work(cancel)
  done, outcome = threading.Event(), {}

  def target():
    try:
      outcome["value"] = work(cancel)
    except BaseException as e:  # noqa: BLE001 - handed to the calling thread
      outcome["error"] = e
    finally:
      done.set()

  threading.Thread(target=target, name="sweep", daemon=True).start()
  try:
    while not done.wait(0.2):
      pass
  except BaseException:
    cancel.set()
    raise
  if "error" in outcome:
    raise outcome["error"]
  return outcome["value"]


def duration(seconds: float) -> str:
  """``seconds`` for a progress line: 42 s, 3.5 min, 2.1 h."""
  if seconds < 100:
    return f"{seconds:.0f} s"
  return f"{seconds / 60:.1f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"


def _run_programs(program: SweepProgram, groups: list[Group], budget: int,
                  log: Callable[[str], None], cancel: threading.Event
                  ) -> tuple[list[Group], list[dict[str, Any]]]:
  """Runs the groups one program at a time, with a progress line before and after each: its
  number, its runs, the time elapsed and, after the first, an estimate of the time left (each
  program left costs the mean set-up time of those done, data, E* and compilation, plus its
  run-steps at the rate of those done)."""

  def checked(line: str) -> None:  # the sweep programs log after every call
    if cancel.is_set():
      raise _Cancelled
    log(line)

  def run_steps(group: Group) -> int:
    return sum(c.num_steps for c in group.configs)

  total, done_steps, start = sum(map(run_steps, groups)), 0, time.perf_counter()
  computing = 0.0  # seconds in the programs' calls, set-up excluded
  ran, results = [], []
  for number, group in enumerate(groups, 1):
    checked(f"program {number} of {len(groups)} [{group.label}]: {len(group.runs)} runs x "
            f"{group.configs[0].num_steps} steps")
    done, outcome = program.run([group], budget, checked)
    ran += done
    results += outcome
    done_steps += run_steps(group)
    computing += sum(r.get("run_seconds", 0.0) for r in outcome)
    elapsed = time.perf_counter() - start
    left = ""
    if number < len(groups):
      set_up = (elapsed - computing) / number
      estimate = (len(groups) - number) * set_up + (total - done_steps) * computing / done_steps
      left = f"; about {duration(estimate)} left"
    checked(f"program {number} of {len(groups)} done: {duration(elapsed)} elapsed{left}")
  return ran, results


@contextlib.contextmanager
def _interrupts_held():
  """Holds SIGINT back during the block (the outputs moving into place: a moment); an interrupt
  that came meanwhile is dropped, since the sweep is complete by then."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = signal.signal(signal.SIGINT, lambda *_: None)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


def _write(workdir: str, stored: dict, write: Callable[[str], dict]) -> dict:
  """``write(folder)`` and ``stored`` (as config.json) into a scratch folder of ``workdir``, then
  every file moved into ``workdir`` (config.json last); nothing is left if ``write`` fails."""
  scratch = os.path.join(workdir, SCRATCH)
  shutil.rmtree(scratch, ignore_errors=True)  # left by a sweep that was killed while writing
  try:
    os.makedirs(scratch)
    summary = write(scratch)
    write_json(os.path.join(scratch, CONFIG), stored)
    names = sorted(os.listdir(scratch), key=lambda name: name == CONFIG)
    with _interrupts_held():
      for name in names:
        os.replace(os.path.join(scratch, name), os.path.join(workdir, name))
    return summary
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def run_sweep(config: ml_collections.ConfigDict, spec: str, workdir: str,
              max_memory_mb: float | None = None, log: Callable[[str], None] = print,
              given: Collection[str] = ()) -> dict:
  """Runs every run of ``spec`` over ``config`` and writes the sweep's outputs into ``workdir``.

  Raises ``SpecError`` / ``ConfigError`` / ``DataError`` / ``SweepMemoryError`` before writing
  anything, ``ConfigError`` if ``workdir`` holds a train.py run or a different sweep, and
  ``KeyboardInterrupt`` as soon as the caller is interrupted (the program running then stops at
  its next call); the workdir then holds nothing of this sweep.

  On many processes every process calls it alike: process 0 writes, and ``log`` is called on
  process 0 only; every process returns the summary (process 0 its own, the others a JSON copy),
  and a refusal on process 0 (its workdir) is a ``ConfigError`` on the others.
  """
  distributed.on_main(lambda: check_workdir(workdir))
  values, groups = plan(config, spec, given)
  program = program_for(config)
  # Process 0's budget on every process, which must all cut the runs into the same calls (the
  # hosts of one job are alike).
  budget = distributed.on_main(
      lambda: experiment.memory_budget(max_memory_mb or config.optim.max_memory_mb))
  if not distributed.is_main():
    log = _silent
  with contextlib.ExitStack() as held:

    def claim():  # process 0's: the workdir's lock, held until the outputs are written
      held.enter_context(WorkdirLock(workdir))
      check_same_sweep(workdir, config, spec)

    distributed.on_main(claim)
    start = time.perf_counter()
    ran, results = _in_background(
        lambda cancel: _run_programs(program, groups, budget, log, cancel))
    total = time.perf_counter() - start
    return distributed.on_main(lambda: _write(workdir, record(config, spec), lambda folder: (
        program.write_outputs(folder, spec, values, ran, results, total))))


def _silent(line: str) -> None:
  del line
