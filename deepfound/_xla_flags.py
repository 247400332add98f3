"""XLA flags deepfound sets for the CPU backend, before JAX initializes it.

``--xla_cpu_experimental_ynn_fusion_type=`` (empty: no YNNPACK fusions) keeps XLA from turning the
small batched dot of a vmapped step (one row of X against each run's parameters) into a library
call whose overhead dominates: 64 vmapped SAG runs went from 41 to 16 us per step; single runs and
objective evaluations are unchanged (measured with jax 0.10.2 on 2 CPU cores).

``--xla_cpu_copy_insertion_use_region_analysis=true`` lets XLA's copy insertion prove that the
in-place writes of a scan body (the gradient memory of SAG, SAGA, SVRG) do not need defensive
copies. Measured with jax 0.10.2 on 2 CPU cores: a minimal SAG loop body goes from 0.85 to 0.29
us per step, and a loop body that reads then writes one row of a 200,000-row table from 35 us
(a full copy per step) to 0.04 us. Neither changes a result. They only take effect if set before the
first JAX computation; set DEEPFOUND_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched.

``import deepfound`` does not set them: every script does, as its first step
(``deepfound.cli.flags_parser``), and code of one's own can call ``apply()`` before its first JAX
computation.
"""

from __future__ import annotations

import os

_FLAGS = {
    "xla_cpu_copy_insertion_use_region_analysis": "true",
    "xla_cpu_experimental_ynn_fusion_type": "",
}


def apply() -> None:
  """Adds deepfound's flags to the XLA_FLAGS environment variable, unless it names them already or
  DEEPFOUND_KEEP_XLA_FLAGS is set."""
  if os.environ.get("DEEPFOUND_KEEP_XLA_FLAGS"):
    return
  flags = os.environ.get("XLA_FLAGS", "")
  for name, value in _FLAGS.items():
    if name not in flags:  # a user's own setting wins
      flags = f"{flags} --{name}={value}".strip()
  os.environ["XLA_FLAGS"] = flags
