"""The sweep specification grammar."""

import numpy as np
import pytest

from deepfound.sweep import SpecError, expand, parse


def test_product_zip_and_generators():
  runs = expand(parse(
      "optim.learning_rate=logspace(-3, 0, 4); "
      "zip(optim.name=[sgd, sga], optim.schedule=[inverse_time, inverse_sqrt]); seed=range(2)"))
  assert len(runs) == 4 * 2 * 2
  np.testing.assert_allclose(sorted({r["optim.learning_rate"] for r in runs}),
                             [1e-3, 1e-2, 1e-1, 1.0])
  pairs = {(r["optim.name"], r["optim.schedule"]) for r in runs}
  assert pairs == {("sgd", "inverse_time"), ("sga", "inverse_sqrt")}  # zipped, not crossed
  assert {r["seed"] for r in runs} == {0, 1}


def test_literals():
  runs = expand(parse("problem.l2=[0, 1e-3, -2]; optim.l0=linspace(10, 30, 3)"))
  assert [r["problem.l2"] for r in runs[::3]] == [0, 1e-3, -2]
  assert [r["optim.l0"] for r in runs[:3]] == [10.0, 20.0, 30.0]
  assert expand(parse("seed=7")) == [{"seed": 7}]
  assert len(expand(parse("optim.learning_rate=geomspace(0.1, 10, 3)"))) == 3


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    ("optim.learning_rate", "expected KEY=VALUES"),
    ("optim.learning_rate=foo(1, 2)", "unknown generator"),
    ("zip(seed=[1, 2], problem.l2=[1])", "equal numbers"),
    ("seed=[1, 2", "unbalanced"),
    ("seed=[1]; seed=[2]", "appears twice"),
    ("seed=[]", "no values"),
    ("1x=[1]", "not a config key"),
    ("seed=[a+b]", "cannot read"),
])
def test_bad_specs(spec, message):
  with pytest.raises(SpecError, match=message):
    parse(spec)
