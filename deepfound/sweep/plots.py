"""Sweep pictures: final suboptimality against the step size, and a tau0 x l0 heat map."""

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


def write_plots(workdir: str, rows: list[dict], labels: list[str]) -> list[str]:
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
    lines[name][row[RATE]].append(row)
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
    rates = sorted({r[RATE] for r in mine})
    warmups = sorted({r[L0] for r in mine})
    grid = np.full((len(warmups), len(rates)), np.nan)
    diverged = np.zeros_like(grid, bool)
    for r in mine:
      i, j = warmups.index(r[L0]), rates.index(r[RATE])
      if r["diverged"]:
        diverged[i, j] = True
      else:
        grid[i, j] = np.nanmin([grid[i, j], shown(_score(r, rows))])
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis_r", **limits)
    for i, j in zip(*np.nonzero(diverged), strict=True):
      ax.text(j, i, "x", color="red", ha="center", va="center", fontsize=12)
    ax.set_xticks(range(len(rates)), [f"{x:.2g}" for x in rates], rotation=60, fontsize=7)
    ax.set_yticks(range(len(warmups)), [f"{x:g}" for x in warmups], fontsize=7)
    ax.set(xlabel="tau0", ylabel="l0", title=labels[group])
    fig.colorbar(image, ax=ax, label=f"{'log10 ' if positive else ''}final {_score_name(rows)} "
                 "(best seed); x = diverged")
  path = os.path.join(workdir, "heatmap_tau0_l0.png")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path
