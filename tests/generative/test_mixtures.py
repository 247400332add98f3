"""The 2-D mixtures of 17.4: the data sets, the true law's density and entropy, the mode metrics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from deepfound.data import check_dataset, get_dataset
from deepfound.data.mixtures import MIXTURES, Mixture, grid, mode_metrics, ring


def test_ring_and_grid_modes():
  r, g = ring(), grid()
  assert r.means.shape == (8, 2) and r.sd == 0.01 and r.means.dtype == np.float64
  np.testing.assert_allclose(np.linalg.norm(r.means, axis=1), 1.0, atol=1e-12)
  np.testing.assert_allclose(r.means[2], [0.0, 1.0], atol=1e-12)
  assert g.means.shape == (25, 2) and g.sd == 0.05
  assert set(map(tuple, g.means.tolist())) == {(a, b) for a in range(-4, 5, 2) for b in range(-4, 5, 2)}
  assert MIXTURES["ring"].means.shape == (8, 2) and MIXTURES["grid"].means.shape == (25, 2)
  with pytest.raises(ValueError):
    Mixture(np.zeros((3, 3)), 0.1)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_data_sets_load_through_the_registry(name):
  spec = get_dataset(name)
  data = spec.load(ConfigDict(dict(num_samples=2000, seed=3)))
  check_dataset(data, name)
  x, ids = data.features, data.targets
  x_test, ids_test = data.test
  assert x.shape == (2000, 2) and x.dtype == np.float32 and ids.dtype == np.int32
  assert x_test.shape == (10_000, 2) and ids_test.dtype == np.int32
  mixture = MIXTURES[name]
  # Each point lies within a few sd of the mode its id names, and every mode occurs.
  for points, labels in ((x, ids), (x_test, ids_test)):
    offsets = points - mixture.means[labels]
    assert np.abs(offsets).max() < 6 * mixture.sd
    assert np.std(offsets) == pytest.approx(mixture.sd, rel=0.05)
    assert set(np.unique(labels)) == set(range(mixture.num_modes))
  again = spec.load(ConfigDict(dict(num_samples=2000, seed=3)))
  np.testing.assert_array_equal(again.features, x)
  np.testing.assert_array_equal(again.test[0], x_test)
  other = spec.load(ConfigDict(dict(num_samples=2000, seed=4)))
  assert not np.array_equal(other.features, x)
  assert not set(map(tuple, x_test.tolist())) & set(map(tuple, x.tolist()))  # no shared point


@pytest.mark.slow
def test_log_density_and_entropy_of_the_ring():
  mixture = ring()
  # At a mode the other components are >= 76 sd away: log p = -log K - log(2 pi sd^2).
  at_modes = mixture.log_density(mixture.means.astype(np.float32))
  np.testing.assert_allclose(at_modes, -math.log(8) - math.log(2 * math.pi * 1e-4), rtol=1e-6)
  assert mixture.log_density(jnp.zeros((3, 4, 2))).shape == (3, 4)
  value, error = mixture.entropy(num=20_000, seed=0)
  assert isinstance(value, np.float64) and 0.005 < error < 0.01  # Var(-log p) = Var(chi^2_2 / 2) = 1
  closed_form = math.log(8) + math.log(2 * math.pi * math.e * 0.01 ** 2)
  assert mixture.separated_entropy() == pytest.approx(closed_form)
  assert abs(value - closed_form) < 3 * error + 1e-3


def test_mode_metrics_by_hand():
  means = ring().means
  sd = 0.01
  samples = np.array([means[0], means[0] + [0.02, 0.0], means[0] + [0.0, -0.025], means[3] + 0.015,
                      [0.0, 0.0]], np.float32)
  metrics = jax.jit(mode_metrics)(samples, means, sd)
  assert metrics["high_quality_fraction"] == pytest.approx(0.8)
  assert metrics["modes_captured"] == 2
  expected_kl = 0.75 * math.log(0.75 * 8) + 0.25 * math.log(0.25 * 8)
  assert metrics["mode_kl"] == pytest.approx(expected_kl, rel=1e-6)
  # A sample 3.5 sd from its mode is not high quality (0.015 * sqrt 2 = 2.1 sd above is).
  assert mode_metrics(means[:1] + [0.035, 0.0], means, sd)["high_quality_fraction"] == 0
  # Batched over sample sets: all eight modes once (KL 0), one mode eight times (KL log 8), none.
  sets = np.stack([means, np.repeat(means[5:6], 8, axis=0), np.full((8, 2), 5.0)]).astype(np.float32)
  batched = jax.vmap(mode_metrics, in_axes=(0, None, None))(sets, means, sd)
  np.testing.assert_allclose(batched["modes_captured"], [8, 1, 0])
  np.testing.assert_allclose(batched["high_quality_fraction"], [1, 1, 0])
  np.testing.assert_allclose(batched["mode_kl"][:2], [0.0, math.log(8)], atol=1e-6)
  assert np.isnan(batched["mode_kl"][2])
  assert all(v.dtype == jnp.float32 for v in batched.values())
