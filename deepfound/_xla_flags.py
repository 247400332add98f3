"""XLA flags deepfound sets for the CPU backend, before JAX initializes it.

``--xla_cpu_copy_insertion_use_region_analysis=true`` lets XLA's copy insertion prove that the
in-place writes of a scan body (the gradient memory of SAG, SAGA, SVRG) do not need defensive
copies. Measured with jax 0.10.2 on 2 CPU cores: a minimal SAG loop body goes from 0.85 to 0.29
us per step, and a loop body that reads then writes one row of a 200,000-row table from 35 us
(a full copy per step) to 0.04 us. It changes no result. It only takes effect if set before the
first JAX computation; set DEEPFOUND_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched.
"""

from __future__ import annotations

import os

_FLAG = "--xla_cpu_copy_insertion_use_region_analysis=true"


def apply() -> None:
  if os.environ.get("DEEPFOUND_KEEP_XLA_FLAGS"):
    return
  current = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_copy_insertion_use_region_analysis" not in current:
    os.environ["XLA_FLAGS"] = f"{current} {_FLAG}".strip()
