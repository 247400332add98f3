"""What the pictures of section 17.4 (``generative.py``, ``gans.py``) share: the missing-input error
and the loading of a benchmark's JSON, a bench.json case's data set and seeds, numbers in titles,
the true modes and the mode-coverage curves of a 2-D mixture, a mean over seeds with its band, and
the record of a ``make_all`` (what was drawn from what, what was skipped and why: ``figures.json``)."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib.patches import Circle

from deepfound.figures import io
from deepfound.strict_json import dumps

BAND_SPREADS = ("minmax", "sd")  # band: the seeds' min to max, or the mean +- 1 sd
COVERAGE = ("modes_captured", "high_quality_fraction")  # the mode metrics' curves, in panel order


class MissingInput(Exception):
  """A picture's input is absent; the message says which and how to make it."""


# ---- inputs ----------------------------------------------------------------------------------


def load_input(path: str, key: str, what: str, command: str) -> dict[str, Any]:
  """The JSON object in ``path``, which must have the object ``key`` (e.g. bench.json's "cases");
  MissingInput says what is missing and the command that makes it (``command``, its ``{folder}``
  the file's folder)."""
  if not os.path.isfile(path):
    folder = os.path.dirname(path) or "."
    raise MissingInput(f"{what}: {path} not found; make it with: {command.format(folder=folder)}")
  with open(path) as f:
    value = json.load(f)
  if not isinstance(value, dict) or not isinstance(value.get(key), dict):
    script = command.split()[1]
    raise MissingInput(f"{what}: {path} has no {key!r}; is it {script}'s?")
  return value


def data_name(case: dict) -> str:
  """The data set of a bench.json case (its config's data.name), or ""."""
  return case.get("config", {}).get("data", {}).get("name", "")


def diverged_seeds(case: dict) -> int:
  """The seeds of a bench.json case that diverged (its ``diverged``, else the seeds whose last
  objective is not finite: NaN is written as null); its means are over the others."""
  if isinstance(case.get("diverged"), int):
    return case["diverged"]
  values = np.asarray(case.get("per_seed", {}).get("objective", []), np.float64)
  return int(np.sum(~np.isfinite(values)))


def seeds_label(case: dict) -> str:
  """"10 seeds", or "3 seeds, 1 diverged"."""
  bad = diverged_seeds(case)
  seeds = case.get("num_seeds", "?")
  return f"{seeds} seed{'' if seeds == 1 else 's'}" + (f", {bad} diverged" if bad else "")


def format_number(value: float | None, spec: str) -> str:
  """``value`` in ``spec``; "n/a" for None and for NaN or an infinity (a diverged seed's, or none)."""
  return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


# ---- drawing -----------------------------------------------------------------------------------


def mark_modes(ax, mixture, marker: str | None = "x", marker_size: float = 18,
               circle_width: float | None = 0.8) -> None:
  """The true modes of a 2-D mixture in red: its centres as ``marker`` (None: none) and circles of
  radius 3 sd, the high-quality zone of the mode metrics, of line width ``circle_width`` (None:
  none)."""
  if marker is not None:
    ax.scatter(mixture.means[:, 0], mixture.means[:, 1], marker=marker, s=marker_size, c="red",
               linewidths=0.8, zorder=4)
  if circle_width is not None:
    for mean in mixture.means:
      ax.add_patch(Circle(tuple(mean), 3 * mixture.sd, fill=False, edgecolor="red",
                          linewidth=circle_width, zorder=4))


def band(ax, steps, runs, color: str, label: str, spread: str = "minmax", marked_up_to: int = 5,
         alpha: float = 0.2, **style) -> dict[str, Any]:
  """The mean over seeds (NaN, a diverged seed's, left out), with a band of ``spread`` (the seeds'
  min to max, or the mean +- 1 sd) when there are several; markers on the line when it has at most
  ``marked_up_to`` points. ``style``: of the line (``markersize`` 3 unless given). Returns the
  series (``io.series``)."""
  if spread not in BAND_SPREADS:
    raise ValueError(f"spread must be one of {', '.join(BAND_SPREADS)}, got {spread!r}")
  steps = np.asarray(steps, np.float64)
  runs = np.atleast_2d(np.asarray(runs, np.float64))
  with warnings.catch_warnings():  # a log point where every seed diverged: NaN, drawn as a gap
    warnings.simplefilter("ignore", RuntimeWarning)
    mean = np.nanmean(runs, axis=0)
    if spread == "sd":
      sd = np.nanstd(runs, axis=0)
      low, high = mean - sd, mean + sd
    else:
      low, high = np.nanmin(runs, axis=0), np.nanmax(runs, axis=0)
  ax.plot(steps, mean, color=color, label=label, marker="o" if len(steps) <= marked_up_to else None,
          **dict(dict(markersize=3), **style))
  if len(runs) > 1:
    ax.fill_between(steps, low, high, color=color, alpha=alpha, linewidth=0)
  return io.series(label, steps, runs)


def coverage_bands(axes: Sequence, name: str, curves: dict, color: str, label: str,
                   with_metric: bool = False, **band_style) -> list[dict[str, Any]]:
  """A case's curves of modes captured and of high-quality fraction (those it has) as ``band`` s on
  ``axes`` (two, in that order); each series names its ``case`` (and ``metric``, with
  ``with_metric``)."""
  return [dict(band(ax, curves["step"], curves[key], color, label, **band_style), case=name,
               **(dict(metric=key) if with_metric else {}))
          for ax, key in zip(axes, COVERAGE, strict=True) if key in curves]


# ---- all of them -------------------------------------------------------------------------------


class DrawingLog:
  """What a ``make_all`` drew into ``out`` (each PNG with its key numbers), what it skipped and why,
  and the seconds each picture took; ``write`` puts it in ``<out>/figures.json``."""

  def __init__(self, out: str, log: Callable[[str], None] = print):
    self.out, self._log = out, log
    self.drawn: dict[str, dict[str, Any]] = {}
    self.skipped: dict[str, str] = {}
    self.seconds: dict[str, float] = {}
    self._start = time.perf_counter()

  def attempt(self, name: str, draw: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Draws picture ``name`` (``draw`` writes ``<out>/<name>.png`` and returns its numbers), or
    records why not (its MissingInput); returns the numbers, or None."""
    tic = time.perf_counter()
    try:
      data = draw()
    except MissingInput as e:
      self.skip([name], str(e))
      return None
    # the curves stay in <name>.json: figures.json keeps the key numbers
    self.drawn[name] = dict(png=os.path.join(self.out, f"{name}.png"),
                            **{k: v for k, v in data.items() if k != "series"})
    self.seconds[name] = time.perf_counter() - tic
    self._log(f"drew {self.drawn[name]['png']} ({self.seconds[name]:.1f} s)")
    return data

  def skip(self, names: Sequence[str], reason: str) -> None:
    """Records pictures not drawn, for ``reason``, with one line."""
    for name in names:
      self.skipped[name] = reason
    self._log(f"skipped {', '.join(names)}: {reason.removeprefix(f'{names[0]}: ')}")

  def summary(self, **inputs) -> dict[str, Any]:
    """``inputs`` (what was drawn from), then out, drawn, skipped, seconds, total_seconds."""
    return dict(**inputs, out=self.out, drawn=self.drawn, skipped=self.skipped, seconds=self.seconds,
                total_seconds=time.perf_counter() - self._start)

  def write(self, summary: dict[str, Any]) -> str:
    """``summary`` as ``<out>/figures.json``; returns its path."""
    os.makedirs(self.out, exist_ok=True)
    path = os.path.join(self.out, "figures.json")
    with open(path, "w") as f:
      f.write(dumps(summary, indent=2) + "\n")
    return path
