"""The benchmarks' markdown writers still write the committed tables in results/ from the committed
.json beside them: the output formats (json keys, table layout) stay what was committed. Tables
with notes added by hand after the generated part (accelerator.md, gans/h200) are left out."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _markdown(name):
  from deepfound.benchmarks import gan_speed, gans, generative, nets, sag, sparse, sweep, vae

  return {
      "bench/sag": lambda r: sag.markdown(r, 200_000),  # the committed large_n
      "bench/sparse": sparse.markdown,
      "bench/sparse_pinned/sparse": sparse.markdown,
      "bench/vae": vae.markdown,
      "bench/gan": gan_speed.markdown,
      "bench/sweep": lambda r: sweep.markdown(r, 20_000),
      "bench/nets": nets.markdown,
      "gans/bench": gans.markdown,
      "generative/bench": lambda r: generative.markdown(r, ""),
  }[name]


@pytest.mark.parametrize("name", ["bench/sag", "bench/sparse", "bench/sparse_pinned/sparse",
                                  "bench/vae", "bench/gan", "bench/sweep", "bench/nets",
                                  "gans/bench", "generative/bench"])
def test_markdown_of_the_committed_json_is_the_committed_table(name):
  sys.path.insert(0, ROOT)
  base = os.path.join(ROOT, "results", name)
  if not os.path.exists(base + ".json"):
    pytest.skip(f"results/{name}.json is not committed")
  with open(base + ".json") as f:
    results = json.load(f)
  with open(base + ".md") as f:
    assert _markdown(name)(results) == f.read()
