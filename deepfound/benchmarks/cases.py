"""Case tables of the over-seeds benchmarks (``deepfound.benchmarks.gans`` and ``.generative``).

A case is a config of ``configs/`` (its module and argument) with overrides, written
``group__field`` (``optim__generator__b1``) for ``config.group.field``; a group names a list of
cases. The configs are read with ``importlib.import_module("configs.<module>")``: the repository
root must be on ``sys.path``, as the scripts put it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from deepfound.benchmarks.timing import machine, versions


def expand_cases(entries: Iterable[str], groups: Mapping[str, list[str]],
                 cases: Mapping[str, Any]) -> list[str]:
  """The case names of ``entries`` (case names or group names, in order); a ValueError names
  the unknown ones and what is allowed."""
  names = []
  for entry in entries:
    names += groups.get(entry, [entry])
  unknown = [n for n in names if n not in cases]
  if unknown:
    raise ValueError(f"unknown {', '.join(unknown)}; expected {', '.join([*groups, *cases])}")
  return names


def load_config(module: str, arg: str, overrides: Mapping[str, Any], steps_scale: float = 1.0
                ) -> ml_collections.ConfigDict:
  """``configs.<module>.get_config(arg)`` with ``overrides``, its num_steps times ``steps_scale``
  (a multiple of log_every, at least one log block)."""
  config = importlib.import_module(f"configs.{module}").get_config(arg)
  for key, value in overrides.items():
    group, _, field = key.rpartition("__")
    node = config
    for part in group.split("__") if group else ():
      node = node[part]
    node[field] = value
  config.num_steps = max(config.log_every,
                         int(config.num_steps * steps_scale) // config.log_every * config.log_every)
  return config


def facts(start: float, **extra: Any) -> dict[str, Any]:
  """The bench.json ``facts``: backend, device (its kind), jax, seconds since ``start``, ``extra``."""
  found = machine("backend", "device_kind")
  return dict(backend=found["backend"], device=found["device_kind"], **versions("jax"),
              seconds=time.perf_counter() - start, **extra)


def stack_trees(trees: list) -> Any:
  """Pytrees of one structure stacked leaf by leaf on a new leading axis (one row per seed)."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
