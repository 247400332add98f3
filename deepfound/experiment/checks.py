"""Checks of config values at the boundary: each raises ``ConfigError`` with one line naming the
key and what it allows."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from deepfound.errors import ConfigError

PRECISIONS = {"float32": jnp.float32, "float64": jnp.float64}


def one_of(key: str, value, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")


MAX_SEED = 2**32 - 1  # jax.random.PRNGKey takes a uint32 seed


def number(key: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
    raise ConfigError(f"{key} must be a finite number, got {value!r}")
  return float(value)


def positive(key: str, value, precision: str | None = None) -> None:
  """A finite number > 0 that stays > 0 and finite in the run's precision."""
  if value is None or not number(key, value) > 0:
    raise ConfigError(f"{key} must be > 0, got {value!r}")
  if precision is not None:
    with np.errstate(over="ignore", under="ignore"):
      rounded = np.asarray(value, PRECISIONS[precision])
    if not (np.isfinite(rounded) and rounded > 0):
      raise ConfigError(f"{key} = {value!r} is not representable in {precision} (it becomes "
                        f"{rounded.item()!r})")


def positive_int(key: str, value, largest: int | None = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{key} must be a positive integer, got {value!r}")
  if largest is not None and value > largest:
    raise ConfigError(f"{key} must be at most {largest:,}, got {value!r}")


def seed(key: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
    raise ConfigError(f"{key} must be an integer in [0, {MAX_SEED}], got {value!r}")


def check_ema(prefix: str, ema, spec) -> None:
  """``<prefix>.ema``: None or 0 (the last iterate) or a decay in (0, 1), on a rule (``spec``, a
  ``registry.RuleSpec``) that does not average its iterates already."""
  if ema is None or (isinstance(ema, int | float) and not isinstance(ema, bool) and ema == 0):
    return
  if isinstance(ema, bool) or not isinstance(ema, int | float) or not 0 < ema < 1:
    raise ConfigError(f"{prefix}.ema must be a decay in (0, 1) (or 0: report the last "
                      f"iterate), got {ema!r}")
  if spec.averages:
    raise ConfigError(f"{prefix}.ema: {prefix}.name={spec.name} reports an average of its "
                      "iterates already")
