"""The benchmarks' shared timing and provenance helpers (deepfound.benchmarks.timing)."""

import json
import math
import os
import time

import jax
import numpy as np
import pytest

from deepfound.benchmarks import timing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_spread_is_the_median_and_range_of_the_repeats():
  assert timing.spread([3, 1, 2, 10]) == dict(median=2.5, min=1.0, max=10.0,
                                               repeats=[3.0, 1.0, 2.0, 10.0])
  rates = timing.spread([4.0, 2.0, 3.0], "steps_per_second")
  assert list(rates) == ["steps_per_second", "min", "max", "repeats"]
  assert rates["steps_per_second"] == 3.0


def test_ratio_per_round_leaves_out_rounds_that_are_not_finite():
  assert timing.ratio_per_round([2.0, 6.0, math.nan], [1.0, 2.0, 1.0]) == dict(
      median=2.5, min=2.0, max=3.0)
  assert all(math.isnan(v) for v in timing.ratio_per_round([math.nan], [1.0]).values())


def test_interleaved_runs_the_blocks_round_robin():
  order = []
  seconds = timing.interleaved({"a": lambda: order.append("a") or 1.0,
                                "b": lambda: order.append("b") or 2.0}, repeats=3, pause=0.0)
  assert order == ["a", "b"] * 3 and seconds == {"a": [1.0] * 3, "b": [2.0] * 3}


@pytest.mark.parametrize("count_construction", [True, False])
def test_warm_up_times_the_warm_up_and_maybe_the_construction(count_construction):
  lines, warmed = [], []

  def make():
    time.sleep(0.05)
    return "loop"

  loops, seconds = timing.warm_up({"x": make}, lambda name, loop: warmed.append((name, loop)),
                                  lines.append, lambda name, s: f"{name} {s:.3f}",
                                  count_construction=count_construction)
  assert loops == {"x": "loop"} and warmed == [("x", "loop")]
  assert (seconds["x"] >= 0.05) == count_construction
  assert lines == [f"x {seconds['x']:.3f}"]


def test_machine_record_picks_its_facts_in_the_order_asked():
  assert list(timing.machine()) == list(timing.MACHINE_FACTS)
  picked = timing.machine("cpu_count", "backend", "devices")
  assert picked == dict(cpu_count=os.cpu_count(), backend=jax.default_backend(),
                        devices=[str(d) for d in jax.devices()])
  assert timing.machine("cpu_cores")["cpu_cores"] == len(os.sched_getaffinity(0))
  with pytest.raises(ValueError, match="unknown machine facts.*nope"):
    timing.machine("backend", "nope")
  assert timing.versions("jax", "numpy") == dict(jax=jax.__version__, numpy=np.__version__)


def test_torch_record_has_the_keys_of_the_committed_comparisons():
  pytest.importorskip("torch")
  record = timing.torch_record([2, 1])
  assert record["torch_threads"] == [2, 1] and record["jax_version"] == jax.__version__
  for name in ("gan", "vae"):
    with open(os.path.join(ROOT, "results", "bench", f"{name}.json")) as f:
      keys = list(json.load(f))
    start = keys.index("jax_version")
    assert keys[start:start + len(record)] == list(record), name


def test_write_results_writes_strict_json_and_markdown(tmp_path):
  base = timing.write_results(str(tmp_path / "out"), "x", dict(a=math.nan, b=[1.5]), "# x\n")
  assert base == str(tmp_path / "out" / "x")
  assert json.loads((tmp_path / "out" / "x.json").read_text()) == dict(a=None, b=[1.5])
  assert (tmp_path / "out" / "x.md").read_text() == "# x\n"
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.json", "x.md"]


def test_load_readings():
  assert len(timing.load_average()) == 3
  assert timing.format_load([0.5, 1.25, 2]) == "0.50 / 1.25 / 2.00"
  cores = timing.OtherLoad().cores()
  assert cores is None or cores >= 0.0


def test_source_versions_hash_the_files_asked():
  found = timing.source_versions(["deepfound/benchmarks/timing.py", "no/such/file.py"])
  digest = found["sha256"]["deepfound/benchmarks/timing.py"]
  assert len(digest) == 12 and int(digest, 16) >= 0
  assert found["sha256"]["no/such/file.py"] is None
