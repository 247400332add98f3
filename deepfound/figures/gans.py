"""Pictures of section 17.4.3 (GANs), from three kinds of input.

* ``bench.json`` of ``scripts/bench_gan.py``: per case its config, the mode-metric curves of
  every seed and seed 0's generated points at every log point. ``samples_<data>`` (one picture
  per data set present, ring and grid): rows = the cases of that data set, columns = four log
  points (first, two middle, last), seed 0's samples over the true modes; ``modes_curves``: modes
  captured and high-quality fraction over training, mean over seeds with a band of +- 1 sd.
* ``sweep.json`` of ``scripts/bench_gan.py --sweep``: the last log point's metrics over a grid of
  both players' learning rates x seeds. ``rate_sweep``: heat maps of the mean modes captured and
  the mean high-quality fraction over (generator rate, discriminator rate).
* The digits GAN (``configs/gan_digits.py``), trained here in one program with its parameters
  recorded at every log point: ``digits_samples`` (10 x 10 digits from fixed latents at five of
  them) and ``digits_curves`` (classes covered, class KL, Frechet distance of our classifier's
  features over training). With an MNIST run directory (``configs/gan_mnist.py``),
  ``mnist_samples``: 100 digits of its latest checkpoint and its metric curves; with the MNIST
  config, ``mnist_over_training``: the MNIST GAN trained here like the digits one, its grids at
  five log points.

The drawing functions take plain arrays and dicts and raise ``MissingInput`` (what is missing and
how to make it) when they have nothing to draw; ``make_all`` draws what it can and reports what it
skipped and why. Each picture is ``<out>/<name>.png``; with ``with_json`` (the convention of
``deepfound.figures.io``) a JSON file beside it holds its key numbers and curves.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from deepfound.data import DataError
from deepfound.data.mixtures import MIXTURES
from deepfound.figures import io
from deepfound.figures.common import (
    DrawingLog,
    MissingInput,
    coverage_bands,
    data_name,
    format_number,
    load_input,
    mark_modes,
    seeds_label,
)

BENCH_COMMAND = "python scripts/bench_gan.py --out={folder} --cases=all"
SWEEP_COMMAND = "python scripts/bench_gan.py --out={folder} --sweep=ring_js"
DATA_SETS = ("ring", "grid")
SAMPLE_COLUMNS = 4  # log points shown per case in samples_<data>: first, two middle, last
VIEW = dict(ring=1.45, grid=5.6)  # half-width of the square shown around the origin
DIGIT_POINTS = 5  # sample grids of the digits run
CURVE_POINTS_PER_GRID = 4  # log points of its curves per sample grid
DIGIT_GRID = 10  # 10 x 10 generated digits a panel
CLASS_CURVES = (("classes_covered", "classes covered (of 10)"),
                ("class_kl", "KL(class histogram || uniform) (nats)"),
                ("frechet_distance", "Frechet distance (classifier features)"))
BAND = dict(spread="sd", marked_up_to=12, alpha=0.18, markersize=3.5, linewidth=1.4)  # common.band
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
          "tab:gray", "tab:olive", "tab:cyan")


# ---- inputs ----------------------------------------------------------------------------------


def load_bench(path: str) -> dict[str, Any]:
  """bench.json of ``scripts/bench_gan.py``; MissingInput names the command that makes it."""
  return load_input(path, "cases", "bench.json", BENCH_COMMAND)


def load_sweep(path: str) -> dict[str, Any]:
  """sweep.json of ``scripts/bench_gan.py --sweep``; MissingInput names the command."""
  return load_input(path, "last", "sweep.json", SWEEP_COMMAND)


def _floats(values) -> np.ndarray:
  """A nested list with nulls (bench.json writes NaN as null) as float64 with NaN."""
  return np.array(values, dtype=np.float64)


def _cases_of(bench: dict, mixture_name: str) -> list[str]:
  return [n for n, c in bench.get("cases", {}).items() if data_name(c) == mixture_name]


def _describe(case: dict) -> str:
  """loss, scheme, pack and discriminator steps of a case's config, in words."""
  config = case.get("config", {})
  problem, optim = config.get("problem", {}), config.get("optim", {})
  pack, d_steps = problem.get("pack", 1), optim.get("discriminator_steps", 1)
  parts = [problem.get("loss", "?"), optim.get("scheme", "?")]
  if pack and pack > 1:
    parts.append(f"PacGAN{pack}")
  if d_steps and d_steps > 1:
    parts.append(f"{d_steps} D steps")
  return ", ".join(parts)


def _columns(num_points: int, count: int = SAMPLE_COLUMNS) -> list[int]:
  """``count`` log points spread from the first to the last (fewer when there are fewer)."""
  return sorted({int(round(k * (num_points - 1) / max(count - 1, 1))) for k in range(count)})


# ---- 2-D pictures from bench.json ------------------------------------------------------------


def samples_over_training(out: str, bench: dict, mixture_name: str, with_json: bool = False
                          ) -> dict[str, Any]:
  """Rows: the cases on ``mixture_name``; columns: four log points; seed 0's generated points (dots)
  over the modes (crosses and 3-sd circles), with seed 0's modes captured and HQ fraction there."""
  mixture = MIXTURES[mixture_name]
  names = [n for n in _cases_of(bench, mixture_name) if bench["cases"][n].get("samples")]
  if not names:
    raise MissingInput(f"samples_{mixture_name}: bench.json has no {mixture_name} case with samples")
  num_cols = max(len(_columns(len(bench["cases"][n]["samples"]))) for n in names)
  half = VIEW.get(mixture_name, float(np.abs(mixture.means).max()) * 1.4)
  fig, axes = plt.subplots(len(names), num_cols, figsize=(2.7 * num_cols + 1.0, 2.75 * len(names)),
                           layout="constrained", squeeze=False)
  numbers = {}
  for row, name in enumerate(names):
    case = bench["cases"][name]
    samples = case["samples"]
    curves = case.get("curves", {})
    steps = curves.get("step", [])
    modes, hq = (_floats(curves.get(k, [[]]))[0] if curves.get(k) else None
                 for k in ("modes_captured", "high_quality_fraction"))
    columns = _columns(len(samples))
    numbers[name] = []
    for col in range(num_cols):
      ax = axes[row, col]
      if col >= len(columns):
        ax.set_axis_off()
        continue
      k = columns[col]
      points = _floats(samples[k])
      finite = points[np.all(np.isfinite(points), axis=1)]
      outside = int(np.sum(np.any(np.abs(finite) > half, axis=1))) + len(points) - len(finite)
      ax.scatter(finite[:, 0], finite[:, 1], s=1.5, c="navy", alpha=0.5, linewidths=0, zorder=3)
      mark_modes(ax, mixture, marker="x", marker_size=18, circle_width=0.7)
      ax.set(xlim=(-half, half), ylim=(-half, half), aspect="equal")
      ax.tick_params(labelsize=7)
      step = steps[k] if k < len(steps) else None
      m = float(modes[k]) if modes is not None and k < len(modes) else float("nan")
      h = float(hq[k]) if hq is not None and k < len(hq) else float("nan")
      title = (f"step {step:,}" if step is not None else f"log point {k + 1}") + \
          f": {format_number(m, '.0f')}/{mixture.num_modes} modes, HQ {format_number(h, '.2f')}"
      if outside:
        title += f"\n{outside} of {len(points)} points outside the view"
      ax.set_title(title, fontsize=8)
      if col == 0:
        ax.set_ylabel(f"{name}\n{_describe(case)}\n({seeds_label(case)})", fontsize=8)
      numbers[name].append(dict(step=step, modes_captured=m, high_quality_fraction=h, outside=outside))
  steps_run = max(bench["cases"][n].get("num_steps", 0) for n in names)
  fig.suptitle(f"GANs on {mixture_name} ({mixture.num_modes} modes, sd {mixture.sd:g}): seed 0's "
               f"{len(bench['cases'][names[0]]['samples'][0]):,} generated points (blue) over "
               f"training ({steps_run:,} steps);\ntrue modes: red crosses with 3-sd circles; titles: "
               "seed 0's modes captured and high-quality fraction at that step", fontsize=10)
  data = dict(data=mixture_name, numbers=numbers, inputs={n: f"bench.json cases.{n}.samples" for n in names})
  io.save(fig, f"samples_{mixture_name}", out, data, with_json)
  return data


def modes_curves(out: str, bench: dict, with_json: bool = False) -> dict[str, Any]:
  """Per data set (columns): modes captured (top) and high-quality fraction (bottom) over training,
  one line per case, mean over seeds with a +- 1 sd band; the mode count dashed."""
  def with_curves(mixture_name: str) -> list[str]:
    return [n for n in _cases_of(bench, mixture_name)
            if "modes_captured" in bench["cases"][n].get("curves", {})]

  present = [d for d in DATA_SETS if with_curves(d)]
  if not present:
    raise MissingInput("modes_curves: bench.json has no ring or grid case with curves")
  fig, axes = plt.subplots(2, len(present), figsize=(max(6.2 * len(present), 8.0), 7.5), layout="constrained",
                           squeeze=False)
  series, final = [], {}
  for col, mixture_name in enumerate(present):
    mixture = MIXTURES[mixture_name]
    names = with_curves(mixture_name)
    for k, name in enumerate(names):
      case = bench["cases"][name]
      curves, color = case["curves"], COLORS[k % len(COLORS)]
      series += coverage_bands(axes[:, col], name, curves, color,
                               f"{name} ({_describe(case)}; {seeds_label(case)})", with_metric=True,
                               **BAND)
      final[name] = dict(mean=case.get("mean", {}), sd=case.get("sd", {}), diverged=case.get("diverged"))
    axes[0, col].axhline(mixture.num_modes, color="black", linestyle="--", linewidth=1,
                         label=f"all {mixture.num_modes} modes")
    axes[0, col].set(ylim=(-0.3, mixture.num_modes + 0.8), ylabel="modes captured",
                     title=f"{mixture_name}: modes captured (of {mixture.num_modes}), mean +- 1 sd over "
                           "seeds")
    axes[1, col].set(ylim=(-0.02, 1.02), ylabel="high-quality fraction", xlabel="generator steps",
                     title=f"{mixture_name}: fraction of samples within 3 sd of a mode")
    for ax in axes[:, col]:
      ax.grid(alpha=0.3)
      ax.title.set_fontsize(10)
    axes[0, col].legend(fontsize=7, loc="lower right")
  fig.suptitle("Mode coverage of the GANs over training (PacGAN's metrics on 2,500 samples from fixed "
               "latents):\na mode is captured when a sample lies within 3 sd of it; mean over the "
               "seeds, a NaN (diverged) left out", fontsize=11)
  data = dict(final=final, series=series, inputs={n: f"bench.json cases.{n}.curves" for n in final})
  io.save(fig, "modes_curves", out, data, with_json)
  return data


# ---- learning-rate sweep ---------------------------------------------------------------------


def _rate(value: float) -> str:
  """1e-4, 3e-5, 0.001 -> compact log-scale labels."""
  exponent = math.floor(math.log10(value))
  mantissa = value / 10 ** exponent
  if abs(mantissa - round(mantissa)) < 1e-6:
    mantissa = round(mantissa)
    return f"1e{exponent}" if mantissa == 1 else f"{mantissa}e{exponent}"
  return f"{value:.2g}"


def rate_sweep(out: str, sweep: dict, with_json: bool = False) -> dict[str, Any]:
  """Heat maps of the last log point's mean modes captured and mean high-quality fraction over
  (generator rate: rows, discriminator rate: columns), the mean (and sd) written in each cell."""
  last = sweep.get("last", {})
  if "modes_captured" not in last:
    raise MissingInput("rate_sweep: sweep.json has no last.modes_captured")
  g_rates, d_rates = list(sweep["generator_rates"]), list(sweep["discriminator_rates"])
  case = sweep.get("case", "?")
  mixture = MIXTURES.get(case.split("_")[0])
  panels = [("modes_captured", "modes captured", 0, mixture.num_modes if mixture else None, "viridis")]
  if "high_quality_fraction" in last:
    panels.append(("high_quality_fraction", "high-quality fraction", 0, 1, "magma"))
  fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.8), layout="constrained",
                           squeeze=False)
  numbers = {}
  for ax, (key, label, low, high, cmap) in zip(axes[0], panels, strict=True):
    values = _floats(last[key])  # (G, D, seeds)
    if values.ndim == 2:
      values = values[..., None]
    with warnings.catch_warnings():  # a cell where every seed diverged: NaN, written "diverged"
      warnings.simplefilter("ignore", RuntimeWarning)
      mean, sd = np.nanmean(values, axis=-1), np.nanstd(values, axis=-1)
    finite = np.sum(np.isfinite(values), axis=-1)
    image = ax.imshow(mean, origin="lower", cmap=cmap, vmin=low,
                      vmax=high if high is not None else np.nanmax(mean), aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{label}, mean over seeds", shrink=0.9)
    top = high if high is not None else np.nanmax(mean)
    for i in range(mean.shape[0]):
      for j in range(mean.shape[1]):
        if not np.isfinite(mean[i, j]):
          text, color = "diverged", "red"
        else:
          spec = ".1f" if key == "modes_captured" else ".2f"
          text = format(mean[i, j], spec) + (f"\n\u00b1{sd[i, j]:{spec}}" if values.shape[-1] > 1 else "")
          if finite[i, j] < values.shape[-1]:
            text += f"\n({values.shape[-1] - finite[i, j]} NaN)"
          color = "black" if mean[i, j] > 0.6 * (top - low) + low else "white"
        ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(range(len(d_rates)), [_rate(r) for r in d_rates])
    ax.set_yticks(range(len(g_rates)), [_rate(r) for r in g_rates])
    ax.set(xlabel="discriminator learning rate (log scale)", ylabel="generator learning rate (log scale)")
    ax.set_title(f"{label}" + (f" (of {mixture.num_modes})" if key == "modes_captured" and mixture else ""),
                 fontsize=10)
    numbers[key] = dict(mean=mean.tolist(), sd=sd.tolist())
  seeds = sweep.get("num_seeds", "?")
  fig.suptitle(f"Learning-rate sweep of {case} (adam, both players): last log point after "
               f"{sweep.get('num_steps', 0):,} steps, mean over {seeds} seed{'' if seeds == 1 else 's'}"
               + (f", {sweep['diverged']} run(s) diverged" if sweep.get("diverged") else ""), fontsize=10)
  data = dict(case=case, generator_rates=g_rates, discriminator_rates=d_rates, num_seeds=seeds,
              num_steps=sweep.get("num_steps"), numbers=numbers, inputs=dict(sweep="sweep.json last"))
  io.save(fig, "rate_sweep", out, data, with_json)
  return data


# ---- digits and MNIST --------------------------------------------------------------------------


def train_digits(config: ml_collections.ConfigDict, num_steps: int | None = None,
                 num_points: int = DIGIT_POINTS, per_point: int = CURVE_POINTS_PER_GRID,
                 num_images: int = DIGIT_GRID ** 2) -> dict[str, Any]:
  """Trains the GAN of ``config`` in one program (``optim.game.run``), logging (metrics and
  parameters) ``num_points * per_point`` times; returns dict(steps and extras {metric: array} at
  every log point, grid_index: the ``num_points`` log points of the grids (every ``per_point``-th,
  the last included), images (num_points, num_images, d) generated there from the problem's first
  fixed latents, seconds, source)."""
  from deepfound.experiment import build, precision_scope
  from deepfound.optim import game

  logs = num_points * per_point
  steps = int(num_steps or config.num_steps)
  log_every = max(1, steps // logs)
  steps = log_every * logs
  grid_index = [per_point * (k + 1) - 1 for k in range(num_points)]
  tic = time.perf_counter()
  with precision_scope(config.precision):
    setup = build.build(config)
    _, points = game.run(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(config.seed),
                         num_steps=steps, log_every=log_every, record_params=True)
    points = jax.device_get(points)
    latents = setup.problem.test_latents[:num_images]
    images = np.stack([np.asarray(setup.problem.generate(
        jax.tree.map(lambda a, k=k: a[k], points.params[0]), latents), np.float64)
        for k in grid_index])
  return dict(steps=np.asarray(points.step).tolist(), grid_index=grid_index, images=images,
              extras={k: np.asarray(v, np.float64) for k, v in (points.extras or {}).items()},
              objective=np.asarray(points.objective, np.float64), seconds=time.perf_counter() - tic,
              data=config.data.name,
              source=f"configs/gan_{config.data.name}.py, trained here ({steps:,} steps, seed {config.seed})")


def _metric_title(extras: dict, k: int) -> str:
  parts = []
  if "classes_covered" in extras:
    parts.append(f"{extras['classes_covered'][k]:.0f}/10 classes")
  if "class_kl" in extras:
    parts.append(f"KL {extras['class_kl'][k]:.3f}")
  if "frechet_distance" in extras:
    parts.append(f"FD {extras['frechet_distance'][k]:.1f}")
  return ", ".join(parts)


def digits_samples(out: str, run: dict, with_json: bool = False,
                   name: str = "digits_samples") -> dict[str, Any]:
  """10 x 10 generated digits (the same fixed latents) at each recorded log point, titled with the
  classifier's metrics there (``name``: mnist_over_training for an MNIST run)."""
  if "images" not in run:
    raise MissingInput(f"{name}: no images (train_digits makes them)")
  images, steps, extras = np.asarray(run["images"]), run["steps"], run.get("extras", {})
  grid_index = run.get("grid_index", list(range(len(images))))  # the log point of each grid
  side = int(round(math.sqrt(images.shape[-1])))
  cols = int(math.ceil(math.sqrt(images.shape[1])))
  rows = int(math.ceil(images.shape[1] / cols))
  fig, axes = plt.subplots(1, len(images), figsize=(3.1 * len(images), 3.6), layout="constrained",
                           squeeze=False)
  for k, (ax, index) in enumerate(zip(axes[0], grid_index, strict=True)):
    ax.imshow(io.tile(images[k], rows, cols, side), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"step {steps[index]:,}\n{_metric_title(extras, index)}", fontsize=9)
  accuracy = extras.get("classifier_test_accuracy")
  what = "MNIST" if run.get("data") == "mnist" else "8x8 digits"
  fig.suptitle(f"GAN on {what} ({run.get('source', '')}): {images.shape[1]} digits from the same fixed "
               "latents over training;\ntitles: classes covered, KL of the class histogram from uniform "
               "and Frechet distance, from our classifier on 10,000 generated digits"
               + (f" (its test accuracy {accuracy[-1]:.3f})" if accuracy is not None else ""), fontsize=10)
  data = dict(steps=[steps[i] for i in grid_index],
              metrics={k: np.asarray(v)[grid_index].tolist() for k, v in extras.items()},
              inputs=dict(model=run.get("source", "")))
  io.save(fig, name, out, data, with_json)
  return data


def _class_curves(axes, steps, extras: dict, label: str, color: str, series: list) -> None:
  for ax, (key, ylabel) in zip(axes, CLASS_CURVES, strict=True):
    if key not in extras:
      continue
    values = np.asarray(extras[key], np.float64)
    ax.plot(steps, values, "o-" if len(steps) <= 30 else "-", color=color, label=label, markersize=3.5)
    ax.set(xlabel="generator steps", ylabel=ylabel)
    if key == "classes_covered":
      ax.axhline(10, color="black", linestyle="--", linewidth=1, label="all 10 classes")
      ax.set_ylim(0, 10.8)
    else:
      ax.set_ylim(0, max(1e-3, float(np.nanmax(values, initial=0.0))) * 1.08)
    last = format_number(float(values[-1]), ".3g")
    ax.set_title(f"{ylabel.split(' (')[0]}: {last} at step {int(steps[-1]):,}", fontsize=10)
    ax.grid(alpha=0.3)
    series.append(io.series(f"{label} {key}", steps, values))


def digits_curves(out: str, run: dict, with_json: bool = False) -> dict[str, Any]:
  """Classes covered, class KL and Frechet distance of the digits run over its log points."""
  extras = run.get("extras", {})
  if not any(key in extras for key, _ in CLASS_CURVES):
    raise MissingInput("digits_curves: the run logged no classifier metrics")
  fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
  series: list = []
  _class_curves(axes, run["steps"], extras, "digits", "tab:blue", series)
  axes[0].legend(fontsize=8, loc="lower right")
  fig.suptitle(f"GAN on 8x8 digits ({run.get('source', '')}): our classifier's verdict on 10,000 "
               "generated digits at each log point (lower KL and Frechet distance are better)", fontsize=10)
  data = dict(series=series, final={k: float(np.asarray(v)[-1]) for k, v in extras.items()},
              inputs=dict(model=run.get("source", "")))
  io.save(fig, "digits_curves", out, data, with_json)
  return data


def restore_gan(workdir: str, num_images: int = DIGIT_GRID ** 2) -> dict[str, Any]:
  """The generator of a GAN run directory at its latest checkpoint (``restore_run``) and
  ``num_images`` images from the problem's fixed latents; with its metrics.jsonl rows up to that
  step."""
  from deepfound.experiment import precision_scope
  from deepfound.experiment.restore import MissingRun, restore_run

  try:
    run = restore_run(workdir)
  except MissingRun as e:
    raise MissingInput(f"mnist_samples: {e}; train it with: python scripts/train.py "
                       f"--config=configs/gan_mnist.py --workdir={workdir}") from e
  if run.config.model.name != "gan":
    raise MissingInput(f"mnist_samples: {workdir} holds a {run.config.model.name} run, not a gan")
  problem = run.setup.problem
  with precision_scope(run.config.precision):
    images = np.asarray(problem.generate(run.state.params[0], problem.test_latents[:num_images]), np.float64)
  rows = [r for r in run.files.metric_lines() if r["step"] <= run.step]
  return dict(images=images, step=run.step, rows=rows, data=run.config.data.name, workdir=workdir)


def mnist_samples(out: str, run: dict, with_json: bool = False) -> dict[str, Any]:
  """100 generated MNIST digits of the latest checkpoint and the run's classifier curves."""
  if "images" not in run:
    raise MissingInput("mnist_samples: no images (restore_gan makes them)")
  images, rows = np.asarray(run["images"]), run.get("rows", [])
  side = int(round(math.sqrt(images.shape[-1])))
  cols = int(math.ceil(math.sqrt(len(images))))
  fig = plt.figure(figsize=(15, 5.2), layout="constrained")
  left, right = fig.subfigures(1, 2, width_ratios=(1, 2.3))
  ax = left.subplots()
  ax.imshow(io.tile(images, int(math.ceil(len(images) / cols)), cols, side), cmap="gray_r", vmin=0, vmax=1)
  ax.set_axis_off()
  last = rows[-1] if rows else {}
  ax.set_title(f"step {run.get('step', 0):,}: {len(images)} digits from fixed latents\n"
               + _metric_title({k: [v] for k, v in last.items() if v is not None}, 0), fontsize=9)
  series: list = []
  curve_rows = [r for r in rows if r.get("classes_covered") is not None]
  axes = right.subplots(1, 3)
  if curve_rows:
    steps = np.array([r["step"] for r in curve_rows], np.float64)
    extras = {k: np.array([r.get(k, np.nan) if r.get(k) is not None else np.nan for r in curve_rows])
              for k, _ in CLASS_CURVES}
    _class_curves(axes, steps, extras, "mnist", "tab:blue", series)
  else:
    for a in axes:
      a.text(0.5, 0.5, "no metrics.jsonl rows", ha="center", va="center", color="gray",
             transform=a.transAxes)
  fig.suptitle(f"GAN on MNIST ({run.get('workdir', '')}, latest checkpoint); curves: our classifier on "
               "10,000 generated digits at each log point", fontsize=10)
  data = dict(step=run.get("step"), last={k: last.get(k) for k, _ in CLASS_CURVES}, series=series,
              inputs=dict(workdir=run.get("workdir")))
  io.save(fig, "mnist_samples", out, data, with_json)
  return data


# ---- all of them -----------------------------------------------------------------------------


def make_all(out: str, bench_path: str, sweep_path: str,
             digits_config: ml_collections.ConfigDict | None, digits_steps: int | None = None,
             digits_points: int = DIGIT_POINTS, mnist_workdir: str | None = None,
             mnist_config: ml_collections.ConfigDict | None = None,
             mnist_steps: int | None = None, with_json: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  """Every picture whose input is there; returns what was drawn (with its key numbers), skipped
  (and why) and the seconds each took. ``digits_config`` None skips the digits training
  (``digits_steps`` and ``digits_points``: its length and sample grids; None steps: the config's);
  with ``with_json`` each PNG gets its JSON and ``<out>/figures.json`` the summary."""
  record = DrawingLog(out, log)
  try:
    bench = load_bench(bench_path)
  except MissingInput as e:
    bench = None
    record.skip(["samples_ring", "samples_grid", "modes_curves"], str(e))
  if bench is not None:
    for mixture_name in DATA_SETS:
      if _cases_of(bench, mixture_name):
        record.attempt(f"samples_{mixture_name}",
                       lambda d=mixture_name: samples_over_training(out, bench, d, with_json))
    record.attempt("modes_curves", lambda: modes_curves(out, bench, with_json))
  record.attempt("rate_sweep", lambda: rate_sweep(out, load_sweep(sweep_path), with_json))

  if digits_config is None:
    record.skip(["digits_samples", "digits_curves"], "the digits training is off")
  else:
    run: dict[str, Any] = {}

    def digits():
      run.update(train_digits(digits_config, digits_steps, digits_points))
      log(f"trained the digits GAN: {run['steps'][-1]:,} steps in {run['seconds']:.0f} s")
      return digits_samples(out, run, with_json)

    record.attempt("digits_samples", digits)
    if run:
      record.attempt("digits_curves", lambda: digits_curves(out, run, with_json))
  if mnist_workdir:
    record.attempt("mnist_samples", lambda: mnist_samples(out, restore_gan(mnist_workdir), with_json))
  else:
    record.skip(["mnist_samples"], "no --mnist_workdir")
  if mnist_config is None:
    record.skip(["mnist_over_training"], "the MNIST training is off")
  else:
    def mnist():
      try:
        run = train_digits(mnist_config, mnist_steps, digits_points)
      except DataError as e:
        raise MissingInput(f"mnist_over_training: {e}") from e
      log(f"trained the MNIST GAN: {run['steps'][-1]:,} steps in {run['seconds']:.0f} s")
      return digits_samples(out, run, with_json, name="mnist_over_training")

    record.attempt("mnist_over_training", mnist)
  summary = record.summary(bench=bench_path, sweep=sweep_path, mnist_workdir=mnist_workdir)
  if with_json:
    record.write(summary)
  return summary
