"""One progress line per chunk on long runs: position, rate, ETA and the objective."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
  def __init__(self, name: str, total_steps: int, first_step: int = 0, stream=sys.stderr,
               enabled: bool = True):
    self._name, self._total, self._first = name, total_steps, first_step
    self._stream, self._enabled = stream, enabled
    self._start = time.perf_counter()

  def update(self, step: int, objective: float, suboptimality: float | None) -> None:
    if not self._enabled:
      return
    elapsed = time.perf_counter() - self._start
    rate = (step - self._first) / max(elapsed, 1e-9)
    eta = (self._total - step) / rate if rate > 0 else float("inf")
    gap = "" if suboptimality is None else f"  E-E* {suboptimality:.3e}"
    print(
        f"[{self._name}] step {step}/{self._total} ({100 * step / self._total:3.0f}%)  "
        f"{rate:,.0f} steps/s  ETA {_clock(eta) if eta != float('inf') else '?'}  "
        f"E {objective:.6f}{gap}",
        file=self._stream, flush=True,
    )
