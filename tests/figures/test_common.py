"""The helpers the pictures of 17.4 share: numbers in titles, seeds, the two kinds of band, the
record of a make_all."""

import json
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest

from deepfound.figures import common


def test_numbers_and_seeds():
  assert [common.format_number(v, ".3g") for v in (None, math.nan, math.inf, 1.23456)] == [
      "n/a", "n/a", "n/a", "1.23"]
  case = dict(num_seeds=3, per_seed=dict(objective=[0.1, None, 0.2]))  # a diverged seed: null
  assert common.diverged_seeds(case) == 1 and common.seeds_label(case) == "3 seeds, 1 diverged"
  assert common.seeds_label(dict(case, diverged=0)) == "3 seeds"
  assert common.data_name(dict(config=dict(data=dict(name="ring")))) == "ring"


@pytest.mark.parametrize("spread, low", [("minmax", 0.0), ("sd", 2.0 - math.sqrt(8 / 3))])
def test_band_spreads(spread, low):
  runs = [[0.0, 3.0], [4.0, None], [2.0, 3.0]]  # None: a diverged seed, left out of the mean
  fig, ax = plt.subplots()
  series = common.band(ax, [10, 20], runs, "k", "case", spread=spread)
  np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.0, 3.0])
  np.testing.assert_allclose(ax.collections[0].get_paths()[0].vertices[:, 1].min(), low)
  assert series["x"] == [10.0, 20.0] and math.isnan(series["runs"][1][1])
  with pytest.raises(ValueError, match="minmax, sd"):
    common.band(ax, [10, 20], runs, "k", "case", spread="iqr")
  plt.close(fig)


def test_drawing_log(tmp_path):
  lines = []
  record = common.DrawingLog(str(tmp_path), lines.append)

  def missing():
    raise common.MissingInput("b: no input")

  assert record.attempt("a", lambda: dict(value=1.5, series=[1, 2])) == dict(value=1.5, series=[1, 2])
  assert record.attempt("b", missing) is None
  assert record.drawn == dict(a=dict(png=os.path.join(str(tmp_path), "a.png"), value=1.5))
  assert record.skipped == dict(b="b: no input") and lines[-1] == "skipped b: no input"
  with open(record.write(record.summary(bench="x.json"))) as f:
    summary = json.load(f)
  assert list(summary) == ["bench", "out", "drawn", "skipped", "seconds", "total_seconds"]
  assert list(summary["seconds"]) == ["a"]
