"""The over-seeds benchmarks' case tables and runs (deepfound.benchmarks.gans, .generative;
scripts/bench_gan.py, scripts/bench_generative.py): a tiny GAN case run over seeds and its rate
sweep, which goes through the sweep package and gives seed 0 the very run of the seeds' program."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(model__hidden=(16,), model__discriminator_hidden=(16,), data__num_samples=2000,
            num_steps=40, log_every=20)


@pytest.fixture(autouse=True)
def _configs_on_path(monkeypatch):
  monkeypatch.syspath_prepend(ROOT)


def test_case_tables_expand_groups_and_apply_nested_overrides():
  from deepfound.benchmarks import gans, generative

  assert gans.case_names(["cpu", "ring_wgan_gp"]) == [*gans.GROUPS["cpu"], "ring_wgan_gp"]
  with pytest.raises(ValueError, match="unknown nope; expected cpu, schemes"):
    gans.case_names(["cpu", "nope"])
  config = gans.case_config("ring_wgan_gp_b05")
  assert (config.optim.generator.b1, config.optim.discriminator.b2) == (0.5, 0.9)
  assert tuple(config.model.hidden) == (128, 128, 128) and config.problem.loss == "wgan_gp"
  assert gans.case_config("ring_js", steps_scale=0.01).num_steps == 3_000  # one log block at least
  assert gans.case_config("ring_js", steps_scale=0.25).num_steps == 6_000  # a multiple of log_every
  config = generative.case_config("sinkhorn_ring", steps_scale=0.5)
  assert (config.problem.loss, config.num_steps, config.log_every) == ("sinkhorn", 10_000, 1_000)
  assert generative.case_names(["cheap"]) == generative.GROUPS["cheap"]
  balanced = generative.case_config("sinkhorn_ring_5k_balanced")
  assert balanced.problem.rho is None and balanced.num_steps == 5_000
  assert generative.case_config("sinkhorn_ring_5k").problem.rho == 0.1


def test_every_case_config_is_valid():
  """A case's overrides pass the checks that train.py applies (a typo in a case table, or a key
  the case's run ignores, fails here rather than on an accelerator)."""
  from deepfound.benchmarks import flow_matching, gans, generative
  from deepfound.benchmarks.cases import load_config
  from deepfound.experiment.config import validate

  for module in (gans, generative):
    for name in module.CASES:
      validate(module.case_config(name))
  for config_module, arg, overrides in flow_matching.CASES.values():
    validate(load_config(config_module, arg, overrides))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_gan.py", "bench_generative.py"])
def test_an_unknown_case_is_one_line(tmp_path, script):
  done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), f"--out={tmp_path}",
                         "--cases=nope"], capture_output=True, text=True, timeout=120, cwd=ROOT)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --cases: unknown nope")


@pytest.mark.slow
def test_a_case_over_seeds_and_its_rate_sweep(tmp_path, monkeypatch):
  from deepfound.benchmarks import gans
  from deepfound.strict_json import strict

  monkeypatch.setitem(gans.CASES, "tiny", ("ring", TINY))
  lines = []
  results = gans.run_cases(["tiny"], str(tmp_path), num_seeds=2, command="test", log=lines.append)
  saved = json.loads((tmp_path / "bench.json").read_text())
  case = saved["cases"]["tiny"]
  assert case["num_seeds"] == 2 and case["num_steps"] == 40 and len(case["samples"]) == 2
  assert case["per_seed"] == strict(results["cases"]["tiny"]["per_seed"])
  assert "| tiny | js |" in (tmp_path / "bench.md").read_text()
  assert saved["facts"]["backend"] and lines[-1].startswith("wrote ")

  rates = [1e-4, 1e-3]  # the case's own rates are 1e-4 for both players
  sweep = gans.sweep_case("tiny", str(tmp_path), rates, num_seeds=2, command="test", log=lines.append)
  assert json.loads((tmp_path / "sweep.json").read_text())["case"] == "tiny"
  assert sweep["runs"] == 8 and sweep["generator_rates"] == rates and sweep["diverged"] == 0
  for name in gans.MODE_METRICS:
    values = np.asarray(sweep["last"][name])
    assert values.shape == (2, 2, 2)
    # Seed 0 at the case's rates is the seeds' program's seed 0: the same start, keys and
    # evaluation (later seeds are evaluated on their own model.seed's latents by the sweep).
    assert values[0, 0, 0] == pytest.approx(case["per_seed"][name][0], rel=1e-5), name
  assert len(np.unique(np.asarray(sweep["last"]["mode_kl"]))) > 1  # the runs differ


@pytest.mark.slow
def test_rate_sweep_keeps_the_sweeps_outputs_where_asked(tmp_path, monkeypatch):
  from configs import gan_2d
  from deepfound.benchmarks import gans

  config = gan_2d.get_config("ring")
  config.model.hidden, config.model.discriminator_hidden = (16,), (16,)
  config.data.num_samples, config.num_steps, config.log_every = 2000, 20, 20
  result = gans.game_rate_sweep(config, [1e-4], [3e-4, 3e-3], 1, workdir=str(tmp_path / "sweep"))
  rows = [json.loads(line) for line in (tmp_path / "sweep" / "sweep.jsonl").open()]
  assert [r["optim.discriminator.learning_rate"] for r in rows] == [3e-4, 3e-3]
  assert np.asarray(result["last"]["modes_captured"]).shape == (1, 2, 1)
  assert result["last"]["modes_captured"][0][1][0] == rows[1]["modes_captured"]
