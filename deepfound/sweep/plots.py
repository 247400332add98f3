"""Sweep pictures: final suboptimality against the step size, a tau0 x l0 heat map, and for
two-player games the final metric against both players' rates."""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RATE, L0 = "optim.learning_rate", "optim.l0"


def _uses_optimum(rows) -> bool:
  return bool(rows) and all(row["optimum"] is not None for row in rows)


def _score(row, rows) -> float:
  """What a run achieved: its final suboptimality, or its objective where some E* is unknown."""
  if row["diverged"]:
    return np.nan
  return row["final_suboptimality"] if _uses_optimum(rows) else row["final_objective"]


def _score_name(rows) -> str:
  return "E - E*" if _uses_optimum(rows) else "E"


def _rate(row) -> float:
  """The step size of a run: its swept value, or where that is a name (``auto``) the value it
  resolved to (``learning_rate_used``); NaN if there is none."""
  value = row[RATE]
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  used = row.get("learning_rate_used")
  return float(used) if isinstance(used, (int, float)) else np.nan


def _named(row) -> str | None:
  """The name a run's step size was given (``auto``), or None for a number."""
  return row[RATE] if isinstance(row[RATE], str) else None


def write_plots(workdir: str, rows: list[dict], labels: list[str]) -> list[str]:
  """The step-size pictures of a single-player sweep; a step size given by name (``auto``)
  is drawn at the value it resolved to, with a star."""
  rows = [row for row in rows if RATE not in row or np.isfinite(_rate(row))]
  written = []
  if any(RATE in row for row in rows):
    written.append(_final_against_rate(workdir, rows, labels))
  if any(RATE in row for row in rows) and any(L0 in row for row in rows):
    written.append(_heat_map(workdir, rows, labels))
  return written


def _final_against_rate(workdir, rows, labels) -> str:
  """One line per program (and l0); the median over seeds, diverged runs as red crosses."""
  lines = defaultdict(lambda: defaultdict(list))
  for row in rows:
    name = labels[row["group"]] + (f", l0={row[L0]:g}" if L0 in row else "")
    lines[name][_rate(row)].append(row)
  fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
  finite = [_score(r, rows) for r in rows if not r["diverged"]]
  # Objectives without a known optimum may be negative (a log-likelihood): linear axis then.
  positive = bool(finite) and np.nanmin(finite) > 0
  top = (np.nanmax(finite) * 3 if positive else np.nanmax(finite) + 0.1 * np.ptp(finite) + 1e-3
         ) if finite else 1.0
  diverged_shown = False
  for name, by_rate in lines.items():
    rates = np.array(sorted(by_rate))
    medians = np.array([np.nanmedian([_score(r, rows) for r in by_rate[x]]) if any(
        not r["diverged"] for r in by_rate[x]) else np.nan for x in rates])
    ax.plot(rates, medians, "o-", ms=3, label=name)
    bad = [x for x in rates if any(r["diverged"] for r in by_rate[x])]
    if bad:
      ax.plot(bad, [top] * len(bad), "rx", ms=7, label=None if diverged_shown else "diverged")
      diverged_shown = True
  for given in sorted({_named(r) for r in rows} - {None}):
    named = [r for r in rows if _named(r) == given and not r["diverged"]]
    ax.plot([_rate(r) for r in named], [_score(r, rows) for r in named], "k*", ms=9,
            label=f"{RATE}={given} (at the rate it resolved to)")
  ax.set(xscale="log", yscale="log" if positive else "linear", xlabel="tau0 (optim.learning_rate)",
         ylabel=f"final {_score_name(rows)} (median over seeds)")
  ax.legend(fontsize=7)
  path = os.path.join(workdir, "final_vs_learning_rate.png")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def _heat_map(workdir, rows, labels) -> str:
  groups = sorted({row["group"] for row in rows})
  fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False,
                           layout="constrained")
  scores = [_score(r, rows) for r in rows if not r["diverged"]]
  positive = bool(scores) and np.nanmin(scores) > 0  # else a linear scale (negative NLLs)

  def shown(value):
    return np.log10(max(value, 1e-16)) if positive else value

  finite = [shown(v) for v in scores]
  limits = dict(vmin=min(finite), vmax=max(finite)) if finite else {}  # one scale for all panels
  for ax, group in zip(axes[0], groups, strict=True):
    mine = [r for r in rows if r["group"] == group]
    rates = sorted({_rate(r) for r in mine})
    names = {_rate(r): _named(r) for r in mine if _named(r)}
    warmups = sorted({r[L0] for r in mine})
    grid = np.full((len(warmups), len(rates)), np.nan)
    diverged = np.zeros_like(grid, bool)
    for r in mine:
      i, j = warmups.index(r[L0]), rates.index(_rate(r))
      if r["diverged"]:
        diverged[i, j] = True
      else:
        grid[i, j] = np.nanmin([grid[i, j], shown(_score(r, rows))])
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis_r", **limits)
    for i, j in zip(*np.nonzero(diverged), strict=True):
      ax.text(j, i, "x", color="red", ha="center", va="center", fontsize=12)
    ax.set_xticks(range(len(rates)), [f"{x:.2g}" + (f" ({names[x]})" if x in names else "")
                                      for x in rates], rotation=60, fontsize=7)
    ax.set_yticks(range(len(warmups)), [f"{x:g}" for x in warmups], fontsize=7)
    ax.set(xlabel="tau0", ylabel="l0", title=labels[group])
    fig.colorbar(image, ax=ax, label=f"{'log10 ' if positive else ''}final {_score_name(rows)} "
                 "(best seed); x = diverged")
  path = os.path.join(workdir, "heatmap_tau0_l0.png")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


# Two-player games (deepfound/sweep/games.py): the final metric against each player's rate.
GAME_RATES = ("optim.generator.learning_rate", "optim.discriminator.learning_rate")


def _metric(row, metric) -> float:
  """A game run's ``metric`` at its last log point; NaN for a diverged run or a missing value."""
  value = row.get(metric)
  return np.nan if row["diverged"] or value is None else float(value)


def write_game_plots(workdir: str, rows: list[dict], labels: list[str], metric: str) -> list[str]:
  """The pictures of a game sweep: ``metric`` (e.g. modes_captured) against each player's
  learning rate that the sweep varies, a heat map over both rates when both vary, and, when
  neither varies, every run's value per program (the spread over seeds)."""
  varied = [key for key in GAME_RATES if len({row.get(key) for row in rows} - {None}) > 1]
  written = []
  if varied:
    written.append(_game_against_rates(workdir, rows, labels, metric, varied))
  if len(varied) == 2:
    written.append(_game_heat_map(workdir, rows, labels, metric))
  if not varied:
    written.append(_game_by_program(workdir, rows, labels, metric))
  return written


def _game_against_rates(workdir, rows, labels, metric, varied) -> str:
  """A panel per varied rate; a line per program: the median over the other keys (seeds,
  the other rate); each run a dot; a red cross over the rates where some run diverged."""
  fig, axes = plt.subplots(1, len(varied), figsize=(6 * len(varied), 4.2), squeeze=False,
                           layout="constrained")
  values = [_metric(r, metric) for r in rows]
  finite = [v for v in values if np.isfinite(v)]
  top = max(finite) + 0.05 * (np.ptp(finite) or abs(max(finite)) or 1.0) if finite else 1.0
  for ax, key in zip(axes[0], varied, strict=True):
    diverged_shown = False
    for group in sorted({r["group"] for r in rows}):
      by_rate = defaultdict(list)
      for r in rows:
        if r["group"] == group:
          by_rate[r[key]].append(r)
      rates = np.array(sorted(by_rate))
      medians = [np.nanmedian(v) if np.any(np.isfinite(v)) else np.nan
                 for v in ([_metric(r, metric) for r in by_rate[x]] for x in rates)]
      (line,) = ax.plot(rates, medians, "o-", ms=3, label=labels[group])
      for x in rates:
        ax.plot([x] * len(by_rate[x]), [_metric(r, metric) for r in by_rate[x]], ".",
                color=line.get_color(), alpha=0.35)
      bad = [x for x in rates if any(r["diverged"] for r in by_rate[x])]
      if bad:
        ax.plot(bad, [top] * len(bad), "rx", ms=7, label=None if diverged_shown else "diverged")
        diverged_shown = True
    ax.set(xscale="log", xlabel=key, ylabel=f"{metric} at the last log point (median, runs)")
    ax.legend(fontsize=7)
  path = os.path.join(workdir, "final_vs_learning_rates.png")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def _game_heat_map(workdir, rows, labels, metric) -> str:
  """Per program: the median of ``metric`` over seeds on the generator x discriminator rates;
  x where every run of the pair diverged, the count of diverged runs where some did."""
  gen, disc = GAME_RATES
  groups = sorted({row["group"] for row in rows})
  fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False,
                           layout="constrained")
  finite = [v for v in (_metric(r, metric) for r in rows) if np.isfinite(v)]
  limits = dict(vmin=min(finite), vmax=max(finite)) if finite else {}
  for ax, group in zip(axes[0], groups, strict=True):
    mine = [r for r in rows if r["group"] == group]
    xs, ys = sorted({r[gen] for r in mine}), sorted({r[disc] for r in mine})
    cells = defaultdict(list)
    for r in mine:
      cells[ys.index(r[disc]), xs.index(r[gen])].append(r)
    grid = np.full((len(ys), len(xs)), np.nan)
    for (i, j), runs in cells.items():
      values = [_metric(r, metric) for r in runs]
      if np.any(np.isfinite(values)):
        grid[i, j] = np.nanmedian(values)
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", **limits)
    for (i, j), runs in cells.items():
      bad = sum(r["diverged"] for r in runs)
      if bad == len(runs):
        ax.text(j, i, "x", color="red", ha="center", va="center", fontsize=12)
      elif bad:
        ax.text(j, i, f"{bad}/{len(runs)}", color="red", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(xs)), [f"{x:.2g}" for x in xs], rotation=60, fontsize=7)
    ax.set_yticks(range(len(ys)), [f"{y:.2g}" for y in ys], fontsize=7)
    ax.set(xlabel="generator learning rate", ylabel="discriminator learning rate",
           title=labels[group])
    fig.colorbar(image, ax=ax, label=f"{metric} (median over runs); x = all diverged")
  path = os.path.join(workdir, "heatmap_learning_rates.png")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def _game_by_program(workdir, rows, labels, metric) -> str:
  """Every run's ``metric`` per program (the spread over seeds), the mean as a bar."""
  groups = sorted({row["group"] for row in rows})
  fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(groups) + 2), 4.2), layout="constrained")
  rng = np.random.default_rng(0)
  for position, group in enumerate(groups):
    values = np.array([_metric(r, metric) for r in rows if r["group"] == group])
    finite = values[np.isfinite(values)]
    ax.plot(position + rng.uniform(-0.15, 0.15, len(finite)), finite, "o", ms=4, alpha=0.6)
    if finite.size:
      ax.plot([position - 0.25, position + 0.25], [finite.mean()] * 2, "k-", lw=2)
    bad = sum(r["diverged"] for r in rows if r["group"] == group)
    if bad:
      ax.annotate(f"{bad} diverged", (position, 1), xycoords=("data", "axes fraction"),
                  xytext=(0, -12), textcoords="offset points", ha="center", color="red", fontsize=7)
  ax.set_xticks(range(len(groups)), [labels[g] for g in groups], rotation=20, fontsize=7)
  ax.set_xlim(-0.6, len(groups) - 0.4)
  ax.set(ylabel=f"{metric} at the last log point (runs; bar: mean)")
  path = os.path.join(workdir, "final_by_run.png")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path
