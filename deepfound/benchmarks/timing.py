"""Timing helpers for the benchmark scripts (never used by tests' pass/fail)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import jax


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
  """Median wall time of ``fn()`` (its outputs blocked on), after ``warmup`` untimed calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def interleaved(blocks: dict[str, Callable[[], float]], repeats: int, pause: float = 0.1
                ) -> dict[str, list[float]]:
  """Round-robin over ``blocks`` (name -> one timed block returning its seconds), ``repeats``
  rounds; a short untimed pause between blocks lets the other library's worker threads go idle."""
  seconds = {name: [] for name in blocks}
  for _ in range(repeats):
    for name, block in blocks.items():
      time.sleep(pause)
      seconds[name].append(block())
  return seconds


def prepare_torch(omp_wait_policy: str) -> str | None:
  """Sets OMP_WAIT_POLICY (unless already set; torch reads it when it loads) and imports torch:
  None, or the line to fail with when PyTorch is missing."""
  if omp_wait_policy:
    os.environ.setdefault("OMP_WAIT_POLICY", omp_wait_policy)
  try:
    import torch  # noqa: F401
  except ImportError:
    return "PyTorch is needed for this benchmark: pip install torch==2.13.0"
  return None

