"""The sweep specification: which config keys vary, and over which values.

Grammar (whitespace is ignored)::

    SPEC   := FACTOR (';' FACTOR)*                     runs = product of the factors
    FACTOR := KEY '=' VALUES                           one key
            | 'zip(' KEY '=' VALUES (',' KEY '=' VALUES)* ')'   keys varied together
    VALUES := '[' v, v, ... ']'  |  v
            | 'range(start, stop[, step])'             integers, as Python's range
            | 'linspace(a, b, num)'                    num evenly spaced values from a to b
            | 'logspace(a, b, num)'                    10**a ... 10**b, num values
            | 'geomspace(a, b, num)'                   a ... b, num values evenly spaced in log

Examples::

    optim.learning_rate=logspace(-4, -1, 16)
    optim.learning_rate=logspace(-3, 0, 8); optim.l0=[10, 100, 1000]; seed=range(3)
    zip(optim.name=[sgd, sga], optim.schedule=[inverse_time, inverse_sqrt]); seed=[0, 1]

Values are numbers, bare words (strings: ``sgd``, ``auto``), ``true``/``false`` and tuples
(``model.hidden=[(64,), (64, 64)]``); every number must be finite. Keys are config keys
(``--config.KEY`` on the command line); ``runner.plan`` checks each value against its key's type
before the runs are expanded.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from typing import Any

import numpy as np

MAX_RUNS = 100_000  # a sweep larger than this is refused before anything is built


def _count(num) -> int:
  if isinstance(num, float) and num != int(num):
    raise ValueError(f"the number of values must be an integer, got {num!r}")
  if int(num) > MAX_RUNS:
    raise ValueError(f"{int(num):,} values, more than the {MAX_RUNS:,} a sweep may have")
  return int(num)


def _range(*args) -> list[int]:
  if any(isinstance(v, float) and v != int(v) for v in args):
    raise ValueError(f"range takes integers, got {', '.join(map(repr, args))}")
  values = range(*(int(v) for v in args))
  try:
    _count(len(values))
  except OverflowError:
    raise ValueError(f"more values than the {MAX_RUNS:,} a sweep may have") from None
  return list(values)


_GENERATORS = {
    "range": _range,
    "linspace": lambda a, b, num: np.linspace(a, b, _count(num)).tolist(),
    "logspace": lambda a, b, num: np.logspace(a, b, _count(num)).tolist(),
    "geomspace": lambda a, b, num: np.geomspace(a, b, _count(num)).tolist(),
}


class SpecError(ValueError):
  """The sweep specification cannot be parsed or names something that does not exist."""


def _split_top_level(text: str, separator: str) -> list[str]:
  """Splits on ``separator`` outside brackets and parentheses."""
  parts, depth, current = [], 0, []
  for char in text:
    if char in "([":
      depth += 1
    elif char in ")]":
      depth -= 1
      if depth < 0:
        raise SpecError(f"unbalanced brackets in {text!r}")
    if char == separator and depth == 0:
      parts.append("".join(current))
      current = []
    else:
      current.append(char)
  if depth:
    raise SpecError(f"unbalanced brackets in {text!r}")
  parts.append("".join(current))
  return [p.strip() for p in parts]


def _literal(node: ast.AST, text: str) -> Any:
  """A value of a list or a generator's argument: a number, a string (a bare word: sgd,
  inverse_time, auto), true/false, or a tuple of these (widths such as (64, 64))."""
  if isinstance(node, ast.Name):  # a bare word: a string value (sgd, inverse_time, ...)
    return node.id
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
    value = _literal(node.operand, text)
    if not _is_number(value):
      raise SpecError(f"{ast.unparse(node)!r} in {text!r}: only a number takes a sign")
    return -value if isinstance(node.op, ast.USub) else value
  if isinstance(node, ast.Tuple):
    return tuple(_literal(element, text) for element in node.elts)
  if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
    if isinstance(node.value, float) and not math.isfinite(node.value):
      written = ast.get_source_segment(text, node) or ast.unparse(node)
      raise SpecError(f"{written} in {text!r} is not a finite number")
    return node.value
  raise SpecError(f"cannot read the value {ast.unparse(node)!r} in {text!r}")


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _generate(name: str, args: list[Any], text: str) -> list[Any]:
  """The values of ``name(*args)``: numbers only, and every value a finite one."""
  if not all(_is_number(a) for a in args):
    raise SpecError(f"bad arguments in {text!r}: {name} takes numbers")
  try:
    with np.errstate(all="ignore"):  # an overflow is refused below, in one line
      values = _GENERATORS[name](*args)
  except (TypeError, ValueError, OverflowError) as e:
    raise SpecError(f"bad arguments in {text!r}: {e}") from e
  bad = [v for v in values if not math.isfinite(v)]
  if bad:
    raise SpecError(f"{text!r} gives {bad[0]}, not a finite number (the values overflow a float)")
  return values


def _values(text: str) -> list[Any]:
  try:
    node = ast.parse(text, mode="eval").body
  except SyntaxError as e:
    raise SpecError(f"cannot parse the values {text!r}") from e
  if isinstance(node, ast.List):
    values = [_literal(element, text) for element in node.elts]
  elif isinstance(node, ast.Call):
    name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
    if name not in _GENERATORS:
      raise SpecError(f"unknown generator {name!r} in {text!r}; expected one of "
                      f"{', '.join(_GENERATORS)} or a [list]")
    if node.keywords:
      raise SpecError(f"bad arguments in {text!r}: {name} takes positional arguments")
    values = _generate(name, [_literal(a, text) for a in node.args], text)
  else:
    values = [_literal(node, text)]
  if not values:
    raise SpecError(f"{text!r} gives no values")
  return values


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _assignment(text: str) -> tuple[str, list[Any]]:
  if "=" not in text:
    raise SpecError(f"expected KEY=VALUES, got {text!r}")
  key, values = (part.strip() for part in text.split("=", 1))
  if not _KEY.match(key):
    raise SpecError(f"not a config key: {key!r}")
  try:
    return key, _values(values)
  except SpecError as e:
    raise SpecError(f"{key}: {e}") from e


def parse(spec: str) -> list[dict[str, list[Any]]]:
  """The factors of ``spec``: each a dict of key -> values (several keys when zipped)."""
  if not spec or not spec.strip():
    raise SpecError("the sweep specification is empty")
  factors = []
  for text in _split_top_level(spec.strip(), ";"):
    if not text:
      continue
    if text.startswith("zip(") and text.endswith(")"):
      pairs = [_assignment(part) for part in _split_top_level(text[4:-1], ",")]
      lengths = {len(values) for _, values in pairs}
      if len(lengths) != 1:
        raise SpecError(f"zipped keys need equal numbers of values, got "
                        f"{', '.join(f'{k}: {len(v)}' for k, v in pairs)}")
      factors.append(dict(pairs))
    else:
      key, values = _assignment(text)
      factors.append({key: values})
  if not factors:
    raise SpecError(f"the sweep specification {spec!r} has no KEY=VALUES")
  keys = [key for factor in factors for key in factor]
  if len(keys) != len(set(keys)):
    raise SpecError(f"a key appears twice in the sweep: {keys}")
  return factors


def expand(factors: list[dict[str, list[Any]]]) -> list[dict[str, Any]]:
  """One dict of key -> value per run: the product over factors, zipped keys together (at most
  ``MAX_RUNS`` runs)."""
  total = 1
  for factor in factors:
    total *= len(next(iter(factor.values())))
  if total > MAX_RUNS:
    raise SpecError(f"the sweep has {total:,} runs, more than the {MAX_RUNS:,} allowed; split it")
  per_factor = [
      [dict(zip(factor, combo, strict=True)) for combo in zip(*factor.values(), strict=True)]
      for factor in factors
  ]
  runs = []
  for combination in itertools.product(*per_factor):
    run = {}
    for part in combination:
      run.update(part)
    runs.append(run)
  return runs
