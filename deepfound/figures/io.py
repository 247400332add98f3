"""Writing a figure: the PNG beside a JSON file holding every plotted series."""

from __future__ import annotations

import logging
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines this runs on
# The one-time "building the font cache" notice is not something a user must act on.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepfound.strict_json import dumps  # noqa: E402


def series(label: str, x, runs, **extra) -> dict[str, Any]:
  """One plotted series: x values and one list of y values per run."""
  runs = np.atleast_2d(np.asarray(runs, np.float64))
  return dict(label=label, x=np.asarray(x, np.float64).tolist(), runs=runs.tolist(), **extra)


def save(fig: plt.Figure, name: str, out: str, data: dict[str, Any], with_json: bool = True) -> str:
  """Writes ``<out>/<name>.png`` and (``with_json``) ``<out>/<name>.json``; returns the PNG's path."""
  os.makedirs(out, exist_ok=True)
  png = os.path.join(out, f"{name}.png")
  fig.savefig(png, dpi=110, bbox_inches="tight")
  plt.close(fig)
  if with_json:
    with open(os.path.join(out, f"{name}.json"), "w") as f:
      f.write(dumps(dict(figure=name, **data)))
  return png


def tile(images: np.ndarray, rows: int, cols: int, side: int, pad: int = 1) -> np.ndarray:
  """``rows * cols`` flattened square images (side x side) as one array, ``pad`` pixels apart (NaN:
  blank in imshow)."""
  images = np.asarray(images, np.float64).reshape(-1, side, side)
  canvas = np.full((rows * (side + pad) - pad, cols * (side + pad) - pad), np.nan)
  for k, image in enumerate(images[:rows * cols]):
    r, c = divmod(k, cols)
    canvas[r * (side + pad): r * (side + pad) + side, c * (side + pad): c * (side + pad) + side] = image
  return canvas
