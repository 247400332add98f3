"""What every benchmark shares: timing (repeated timings and their spread, interleaved rounds of
several implementations, warm-up), the machine's load while it runs, the record of the machine and
the code that ran, and the writing of a benchmark's .json and .md (never used by tests' pass/fail).

The machine record is one registry of facts (``MACHINE_FACTS``: ``machine(*names)`` picks some in
the order asked) and of package versions (``versions(*packages)``); each benchmark keeps the keys
its committed results in ``results/`` have always had.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import jax
import numpy as np

from deepfound.strict_json import dumps

Loop = TypeVar("Loop")

# ----------------------------------------------------------------------------------------------
# Timing


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
  """(wall seconds of each of ``repeats`` calls of ``fn()``, its outputs blocked on; the last
  call's outputs)."""
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times, out


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
  """Median wall time of ``fn()`` (its outputs blocked on), after ``warmup`` untimed calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  return statistics.median(timed(fn, repeats)[0])


def spread(values: Iterable[float], median_key: str = "median") -> dict[str, Any]:
  """{median_key: the median, "min", "max", "repeats": the values} of repeated measurements."""
  values = [float(v) for v in values]
  return {median_key: float(statistics.median(values)), "min": min(values), "max": max(values),
          "repeats": values}


def ratio_per_round(ours: list[float], theirs: list[float]) -> dict[str, float]:
  """Median, min and max over the rounds of ours / theirs (two rates measured in the same round,
  under the same load); rounds whose ratio is not finite are left out (all of them: NaN)."""
  rounds = [o / t for o, t in zip(ours, theirs, strict=True) if np.isfinite(o / t)] or [math.nan]
  return dict(median=statistics.median(rounds), min=min(rounds), max=max(rounds))


def interleaved(blocks: dict[str, Callable[[], float]], repeats: int, pause: float = 0.1
                ) -> dict[str, list[float]]:
  """Round-robin over ``blocks`` (name -> one timed block returning its seconds), ``repeats``
  rounds, so that a drift in the machine's speed hits every block alike; a short untimed
  ``pause`` between blocks (none at 0) lets another library's worker threads go idle."""
  seconds = {name: [] for name in blocks}
  for _ in range(repeats):
    for name, block in blocks.items():
      if pause > 0:
        time.sleep(pause)
      seconds[name].append(block())
  return seconds


def warm_up(makers: dict[str, Callable[[], Loop]], warm: Callable[[str, Loop], object],
            log: Callable[[str], None], describe: Callable[[str, float], str],
            count_construction: bool = True) -> tuple[dict[str, Loop], dict[str, float]]:
  """Builds each implementation of a comparison (name -> its maker) and warms it up untimed
  (compilation, first blocks: ``warm(name, loop)``), in order: (the loops, the seconds each took,
  its construction included where ``count_construction``); logs ``describe(name, seconds)``."""
  loops, seconds = {}, {}
  for name, make in makers.items():
    start = time.perf_counter()
    loop = make()
    if not count_construction:
      start = time.perf_counter()
    warm(name, loop)
    seconds[name] = time.perf_counter() - start
    loops[name] = loop
    log(describe(name, seconds[name]))
  return loops, seconds


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


# ----------------------------------------------------------------------------------------------
# Load


def load_average() -> list[float]:
  """The 1, 5 and 15 minute load averages."""
  return list(os.getloadavg())


def format_load(values: Iterable[float], separator: str = " / ") -> str:
  return separator.join(f"{v:.2f}" for v in values)


class OtherLoad:
  """CPU time used by other processes while it runs (Linux; None elsewhere): all busy time in
  /proc/stat minus this process's (and its children's) own, in cores on average."""

  def __init__(self):
    self.start = self.sample()

  @staticmethod
  def sample() -> tuple[float, float, float] | None:
    """(busy seconds of all CPUs, this process's and its children's CPU seconds, wall clock)."""
    try:
      with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
      return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    own = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return busy, own, time.perf_counter()

  def cores(self) -> float | None:
    end = self.sample()
    if self.start is None or end is None:
      return None
    (busy0, own0, t0), (busy1, own1, t1) = self.start, end
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9))


# ----------------------------------------------------------------------------------------------
# Machine and code


def schedulable_cores() -> int:
  """The cores this process may run on (its affinity; XLA's CPU pool has one thread per core)."""
  return len(os.sched_getaffinity(0))


MACHINE_FACTS: dict[str, Callable[[], Any]] = {
    "platform": platform.platform,
    "processor": platform.processor,
    "python": platform.python_version,
    "cpu_count": os.cpu_count,
    "cpus_allowed": lambda: sorted(os.sched_getaffinity(0)),
    "cpu_cores": schedulable_cores,
    "backend": jax.default_backend,
    "devices": lambda: [str(d) for d in jax.devices()],
    "device_kind": lambda: jax.devices()[0].device_kind,
    "omp_wait_policy": lambda: os.environ.get("OMP_WAIT_POLICY"),
}


def machine(*names: str) -> dict[str, Any]:
  """The facts ``names`` of ``MACHINE_FACTS`` (default: all), in that order."""
  unknown = [n for n in names if n not in MACHINE_FACTS]
  if unknown:
    raise ValueError(f"unknown machine facts {unknown}; expected some of {', '.join(MACHINE_FACTS)}")
  return {name: MACHINE_FACTS[name]() for name in names or MACHINE_FACTS}


def versions(*packages: str) -> dict[str, str]:
  """{package: its __version__} of importable packages (jax, numpy, sklearn, scipy, torch, ...)."""
  return {name: importlib.import_module(name).__version__ for name in packages}


def torch_record(torch_threads: Any) -> dict[str, Any]:
  """The flat machine record of a comparison with PyTorch (``torch_threads``: the thread count,
  or counts, it ran on): jax_version, jax_backend, torch_version, torch_threads, cpu_cores,
  cpu_count, omp_wait_policy."""
  found = versions("jax", "torch")
  return dict(jax_version=found["jax"], jax_backend=jax.default_backend(),
              torch_version=found["torch"], torch_threads=torch_threads,
              **machine("cpu_cores", "cpu_count", "omp_wait_policy"))


REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def source_versions(files: Iterable[str]) -> dict[str, Any]:
  """The git commit and the SHA-256 (first 12 hex digits) of ``files`` (paths in the repository)
  that the timed code runs: the working tree may differ from the commit while others edit it."""
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True,
                            text=True, timeout=10).stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    commit = None
  digests = {}
  for name in files:
    try:
      with open(os.path.join(REPOSITORY, name), "rb") as f:
        digests[name] = hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
      digests[name] = None
  return dict(commit=commit, sha256=digests)


# ----------------------------------------------------------------------------------------------
# Outputs


def write_text(path: str, text: str) -> None:
  """``text`` into ``path``, whole or not at all (a temporary file renamed)."""
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def write_results(out: str, name: str, results: dict, markdown: str, indent: int = 2) -> str:
  """``out``/``name``.json (strict JSON) and ``out``/``name``.md, each by ``write_text``;
  returns ``out``/``name``."""
  os.makedirs(out, exist_ok=True)
  base = os.path.join(out, name)
  write_text(base + ".json", dumps(results, indent=indent) + "\n")
  write_text(base + ".md", markdown)
  return base
