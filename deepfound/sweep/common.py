"""What every sweep program shares: the runs of one compiled program (``Group``), setting a
swept key, memory arithmetic, the outputs' writers, and the registry of sweep programs.

A sweep program runs the groups of one problem kind (``experiment.kinds``) as vmapped, sharded
programs and writes their rows: ``objectives.py`` for one rule on a finite sum or an
expectation, ``games.py`` for two-player games. A kind of a user's own registers its program here
(``register_program``); ``runner.py`` plans a sweep and hands it to the program of the config's
kind.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.registry import Option, Registry
from deepfound.strict_json import dumps
from deepfound.sweep.spec import SpecError


class SweepMemoryError(ValueError):
  """Not even one run per device fits in the memory budget."""


def _field(config: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
  """The group holding ``key`` (dotted, e.g. optim.l0) and the key's last part."""
  *parents, leaf = key.split(".")
  node = config
  for part in parents:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise SpecError(f"{key}: no such config key")
    node = node[part]
  if leaf not in node:
    raise SpecError(f"{key}: no such config key")
  if isinstance(node[leaf], ml_collections.ConfigDict):
    raise SpecError(f"{key} is a group of keys, not a key; sweep one of its keys "
                    f"({key}.{next(iter(node[leaf].keys()), '...')}, ...)")
  return node, leaf


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def checked_value(config: ml_collections.ConfigDict, key: str, value: Any) -> Any:
  """``value`` as the type of ``config.<key>`` takes it, or ``SpecError`` in one line: an int
  key takes integers (2.0 becomes 2), a float key numbers, a bool key true/false, a string key
  strings, a tuple key tuples; a key of no fixed type (``optim.learning_rate``: a number or
  ``auto``) takes a number or a string, which the config's validation checks run by run."""
  node, leaf = _field(config, key)
  try:
    kind = node.get_type(leaf)
  except (AttributeError, KeyError, TypeError):
    kind = type(node[leaf])
  if kind is bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
      return value.lower() == "true"
    if isinstance(value, bool):
      return value
    raise SpecError(f"{key} takes true or false, got {value!r}")
  if kind is int:
    if _is_number(value) and math.isfinite(_as_float(value)) and value == int(value):
      return int(value)
    raise SpecError(f"{key} takes integers, got {value!r}")
  if kind is float:
    if _is_number(value) and math.isfinite(_as_float(value)):
      return value
    raise SpecError(f"{key} takes numbers, got {value!r}")
  if kind is str:
    if isinstance(value, str):
      return value
    raise SpecError(f"{key} takes a string, got {value!r}")
  if kind is tuple:
    if isinstance(value, tuple):
      return value
    raise SpecError(f"{key} takes a tuple such as {node[leaf]!r}, got {value!r}")
  if kind is object and isinstance(value, (bool, tuple)):
    raise SpecError(f"{key} takes a number or a string, got {value!r}")
  return value


def _as_float(value) -> float:
  try:
    return float(value)
  except OverflowError:
    return math.inf


def set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """``config.<key> = value`` for a dotted key that must already exist (``checked_value``)."""
  node, leaf = _field(config, key)
  value = checked_value(config, key, value)
  try:
    node[leaf] = value
  except (TypeError, ValueError, OverflowError) as e:
    raise SpecError(f"{key}={value!r}: {e}") from e


@dataclasses.dataclass
class Group:
  """Runs that share one compiled program: they differ only in their program's ``vmapped_keys``."""

  label: str  # the program-changing swept values, e.g. "optim.schedule=inverse_time"
  runs: list[int]  # indices into the sweep's runs
  configs: list[ml_collections.ConfigDict]


def tree_bytes(tree) -> int:
  """Bytes of a pytree's leaves (arrays or shape-dtype structs)."""
  return sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree))


def batch_size_for(per_run: int, shared: int, budget: int, num_devices: int, num_runs: int) -> int:
  """Runs per program call: as many as fit, a multiple of the device count (every process's
  devices: ``len(jax.devices())``)."""
  per_device = (budget - shared) // per_run
  if per_device < 1:
    raise SweepMemoryError(
        f"one run needs {per_run / 2**20:.1f} MB and the data {shared / 2**20:.1f} MB, but "
        f"{budget / 2**20:.1f} MB are available per device (--max_memory_mb, or fewer samples / "
        "the scalar memory layout)"
    )
  needed = -(-num_runs // num_devices)
  return num_devices * min(per_device, needed)


def write_rows(workdir: str, rows: list[dict], curves: dict[str, np.ndarray]) -> None:
  """sweep.jsonl (the rows in run order, sorted in place) and curves.npz."""
  rows.sort(key=lambda r: r["run"])
  with open(os.path.join(workdir, "sweep.jsonl"), "w") as f:
    f.writelines(dumps(r) + "\n" for r in rows)
  np.savez_compressed(os.path.join(workdir, "curves.npz"), **curves)


def summarize(spec, rows, groups, results, best, total) -> dict:
  """summary.json: the runs, programs, best run of each program, devices (every process's)
  and timings (process 0's)."""
  run_steps = sum(len(g.runs) * g.configs[0].num_steps for g in groups)
  run_seconds = sum(r["run_seconds"] for r in results)
  return dict(
      spec=spec, num_runs=len(rows), num_programs=len(groups), best=best,
      devices=[str(d) for d in jax.devices()], process_count=jax.process_count(),
      backend=jax.default_backend(),
      seconds=total, compile_s=sum(r["compile_s"] for r in results), run_seconds=run_seconds,
      runs_per_second=len(rows) / run_seconds, run_steps_per_second=run_steps / run_seconds,
      runs_per_batch=[r["batch"] for r in results],
      mb_per_run=[r["per_run_bytes"] / 2**20 for r in results],
  )


def write_summary(workdir: str, summary: dict) -> None:
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    f.write(dumps(summary, indent=2) + "\n")


@dataclasses.dataclass(frozen=True)
class SweepProgram:
  """How the sweeps of one problem kind (``name``: a registered ``experiment.kinds`` name) run.

  ``vmapped_keys``: the swept keys that vary inside one compiled program (any other key makes
  one program per value); ``check_keys(config, keys)`` raises ``SpecError`` for a swept key the
  kind refuses; ``label(config)`` names a program whose runs differ only in vmapped keys;
  ``run(groups, budget, log)`` runs the groups and returns (the groups as run, one result dict
  each); ``write_outputs(workdir, spec, values, groups, results, seconds)`` writes sweep.jsonl,
  curves.npz, summary.json and the pictures, and returns the summary.
  """

  name: str
  vmapped_keys: tuple[str, ...]
  label: Callable[[ml_collections.ConfigDict], str]
  run: Callable[..., tuple[list[Group], list[dict[str, Any]]]]
  write_outputs: Callable[..., dict]
  check_keys: Callable[[ml_collections.ConfigDict, list[str]], None] = lambda config, keys: None
  options: tuple[Option, ...] = ()  # (the Registry's interface)


PROGRAMS: Registry[SweepProgram] = Registry("sweep program")


def register_program(program: SweepProgram, *, replace: bool = False) -> SweepProgram:
  """Sweeps the problems of kind ``program.name``; call it at import time of its module."""
  return PROGRAMS.register(program, replace=replace)
