"""JSON as the standard has it: a NaN or an infinity becomes null (json.dumps would write the
non-standard tokens NaN and Infinity, which strict readers reject)."""

from __future__ import annotations

import json
import math


def strict(value):
  """``value`` with every NaN or infinite float (also NumPy's) replaced by None."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: strict(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [strict(v) for v in value]
  return value


def dumps(value, **kwargs) -> str:
  return json.dumps(strict(value), allow_nan=False, **kwargs)
