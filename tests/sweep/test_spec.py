"""The sweep specification grammar."""

import warnings

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
    (";", "has no KEY=VALUES"),
    (" ; ; ", "has no KEY=VALUES"),
    ("optim.l0=[-abc]", "only a number takes a sign"),
    ("optim.l0=[-'a']", "only a number takes a sign"),
    ("optim.l0=[1e999]", "1e999 in '\\[1e999\\]' is not a finite number"),
    ("optim.l0=logspace(0, 1, 2.5)", "must be an integer"),
    ("seed=range(0, 1e300)", "more values than the 100,000"),
    ("optim.l0=linspace(a, 1, 2)", "linspace takes numbers"),
])
def test_bad_specs(spec, message):
  with pytest.raises(SpecError, match=message):
    parse(spec)


def test_overflowing_generator_is_one_error_without_warnings():
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # numpy's overflow RuntimeWarning would raise here
    with pytest.raises(SpecError, match=r"'logspace\(0, 400, 2\)' gives inf, not a finite"):
      parse("optim.learning_rate=logspace(0, 400, 2)")


def test_tuples_and_signs():
  assert parse("model.hidden=[(64,), (32, 32)]; optim.l0=[-1, +2, --3]") == [
      {"model.hidden": [(64,), (32, 32)]}, {"optim.l0": [-1, 2, 3]}]
