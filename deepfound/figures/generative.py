"""Pictures of section 17.4 (deep generative models), from three kinds of input.

* ``bench.json`` of ``scripts/bench_generative.py``: per case the last metrics over seeds
  (``mean``), their curves over the steps, and seed 0's samples and log-density grid
  (``pictures``): ``density_2d``, ``pushforward_2d``, ``pushforward_training``, ``modes_curves``,
  ``flow_rules``, the MSE panel of ``autoencoder_digits`` and the density half of
  ``training_curves``.
* A VAE run directory (``configs/vae_mnist.py``), reopened at its latest checkpoint
  (``deepfound.experiment.restore.restore_run``): ``vae_mnist`` and the VAE half of
  ``training_curves``.
* Small runs made here by the runner (``run_experiment``, seconds each) and reopened the same way:
  the 2-latent VAE on digits (``vae_digits_latent``) and the linear and MLP auto-encoders at code
  size 8 (the reconstructions of ``autoencoder_digits``, beside PCA at the same code size).

The drawing functions take plain arrays and dicts and raise ``MissingInput`` (with what is
missing and how to make it) when they have nothing to draw; ``make_all`` draws what it can,
records what it skipped and why, and writes ``figures.json``. Each picture is a PNG beside a
JSON file (``io.save``) with its key numbers and curves; the samples and grids themselves stay
in bench.json, which the JSON names.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from matplotlib.patches import Circle

from deepfound.data.mixtures import MIXTURES
from deepfound.figures import io
from deepfound.figures.common import (
    DrawingLog,
    MissingInput,
    band,
    coverage_bands,
    data_name,
    diverged_seeds,
    format_number,
    load_input,
    mark_modes,
    seeds_label,
)

if TYPE_CHECKING:
  from deepfound.experiment.restore import RestoredRun

ConfigFactory = Callable[[str], ml_collections.ConfigDict]  # config argument -> config
BENCH_COMMAND = "python scripts/bench_generative.py --out={folder}"
# a 2 x 3 layout, ring first: the mixture, RealNVP, the spline flow (model.name=flow)
DENSITY_CASES = ("gmm_ring", "realnvp_ring", "flow_ring", "gmm_grid", "realnvp_grid", "flow_grid")
PUSHFORWARD_CASES = ("mmd_ring", "sinkhorn_ring", "mmd_grid", "sinkhorn_grid")
FAMILIES = ("gmm", "realnvp", "flow", "mmd", "sinkhorn")  # the 2-D cases are <family>_<data>
LABELS = dict(flow="spline flow", realnvp="RealNVP")  # how titles and legends name a family
FLOW_RULES = ("flow_ring_10k_sgd", "flow_ring_10k_sag", "flow_ring_10k_adam")
AE_CODE_SIZES = (2, 8, 16)
COLORS = dict(gmm="tab:blue", flow="tab:orange", realnvp="tab:brown", mmd="tab:green",
              sinkhorn="tab:red",
              sgd="tab:blue", sag="tab:green", adam="tab:orange")
AE_STEPS = 5_000  # the auto-encoders' configs train 20,000 steps; 5,000 reach PCA (linear) here
LATENT_GRID = 15  # decodes per axis of the 2-D latent map
LATENT_RADIUS = 2.5  # over [-r, r]^2 of the prior N(0, I)
NUM_RECONSTRUCTIONS = 10


# ---- inputs ----------------------------------------------------------------------------------


def load_bench(path: str) -> dict[str, Any]:
  """bench.json of ``scripts/bench_generative.py``; MissingInput names the command that makes it."""
  return load_input(path, "cases", "bench.json", BENCH_COMMAND)


def _present(bench: dict | None, names: Sequence[str], what: str, need: Sequence[str] = ()) -> list[str]:
  """The cases of ``names`` that bench.json has (with the ``pictures`` keys ``need``); none is
  a MissingInput."""
  cases = (bench or {}).get("cases", {})
  present = [n for n in names if n in cases and all(k in cases[n].get("pictures", {}) for k in need)]
  if not present:
    raise MissingInput(f"{what}: bench.json has none of the cases {', '.join(names)}"
                       + (f" with pictures {', '.join(need)}" if need else ""))
  return present


def _number(case: dict, key: str) -> float | None:
  value = case.get("mean", {}).get(key)
  return None if value is None or not math.isfinite(value) else float(value)


def _modes(case: dict):
  """The true mixture of a case's data (ring, grid), or None."""
  return MIXTURES.get(data_name(case))


def _key_numbers(case: dict) -> dict[str, Any]:
  keys = ("test_nll", "kl_gap", "modes_captured", "high_quality_fraction", "mode_kl", "objective",
          "reconstruction_mse", "pca_mse", "test_reconstruction_mse", "test_pca_mse")
  numbers = {k: _number(case, k) for k in keys if k in case.get("mean", {})}
  return dict(numbers, num_seeds=case.get("num_seeds"), diverged_seeds=diverged_seeds(case),
              num_steps=case.get("num_steps"), rule=case.get("rule"))


def _mode_line(case: dict) -> str:
  mixture = _modes(case)
  modes, hq = _number(case, "modes_captured"), _number(case, "high_quality_fraction")
  if mixture is None or modes is None:
    return ""
  return f"modes {modes:.1f}/{mixture.num_modes}, HQ {format_number(hq, '.3f')}"


def _title(name: str, case: dict) -> str:
  family, _, data = name.partition("_")
  return (f"{LABELS.get(family, family)} on {data} ({seeds_label(case)}, "
          f"{case.get('num_steps', 0):,} steps)")


def _missing_panel(ax, name: str) -> None:
  ax.text(0.5, 0.5, f"{name}:\nnot in bench.json", ha="center", va="center", transform=ax.transAxes,
          color="gray")
  ax.set(xticks=[], yticks=[])


def _zoom(ax, mixture, layers: Sequence[tuple[np.ndarray, dict]],
          bounds: Sequence[float] = (0.33, 0.33, 0.34, 0.34)) -> None:
  """An inset (``bounds`` in axes fractions) on the mode nearest to it, +- 8 sd, with its 3-sd
  circle: the ring's modes are too small to see at full scale."""
  inset = ax.inset_axes(list(bounds))
  middle = ax.transData.inverted().transform(
      ax.transAxes.transform((bounds[0] + bounds[2] / 2, bounds[1] + bounds[3] / 2)))
  center = mixture.means[np.argmin(np.sum((mixture.means - middle) ** 2, axis=1))]
  half = 8 * mixture.sd
  for points, style in layers:
    near = np.all(np.abs(points - center) < half, axis=1)
    inset.scatter(points[near, 0], points[near, 1], **dict(dict(s=4, linewidths=0), **style))
  inset.add_patch(Circle(tuple(center), 3 * mixture.sd, fill=False, edgecolor="red", linewidth=1))
  inset.set(xlim=(center[0] - half, center[0] + half), ylim=(center[1] - half, center[1] + half),
            xticks=[], yticks=[], aspect="equal", facecolor="white")
  inset.text(0.04, 0.04, "\u00b18 sd", fontsize=7, transform=inset.transAxes)
  ax.indicate_inset_zoom(inset, edgecolor="black")


# ---- 2-D pictures from bench.json ------------------------------------------------------------


def density_2d(out: str, bench: dict) -> dict[str, Any]:
  """gmm, RealNVP and the spline flow on ring and grid: seed 0's log-density, its samples, the
  true modes."""
  present = _present(bench, DENSITY_CASES, "density_2d", need=("log_density", "samples"))
  fig, axes = plt.subplots(2, len(DENSITY_CASES) // 2, figsize=(16, 10.5), layout="constrained")
  numbers, image = {}, None
  for ax, name in zip(axes.ravel(), DENSITY_CASES, strict=True):
    if name not in present:
      _missing_panel(ax, name)
      continue
    case = bench["cases"][name]
    pictures = case["pictures"]
    log_density = np.asarray(pictures["log_density"], np.float64)
    gx, gy = np.asarray(pictures["grid_x"]), np.asarray(pictures["grid_y"])
    top = np.nanmax(log_density)
    # rows of log_density run along y: origin lower; 12 nats of range shows the modes and the gaps
    image = ax.imshow(np.clip(log_density - top, -12, 0), origin="lower", cmap="viridis",
                      extent=(gx[0], gx[-1], gy[0], gy[-1]), aspect="equal", interpolation="nearest")
    samples = np.asarray(pictures["samples"], np.float64)
    ax.scatter(samples[:, 0], samples[:, 1], s=1.5, c="white", alpha=0.6, linewidths=0)
    mixture = _modes(case)
    if mixture is not None:
      mark_modes(ax, mixture, marker="+", marker_size=40, circle_width=None)
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    if mixture is not None and data_name(case) == "ring":  # the flow fills the centre: a corner
      test = np.asarray(pictures["test"], np.float64)
      _zoom(ax, mixture, [(test, dict(c="darkgray", s=10)), (samples, dict(c="navy", alpha=0.6))],
            bounds=(0.01, 0.79, 0.2, 0.2))
    nll, gap = _number(case, "test_nll"), _number(case, "kl_gap")
    ax.set_title(f"{_title(name, case)}\ntest NLL {format_number(nll, '.4f')}, KL gap "
                 f"{format_number(gap, '.3g')}, {_mode_line(case)}", fontsize=9)
    numbers[name] = _key_numbers(case)
  if image is not None:
    fig.colorbar(image, ax=axes, shrink=0.5, label="log density - its maximum on the grid (nats)")
  fig.suptitle("Densities fitted by maximum likelihood (17.4.1): seed 0's log-density and 2,500 of its "
               "samples (white), true modes +;\ninset: test points gray, samples navy; titles: means over "
               "the seeds that did not diverge")
  data = dict(numbers=numbers, missing=[n for n in DENSITY_CASES if n not in present],
              inputs={n: f"bench.json cases.{n}.pictures (seed 0), mean" for n in present})
  io.save(fig, "density_2d", out, data)
  return data


def pushforward_2d(out: str, bench: dict) -> dict[str, Any]:
  """mmd and sinkhorn generators on ring and grid: test points, samples, 3-sd circles of the modes."""
  present = _present(bench, PUSHFORWARD_CASES, "pushforward_2d", need=("samples",))
  fig, axes = plt.subplots(2, 2, figsize=(11, 10.5), layout="constrained")
  numbers = {}
  for ax, name in zip(axes.ravel(), PUSHFORWARD_CASES, strict=True):
    if name not in present:
      _missing_panel(ax, name)
      continue
    case = bench["cases"][name]
    test = np.asarray(case["pictures"]["test"], np.float64)
    samples = np.asarray(case["pictures"]["samples"], np.float64)
    ax.scatter(test[:, 0], test[:, 1], s=3, c="lightgray", linewidths=0, label="test points")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="navy", alpha=0.6, linewidths=0,
               label="generated (seed 0)")
    both = np.concatenate([test, samples])
    low, high = np.percentile(both, 0.5, axis=0), np.percentile(both, 99.5, axis=0)
    pad = 0.1 * (high - low).max()
    ax.set(xlim=(low[0] - pad, high[0] + pad), ylim=(low[1] - pad, high[1] + pad), aspect="equal")
    mixture = _modes(case)
    if mixture is not None:
      mark_modes(ax, mixture, marker=None, circle_width=0.8)
      if data_name(case) == "ring":
        _zoom(ax, mixture, [(test, dict(c="darkgray", s=10)), (samples, dict(c="navy", alpha=0.6))])
    ax.set_title(f"{_title(name, case)}\nobjective {format_number(_number(case, 'objective'), '.3g')}, "
                 f"{_mode_line(case)}, mode KL {format_number(_number(case, 'mode_kl'), '.3g')}", fontsize=10)
    numbers[name] = _key_numbers(case)
  axes.ravel()[0].legend(loc="lower left", fontsize=8, markerscale=3)
  fig.suptitle("Push-forward generators h # N(0, I) fitted by a minibatch divergence (17.4.1): test "
               "points (gray), generated (navy),\nmodes' 3-sd circles (red); titles: means over the seeds "
               "that did not diverge")
  data = dict(numbers=numbers, missing=[n for n in PUSHFORWARD_CASES if n not in present],
              inputs={n: f"bench.json cases.{n}.pictures (seed 0), mean" for n in present})
  io.save(fig, "pushforward_2d", out, data)
  return data


def pushforward_training(out: str, bench: dict) -> dict[str, Any]:
  """The push-forward generators of ``pushforward_2d`` at four points of training (seed 0's
  ``pictures.snapshots``, recorded inside the training program): a row per case."""
  present = _present(bench, PUSHFORWARD_CASES, "pushforward_training", need=("test", "snapshots"))
  columns = max(len(bench["cases"][n]["pictures"]["snapshots"]["step"]) for n in present)
  fig, axes = plt.subplots(len(present), columns, figsize=(3.2 * columns, 3.3 * len(present)),
                           layout="constrained", squeeze=False)
  numbers = {}
  for row, name in zip(axes, present, strict=True):
    case = bench["cases"][name]
    test = np.asarray(case["pictures"]["test"], np.float64)
    snapshots = case["pictures"]["snapshots"]
    mixture = _modes(case)
    low, high = np.percentile(test, 0.5, axis=0), np.percentile(test, 99.5, axis=0)
    pad = 0.15 * (high - low).max()
    numbers[name] = {}
    for ax, step, samples in zip(row, snapshots["step"], snapshots["samples"], strict=False):
      samples = np.asarray(samples, np.float64)
      ax.scatter(test[:, 0], test[:, 1], s=2, c="lightgray", linewidths=0)
      ax.scatter(samples[:, 0], samples[:, 1], s=2, c="navy", alpha=0.6, linewidths=0)
      ax.set(xlim=(low[0] - pad, high[0] + pad), ylim=(low[1] - pad, high[1] + pad),
             aspect="equal", xticks=[], yticks=[])
      line = ""
      if mixture is not None:
        mark_modes(ax, mixture, marker=None, circle_width=0.6)
        near = np.min(np.linalg.norm(samples[:, None, :] - mixture.means[None], axis=-1), axis=1)
        good = float(np.mean(near <= 3 * mixture.sd))
        numbers[name][str(step)] = dict(high_quality_fraction=good)
        line = f", high quality {good:.2f}"
      ax.set_title(f"{name}, step {step:,}{line}", fontsize=9)
    for ax in row[len(snapshots["step"]):]:
      ax.axis("off")
  fig.suptitle("Push-forward generators during training (seed 0; test points gray, generated "
               "navy, modes' 3-sd circles red)")
  data = dict(numbers=numbers, missing=[n for n in PUSHFORWARD_CASES if n not in present],
              inputs={n: f"bench.json cases.{n}.pictures.snapshots (seed 0)" for n in present})
  io.save(fig, "pushforward_training", out, data)
  return data


def modes_curves(out: str, bench: dict) -> dict[str, Any]:
  """Modes captured and high-quality fraction over training, every 2-D case, ring and grid."""
  names = [f"{family}_{data}" for data in ("ring", "grid") for family in FAMILIES]
  present = _present(bench, names, "modes_curves")
  present = [n for n in present if "modes_captured" in bench["cases"][n].get("curves", {})]
  if not present:
    raise MissingInput("modes_curves: no 2-D case of bench.json has modes_captured curves")
  fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), layout="constrained")
  series, final = [], {}
  for row, mixture_name in enumerate(("ring", "grid")):
    mixture = MIXTURES[mixture_name]
    if not any(n.endswith(mixture_name) for n in present):
      for ax in axes[row]:
        _missing_panel(ax, f"{mixture_name} cases")
      continue
    for family in FAMILIES:
      name = f"{family}_{mixture_name}"
      if name not in present:
        continue
      case = bench["cases"][name]
      series += coverage_bands(axes[row], name, case["curves"], COLORS[family],
                               f"{LABELS.get(family, family)} ({seeds_label(case)})")
      final[name] = dict(modes_captured=_number(case, "modes_captured"),
                         high_quality_fraction=_number(case, "high_quality_fraction"))
    axes[row, 0].axhline(mixture.num_modes, color="gray", linestyle=":", linewidth=1)
    axes[row, 0].set(ylabel=f"{mixture_name}: modes captured (of {mixture.num_modes})",
                     ylim=(0, mixture.num_modes + 1))
    axes[row, 1].set(ylabel=f"{mixture_name}: high-quality fraction", ylim=(0, 1.02))
    for ax in axes[row]:
      ax.set_xscale("log")
      ax.grid(alpha=0.3)
    axes[row, 0].legend(loc="lower right", fontsize=8)
  for ax in axes[1]:
    ax.set_xlabel("steps (log scale)")
  fig.suptitle("Mode coverage over training, 2,500 samples a log point (VEEGAN/PacGAN metrics): "
               "mean over finite seeds, band min-max")
  data = dict(final=final, series=series, inputs={n: f"bench.json cases.{n}.curves" for n in present})
  io.save(fig, "modes_curves", out, data)
  return data


def flow_rules(out: str, bench: dict) -> dict[str, Any]:
  """The flow on ring with n = 10,000 under sgd, sag and adam: test NLL and HQ fraction over steps."""
  present = _present(bench, FLOW_RULES, "flow_rules")
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
  series, final, entropy = [], {}, None
  for name in present:
    case = bench["cases"][name]
    curves, optim = case["curves"], case.get("config", {}).get("optim", {})
    rule = case.get("rule", name.rsplit("_", 1)[-1])
    label = f"{rule}, lr {optim.get('learning_rate', float('nan')):g} ({seeds_label(case)})"
    series.append(dict(band(axes[0], curves["step"], curves["test_nll"], COLORS.get(rule, "k"), label),
                       case=name))
    if "high_quality_fraction" in curves:
      series.append(dict(band(axes[1], curves["step"], curves["high_quality_fraction"],
                               COLORS.get(rule, "k"), label), case=name))
    if "entropy" in case.get("mean", {}):
      entropy = _number(case, "entropy")
    final[name] = _key_numbers(case)
  if entropy is not None:
    axes[0].axhline(entropy, color="gray", linestyle=":", linewidth=1)
    axes[0].annotate("entropy of the data (the floor)", (0.02, entropy), xycoords=("axes fraction", "data"),
                     textcoords="offset points", xytext=(0, 4), fontsize=8, color="gray")
  axes[0].set(xlabel="steps", ylabel="test NLL (nats)")
  axes[1].set(xlabel="steps", ylabel="high-quality fraction", ylim=(0, 1.02))
  _limit_from_below(axes[0], series, entropy)
  for ax in axes:
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  config = bench["cases"][present[0]].get("config", {})
  transform = config.get("model", {}).get("transform", "affine")  # older cases: RealNVP
  flow = "spline flow" if transform == "spline" else "RealNVP"
  fig.suptitle(f"{flow} on ring, n = {config.get('data', {}).get('num_samples', 0):,}, batch "
               f"{config.get('optim', {}).get('batch_size', '?')}: plain gradient steps against SAG "
               "(one stored gradient per sample) and adam, each at its rate; mean over finite seeds, "
               "band min-max")
  data = dict(final=final, series=series, entropy=entropy,
              missing=[n for n in FLOW_RULES if n not in present],
              inputs={n: f"bench.json cases.{n}.curves" for n in present})
  io.save(fig, "flow_rules", out, data)
  return data


DIGITS_FLOWS = ("flow_digits", "realnvp_digits")


def flow_digits(out: str, bench: dict) -> dict[str, Any]:
  """Samples of the flows on 8x8 digits (seed 0, at its selected iterate) beside test digits,
  with each case's test NLL and bits/dim at the iterates the seeds reported."""
  present = _present(bench, DIGITS_FLOWS, "flow_digits", need=("samples",))
  first = bench["cases"][present[0]]["pictures"]
  panels = [("test digits (dequantized)", np.asarray(first["test"], np.float64), None)]
  numbers = {}
  for name in present:
    case = bench["cases"][name]
    family = name.split("_")[0]
    bits, step = _number(case, "final_test_bits_per_dim"), _number(case, "selected_step")
    panels.append((f"{LABELS.get(family, family)} ({seeds_label(case)}): "
                   f"{format_number(bits, '.3f')} bits/dim,\nbest validation step "
                   f"{format_number(step, '.0f')} (mean)", np.asarray(case["pictures"]["samples"]),
                   name))
    numbers[name] = dict(final_test_nll=_number(case, "final_test_nll"),
                         final_test_bits_per_dim=bits, selected_step=step,
                         num_seeds=case.get("num_seeds"))
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), layout="constrained",
                           squeeze=False)
  for ax, (title, images, _) in zip(axes[0], panels, strict=True):
    count = min(len(images), 64)
    side = int(round(math.sqrt(images.shape[1])))
    grid = int(math.sqrt(count))
    ax.imshow(io.tile(np.clip(images[:grid * grid], 0, 1), grid, grid, side), cmap="gray_r",
              vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=9)
  fig.suptitle("Flows fitted by maximum likelihood to dequantized 8x8 digits (17.4.1): samples of "
               "seed 0 at its best validation iterate")
  data = dict(numbers=numbers, missing=[n for n in DIGITS_FLOWS if n not in present],
              inputs={n: f"bench.json cases.{n}.pictures (seed 0), mean" for n in present})
  io.save(fig, "flow_digits", out, data)
  return data


def _limit_from_below(ax, series: list[dict], floor: float | None) -> None:
  """A test-NLL axis from the floor to the NLL after the first tenth of the steps: the first
  log points of a flow are far above the rest and would flatten the curves (10 points or more)."""
  runs = [np.asarray(s["runs"], np.float64) for s in series]
  runs = [r for r in runs if r.shape[-1] >= 10]
  if not runs:
    return
  high = max(np.nanmax(r[:, min(r.shape[1] - 1, max(1, r.shape[1] // 10)):]) for r in runs)
  low = min([np.nanmin(r) for r in runs] + ([floor] if floor is not None else []))
  if math.isfinite(low) and math.isfinite(high) and high > low:
    pad = 0.05 * (high - low)
    ax.set_ylim(low - pad, high + pad)


# ---- auto-encoders ---------------------------------------------------------------------------


def autoencoder_digits(out: str, reconstructions: dict | None, bench: dict | None) -> dict[str, Any]:
  """Rows of 8x8 test digits: originals, linear AE, MLP AE, PCA at the same code size; and the
  reconstruction MSE against code size, linear AE and PCA (bench.json's ae cases).

  ``reconstructions``: dict(original=(k, 64), rows={label: (k, 64)}, code_size, test_mse={label: mse})
  (``train_autoencoders``); either input may be None, not both."""
  ae_names = [f"ae_linear_{m}" for m in AE_CODE_SIZES] + ["ae_mlp_8"]
  cases = {n: c for n, c in (bench or {}).get("cases", {}).items() if n in ae_names}
  if reconstructions is None and not cases:
    raise MissingInput("autoencoder_digits: no reconstructions (the small trainings did not run) and "
                       f"bench.json has none of the cases {', '.join(ae_names)}")
  fig = plt.figure(figsize=(12, 4.2), layout="constrained")
  left, right = fig.subfigures(1, 2, width_ratios=(2.3, 1))
  data: dict[str, Any] = dict(inputs={})
  if reconstructions is not None:
    original = np.asarray(reconstructions["original"])
    rows = {"original": original, **{k: np.asarray(v) for k, v in reconstructions["rows"].items()}}
    side = int(round(math.sqrt(original.shape[1])))
    axes = left.subplots(len(rows), 1)
    for ax, (label, images) in zip(np.atleast_1d(axes), rows.items(), strict=True):
      ax.imshow(io.tile(images, 1, len(images), side), cmap="gray_r", vmin=0, vmax=1)
      mse, steps = (reconstructions.get(k, {}).get(label) for k in ("test_mse", "steps"))
      text = (label + ("" if steps is None else f"\n{steps:,} steps")
              + ("" if mse is None else f"\nMSE {mse:.4f}"))
      ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)
      ax.set(xticks=[], yticks=[])
    left.suptitle(f"{len(original)} test digits (the first of each label) and their reconstructions at "
                  f"code size {reconstructions['code_size']}; MSE over the whole test set", fontsize=10)
    data.update(code_size=reconstructions["code_size"], test_mse=reconstructions.get("test_mse", {}),
                steps=reconstructions.get("steps", {}), labels=reconstructions.get("labels"),
                test_indices=reconstructions.get("indices"))
    data["inputs"]["reconstructions"] = reconstructions.get("source", "small trainings")
  else:
    ax = left.subplots()
    ax.text(0.5, 0.5, "reconstructions: not trained (--notrain)", ha="center", va="center", color="gray")
    ax.set_axis_off()
  ax = right.subplots()
  if cases:
    sizes = [m for m in AE_CODE_SIZES if f"ae_linear_{m}" in cases]
    mse = {}
    for split, prefix, style in (("train", "", "-"), ("test", "test_", ":")):
      linear = [_number(cases[f"ae_linear_{m}"], f"{prefix}reconstruction_mse") for m in sizes]
      pca = [_number(cases[f"ae_linear_{m}"], f"{prefix}pca_mse") for m in sizes]
      if sizes and None not in linear + pca:
        ax.plot(sizes, linear, "o" + style, color="tab:blue", label=f"linear AE, {split}")
        ax.plot(sizes, pca, "s" + style, color="black", mfc="none", markersize=8, label=f"PCA, {split}")
      mse.update({f"{split}_linear_{m}": v for m, v in zip(sizes, linear, strict=True)})
      mse.update({f"{split}_pca_{m}": v for m, v in zip(sizes, pca, strict=True)})
      mlp = _number(cases["ae_mlp_8"], f"{prefix}reconstruction_mse") if "ae_mlp_8" in cases else None
      if mlp is not None:
        ax.plot([8], [mlp], "D", color="tab:orange", mfc="tab:orange" if split == "train" else "none",
                label=f"MLP AE (256, 128), {split}")
        mse[f"{split}_mlp_8"] = mlp
    ax.set(xlabel="code size", ylabel="reconstruction MSE", xticks=list(AE_CODE_SIZES), xlim=(0, 18),
           yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax.set_title(f"bench.json ({max(c.get('num_steps', 0) for c in cases.values()):,} steps), mean over "
                 "seeds", fontsize=10)
    data["bench_mse"] = mse
    data["inputs"]["bench"] = {n: f"bench.json cases.{n}.mean" for n in cases}
  else:
    ax.text(0.5, 0.5, "ae cases: not in bench.json", ha="center", va="center", color="gray")
    ax.set_axis_off()
  fig.suptitle("Auto-encoders on 8x8 digits (17.4.2) against PCA at the same code size")
  io.save(fig, "autoencoder_digits", out, data)
  return data


def _run(config: ml_collections.ConfigDict, workdir: str) -> RestoredRun:
  """``config`` run by the runner into ``workdir`` (a complete run of it there is reused), reopened
  at its end."""
  from deepfound.experiment import run_experiment
  from deepfound.experiment.restore import restore_run

  run_experiment(config, workdir, progress=False)
  return restore_run(workdir)


def _merge(model, params):
  """``model`` (a freshly built module of the right shapes) with ``params`` as its nnx.Params,
  the way ``deepfound.experiment.generative._pure`` splits and merges it."""
  from flax import nnx

  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  return nnx.merge(graphdef, params, rest)


def _with_steps(config: ml_collections.ConfigDict, steps: int | None) -> ml_collections.ConfigDict:
  if steps is not None:
    config.num_steps = steps
    config.log_every = min(config.log_every, steps)
    config.num_steps -= config.num_steps % config.log_every
  return config


def _test_labels(config: ml_collections.ConfigDict, test_samples) -> np.ndarray:
  """The labels of a problem's test samples: its data set split as ``train_test`` splits it."""
  from deepfound import data as data_lib
  from deepfound.experiment.models import train_test

  dataset = data_lib.get_dataset(config.data.name).load(config.data)
  (_, _), (x_test, labels) = train_test(config, dataset, standardize=False)
  x_test = np.asarray(x_test, np.float64).reshape(len(x_test), -1)
  if not np.allclose(x_test, np.asarray(test_samples, np.float64)):
    raise RuntimeError("the test samples and their labels are out of step with the problem's split")
  return np.asarray(labels)


def autoencoder_reconstructions(linear: RestoredRun, mlp: RestoredRun,
                                num_images: int = NUM_RECONSTRUCTIONS) -> dict[str, Any]:
  """Reconstructs ``num_images`` test digits (the first of each label, then the next ones) with the
  two trained auto-encoders (runs of ``configs/autoencoder_digits.py``, same code size) and with PCA
  fitted on the training digits (NumPy, float64)."""
  from flax import nnx

  from deepfound.models.autoencoder import AutoEncoder

  if linear.config.model.code_size != mlp.config.model.code_size:
    raise ValueError("the two auto-encoders must have the same code size")
  code = linear.config.model.code_size
  rows, test_mse, steps, x, x_test = {}, {}, {}, None, None
  for label, run in (("linear AE", linear), ("MLP AE", mlp)):
    config, problem = run.config, run.setup.problem
    x, x_test = np.asarray(problem.samples, np.float64), np.asarray(problem.test_samples, np.float64)
    model = _merge(AutoEncoder(x.shape[1], code, tuple(config.model.hidden), config.model.activation,
                               rngs=nnx.Rngs(config.model.seed)), jax.device_get(run.params))
    full = np.asarray(model(problem.test_samples), np.float64)
    rows[label], test_mse[label] = full, float(np.mean((full - x_test) ** 2))
    steps[label] = run.step
  mean = x.mean(axis=0)
  directions = np.linalg.svd(x - mean, full_matrices=False)[2][:code].T
  pca = mean + ((x_test - mean) @ directions) @ directions.T
  rows["PCA"], test_mse["PCA"] = pca, float(np.mean((pca - x_test) ** 2))
  labels = _test_labels(linear.config, x_test)
  firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
  shown = (firsts + [i for i in range(len(labels)) if i not in firsts])[:num_images]
  rows = {label: images[shown] for label, images in rows.items()}
  return dict(original=x_test[shown], labels=labels[shown].tolist(), indices=shown, rows=rows,
              code_size=code, test_mse=test_mse, steps=steps,
              source=f"configs/autoencoder_digits.py:linear and :mlp, code size {code}, trained here "
                     f"({', '.join(f'{k} {v:,} steps' for k, v in steps.items())})")


# ---- VAEs ------------------------------------------------------------------------------------


def _vae(run: RestoredRun):
  """The VAE module of a restored run, with its reported parameters."""
  from flax import nnx

  from deepfound.models import vae as vae_lib

  model = run.config.model
  return _merge(vae_lib.VAE(run.setup.problem.test_samples.shape[1], tuple(model.hidden), model.latent_size,
                            rngs=nnx.Rngs(model.seed)), jax.device_get(run.params))


def _metrics_up_to(run: RestoredRun) -> list[dict]:
  """The run's metrics.jsonl rows up to its checkpoint (a run still training has written more)."""
  return [row for row in run.files.metric_lines() if row["step"] <= run.step]


def vae_latent_map(run: RestoredRun) -> dict[str, Any]:
  """The posterior means of the test digits under a trained 2-latent VAE (a run of
  ``configs/vae_digits.py:2``) with their labels (the split of ``train_test``), and the decodes of a
  grid over [-r, r]^2."""
  from deepfound.models import vae as vae_lib

  latent_size, test = run.config.model.latent_size, run.setup.problem.test_samples
  if latent_size != 2:
    raise ValueError(f"the latent map needs model.latent_size = 2, got {latent_size}")
  labels = _test_labels(run.config, test)
  model = _vae(run)
  latents = np.asarray(vae_lib.encode_mean(model, test), np.float64)
  axis = np.linspace(-LATENT_RADIUS, LATENT_RADIUS, LATENT_GRID)
  z1, z2 = np.meshgrid(axis, axis[::-1])  # rows: z2 from +r (top) to -r
  z = np.stack([z1.ravel(), z2.ravel()], axis=1).astype(test.dtype)
  decoded = np.asarray(jax.nn.sigmoid(model.decode(z)), np.float64)
  last = (_metrics_up_to(run) or [{}])[-1]
  return dict(latents=latents, labels=np.asarray(labels), decoded=decoded, test_elbo=last.get("test_elbo"),
              steps=run.step, source=f"configs/vae_digits.py:2, trained here ({run.step:,} steps)")


def vae_digits_latent(out: str, latent: dict) -> dict[str, Any]:
  """The 2-D posterior means of the test digits coloured by label, and the decodes of a grid."""
  for key in ("latents", "labels", "decoded"):
    if key not in latent:
      raise MissingInput(f"vae_digits_latent: no {key!r} (vae_latent_map of a run makes them)")
  latents, labels = np.asarray(latent["latents"]), np.asarray(latent["labels"])
  decoded = np.asarray(latent["decoded"])
  grid = int(round(math.sqrt(len(decoded))))
  side = int(round(math.sqrt(decoded.shape[1])))
  fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained")
  points = axes[0].scatter(latents[:, 0], latents[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5,
                           s=10, linewidths=0)
  fig.colorbar(points, ax=axes[0], ticks=range(10), label="digit")
  radius = latent.get("radius", LATENT_RADIUS)
  axes[0].add_patch(plt.Rectangle((-radius, -radius), 2 * radius, 2 * radius, fill=False,
                                  edgecolor="gray", linestyle="--", linewidth=0.8))
  axes[0].set(xlabel="z1 = mu_1(x)", ylabel="z2 = mu_2(x)", aspect="equal")
  axes[0].set_title(f"posterior means of the {len(latents)} test digits (box: the decoded grid)",
                    fontsize=10)
  axes[1].imshow(io.tile(decoded, grid, grid, side), cmap="gray_r", vmin=0, vmax=1,
                 extent=(-radius, radius, -radius, radius))
  axes[1].set(xlabel="z1", ylabel="z2")
  axes[1].set_title(f"Bernoulli means sigma(D(z)) on a {grid} x {grid} grid over [-{radius:g}, "
                    f"{radius:g}]^2", fontsize=10)
  elbo = latent.get("test_elbo")
  fig.suptitle("VAE with a 2-D latent space on 8x8 digits (17.4.2)"
               + (f", test ELBO {elbo:.2f} nats" if elbo is not None else ""))
  data = dict(test_elbo=elbo, num_test=len(latents), grid=grid, radius=radius,
              latent_mean=latents.mean(axis=0).tolist(), latent_sd=latents.std(axis=0).tolist(),
              inputs=dict(model=latent.get("source", "")))
  io.save(fig, "vae_digits_latent", out, data)
  return data


def restore_vae(workdir: str) -> dict[str, Any]:
  """The VAE of a run directory at its latest checkpoint (``restore_run``): dict(model, test_samples,
  step, config, metrics: its metrics.jsonl rows up to that step, workdir)."""
  from deepfound.experiment.restore import MissingRun, restore_run

  try:
    run = restore_run(workdir)
  except MissingRun as e:
    raise MissingInput(f"vae_mnist: {e}; train it with: python scripts/train.py "
                       f"--config=configs/vae_mnist.py --workdir={workdir}") from e
  if run.config.model.name != "vae":
    raise MissingInput(f"vae_mnist: {workdir} holds a {run.config.model.name} run, not a vae")
  return dict(model=_vae(run), test_samples=np.asarray(run.setup.problem.test_samples), step=run.step,
              config=run.config, metrics=_metrics_up_to(run), workdir=workdir)


def vae_images(run: dict, num_samples: int = 100, num_reconstructions: int = 50,
               seed: int = 0) -> dict[str, Any]:
  """Bernoulli means of prior samples and of the reconstructions of the first test images."""
  from deepfound.models import vae as vae_lib

  model, test = run["model"], run["test_samples"]
  samples = np.asarray(vae_lib.sample(model, jax.random.PRNGKey(seed), num_samples), np.float64)
  originals = np.asarray(test[:num_reconstructions], np.float64)
  reconstructions = np.asarray(vae_lib.reconstruct(model, test[:num_reconstructions]), np.float64)
  last = run["metrics"][-1] if run["metrics"] else {}
  return dict(samples=samples, originals=originals, reconstructions=reconstructions, step=run["step"],
              epoch=last.get("epoch"), test_elbo=last.get("test_elbo"), workdir=run["workdir"],
              hidden=list(run["config"].model.hidden), latent_size=run["config"].model.latent_size)


def vae_mnist(out: str, images: dict) -> dict[str, Any]:
  """10 x 10 prior samples, and test images over their reconstructions (alternate rows)."""
  for key in ("samples", "originals", "reconstructions"):
    if key not in images:
      raise MissingInput(f"vae_mnist: no {key!r} (vae_images of a restored run makes them)")
  samples, originals = np.asarray(images["samples"]), np.asarray(images["originals"])
  reconstructions = np.asarray(images["reconstructions"])
  side = int(round(math.sqrt(samples.shape[1])))
  cols = 10
  fig, axes = plt.subplots(1, 2, figsize=(12, 6.4), layout="constrained")
  rows = math.ceil(len(samples) / cols)
  axes[0].imshow(io.tile(samples, rows, cols, side), cmap="gray_r", vmin=0, vmax=1)
  axes[0].set_title(f"{len(samples)} samples: Bernoulli means sigma(D(z)), z ~ N(0, I)", fontsize=10)
  pairs = math.ceil(len(originals) / cols)
  interleaved = []
  for r in range(pairs):
    interleaved += [originals[r * cols:(r + 1) * cols], reconstructions[r * cols:(r + 1) * cols]]
  axes[1].imshow(io.tile(np.concatenate(interleaved), 2 * pairs, cols, side), cmap="gray_r", vmin=0, vmax=1)
  axes[1].set_title(f"{len(originals)} test images (odd rows) and sigma(D(mu(x))) (even rows)",
                    fontsize=10)
  for ax in axes:
    ax.set_axis_off()
  epoch, elbo = images.get("epoch"), images.get("test_elbo")
  architecture = "-".join(str(n) for n in [samples.shape[1], *images.get("hidden", []),
                                            images.get("latent_size", "?")])
  fig.suptitle(f"VAE {architecture} on MNIST (17.4.2) at step {images.get('step', '?'):,}"
               + (f" ({epoch:g} epochs)" if epoch is not None else "")
               + (f", test ELBO {elbo:.2f} nats" if elbo is not None else ""))
  data = dict(step=images.get("step"), epoch=epoch, test_elbo=elbo, num_samples=len(samples),
              num_reconstructions=len(originals),
              reconstruction_mse=float(np.mean((reconstructions - originals) ** 2)),
              inputs=dict(workdir=images.get("workdir"), checkpoint_step=images.get("step")))
  io.save(fig, "vae_mnist", out, data)
  return data


# ---- training curves -------------------------------------------------------------------------


def training_curves(out: str, bench: dict | None, vae_metrics: list[dict] | None,
                    vae_source: str = "metrics.jsonl") -> dict[str, Any]:
  """The MNIST VAE's train and test ELBO over epochs; the test NLL of the GMMs and flows over steps
  (ring, grid) with the data's entropy, the floor of any model's test NLL."""
  density = [n for n in DENSITY_CASES if n in (bench or {}).get("cases", {})
             and "test_nll" in bench["cases"][n].get("curves", {})]
  if not vae_metrics and not density:
    raise MissingInput("training_curves: no VAE metrics.jsonl and no gmm/flow case in bench.json")
  panels = (["vae"] if vae_metrics else []) + [d for d in ("ring", "grid")
                                               if any(n.endswith(d) for n in density)]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), layout="constrained",
                           squeeze=False)
  data: dict[str, Any] = dict(series=[], inputs={}, final={})
  for ax, panel in zip(axes[0], panels, strict=True):
    if panel == "vae":
      rows = [r for r in vae_metrics if r.get("epoch") is not None]
      epochs = np.array([r["epoch"] for r in rows], np.float64)
      train = -np.array([r["objective"] for r in rows], np.float64)
      test = np.array([r.get("test_elbo", np.nan) for r in rows], np.float64)
      ax.plot(epochs, train, label="train ELBO (10,000 images)")
      ax.plot(epochs, test, label="test ELBO (1,000 images)")
      later = np.concatenate([train[epochs >= 2], test[epochs >= 2]])
      later = later[np.isfinite(later)]
      if later.size:
        pad = 0.05 * (later.max() - later.min() + 1)
        ax.set_ylim(later.min() - pad, later.max() + pad)
      ax.set(xlabel="epochs", ylabel="ELBO (nats per image)")
      ax.set_title(f"MNIST VAE: test ELBO {test[-1]:.2f} at epoch {epochs[-1]:g}", fontsize=10)
      data["series"] += [io.series("vae train elbo", epochs, train), io.series("vae test elbo", epochs, test)]
      data["final"]["vae"] = dict(epoch=float(epochs[-1]), train_elbo=float(train[-1]),
                                  test_elbo=float(test[-1]))
      data["inputs"]["vae"] = vae_source
    else:
      entropy = None
      for name in (n for n in density if n.endswith(panel)):
        case = bench["cases"][name]
        family = name.split("_")[0]
        data["series"].append(dict(band(ax, case["curves"]["step"], case["curves"]["test_nll"],
                                         COLORS[family],
                                         f"{LABELS.get(family, family)} ({seeds_label(case)})"),
                                   case=name))
        data["final"][name] = dict(test_nll=_number(case, "test_nll"), kl_gap=_number(case, "kl_gap"))
        data["inputs"][name] = f"bench.json cases.{name}.curves.test_nll"
        entropy = _number(case, "entropy") if "entropy" in case.get("mean", {}) else entropy
      if entropy is not None:
        ax.axhline(entropy, color="gray", linestyle=":", linewidth=1, label="entropy of the data")
      _limit_from_below(ax, [s for s in data["series"] if s.get("case", "").endswith(panel)], entropy)
      ax.set_xscale("log")
      ax.set(xlabel="steps (log scale)", ylabel="test NLL (nats)")
      gaps = ", ".join(f"{n.split('_')[0]} {format_number(data['final'][n]['kl_gap'], '.3g')}"
                       for n in density if n.endswith(panel))
      ax.set_title(f"{panel}: test NLL, mean over seeds, band min-max\nlast KL gap (NLL - entropy): {gaps}",
                   fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("Training curves of section 17.4's likelihood models")
  io.save(fig, "training_curves", out, data)
  return data


# ---- all of them -----------------------------------------------------------------------------


def make_all(out: str, bench_path: str, vae_workdir: str, configs: dict[str, ConfigFactory] | None,
             ae_steps: int | None = AE_STEPS, vae_digits_steps: int | None = None,
             runs_dir: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Every picture whose input is there; returns (and writes as ``<out>/figures.json``) what was
  drawn from what, with its key numbers, and what was skipped and why.

  ``bench_path`` must exist (MissingInput otherwise). ``configs``: ``autoencoder_digits`` and
  ``vae_digits`` config factories for the small trainings (None: skip them); ``ae_steps`` and
  ``vae_digits_steps`` override their num_steps (None: the config's). The small trainings are runs
  of the runner in ``runs_dir`` (``ae_linear``, ``ae_mlp``, ``vae_digits_2``; a complete run there
  is reused), by default a temporary folder deleted at the end."""
  record = DrawingLog(out, log)
  bench = load_bench(bench_path)
  for name, draw in (("density_2d", density_2d), ("pushforward_2d", pushforward_2d),
                     ("pushforward_training", pushforward_training), ("modes_curves", modes_curves),
                     ("flow_rules", flow_rules), ("flow_digits", flow_digits)):
    record.attempt(name, lambda draw=draw: draw(out, bench))

  vae_run: dict[str, Any] = {}
  with contextlib.ExitStack() as stack:
    runs = runs_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="generative_figures_"))

    def autoencoders():
      reconstructions = None
      if configs is not None:
        factory = configs["autoencoder_digits"]
        reconstructions = autoencoder_reconstructions(
            _run(_with_steps(factory("linear"), ae_steps), os.path.join(runs, "ae_linear")),
            _run(_with_steps(factory("mlp"), ae_steps), os.path.join(runs, "ae_mlp")))
      return autoencoder_digits(out, reconstructions, bench)

    def mnist():
      vae_run.update(restore_vae(vae_workdir))
      return vae_mnist(out, vae_images(vae_run))

    def latent():
      if configs is None:
        raise MissingInput("vae_digits_latent: the small trainings are off (--notrain)")
      config = _with_steps(configs["vae_digits"]("2"), vae_digits_steps)
      return vae_digits_latent(out, vae_latent_map(_run(config, os.path.join(runs, "vae_digits_2"))))

    record.attempt("autoencoder_digits", autoencoders)
    record.attempt("vae_mnist", mnist)
    record.attempt("vae_digits_latent", latent)

  def curves():
    from deepfound.experiment.outputs import RunFiles

    metrics = vae_run.get("metrics")
    if metrics is None:  # the restore failed or was skipped: the metrics file alone still draws
      metrics = RunFiles(vae_workdir).metric_lines() or None
    return training_curves(out, bench, metrics, RunFiles(vae_workdir).metrics)

  record.attempt("training_curves", curves)
  summary = record.summary(bench=bench_path, vae_workdir=vae_workdir)
  record.write(summary)
  return summary
