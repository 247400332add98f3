"""Flow matching and denoising score matching as registered models (``model.name=flow_matching``,
``model.name=score_matching``; ``deepfound.models.flow_matching``).

Both are noisy finite sums (``problems.generative.NoisyFiniteSum``): E_i(theta, xi) is the
regression loss of data point i at a random time and noise drawn from the step's key, so every
registered rule runs on them, the SAG family included (a gradient per point in memory, the
noise fresh at every step). Flow matching pairs each minibatch with its noise points first
(``problem.coupling``): independently, by the exact minibatch OT assignment, or from a Sinkhorn
plan.

The data are standardized (centred, divided by one overall sd s) for the network; samples,
likelihoods and the 2-Wasserstein distance are reported in the data's own units (log p_x =
log p_y - d log s). On the ring and the grid, whose law is known, the exact velocity or score of
the noised data gives ``score_error``; ``test_nll`` minus the mixture's entropy gives ``kl_gap``.

Log points (every ``log_every`` steps) report the regression loss on test points, the
``score_error`` and, on a mixture, the mode metrics of samples drawn with
``problem.sample_steps`` Heun steps. The end of a run adds the likelihood (adaptive Tsit5 at
``problem.ode_tolerance``, the exact trace in up to ``EXACT_TRACE_DIMS`` dimensions and
Hutchinson's estimator above), the mode metrics and the 2-Wasserstein distance of samples drawn by
the same adaptive solver (``w2_reference``: that distance between as many training and test
points, the floor an exact sampler reaches), the paths' straightness (flow matching), samples of
the reverse SDE (score matching: ``sde_*``), and on images the classifier metrics of the GANs and
bits/dim.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.data.mixtures import MIXTURES
from deepfound.errors import ConfigError
from deepfound.experiment.config import precision_dtype
from deepfound.experiment.generative import (
    DEQUANTIZE,
    MODE_SAMPLES,
    _count,
    _dequantize,
    _flat_samples,
    _mixture_metrics,
    _positive,
    _pure,
)
from deepfound.experiment.models import ModelSpec, register_model
from deepfound.models import flow_matching as fm
from deepfound.problems.generative import NoisyFiniteSum
from deepfound.registry import Option, one_of

EXACT_TRACE_DIMS = 16  # the likelihood's divergence: exact up to this dimension, Hutchinson above
SCORE_TIMES = 20  # times (i + 1/2) / SCORE_TIMES of score_error
SCORE_POINTS = 1_000  # test points of score_error and of the logged test loss
W2_POINTS = 2_500  # generated and test points of the 2-Wasserstein distance
STRAIGHTNESS_POINTS = 1_000
IMAGE_SAMPLES = 10_000  # generated images that the classifier judges at the end
SINKHORN_EPSILON = 0.05  # problem.coupling=sinkhorn: epsilon as a fraction of the mean cost


def _standardize(x: np.ndarray):
  loc = x.mean(axis=0)
  scale = float(np.sqrt(np.mean(np.square(x - loc)))) or 1.0
  return loc, scale


@dataclasses.dataclass(frozen=True, eq=False)
class Dynamics:
  """A built model's dynamics in the network's (standardized) units: its ODE field ``field(p)``
  from N(0, prior_variance I) at t_noise to the data at t_data, its loss, and on a mixture of
  known law (``means``, ``sd`` standardized) the exact target its ``errors`` compare with."""

  merge: Callable  # params -> the TimeMLP
  dim: int
  schedule: fm.Schedule | None  # None: flow matching
  means: jax.Array | None = None
  sd: float | None = None

  @property
  def times(self) -> tuple[float, float, float]:
    """(t_data, t_noise, prior_variance)."""
    if self.schedule is None:
      return 1.0, 0.0, 1.0
    return self.schedule.t_min, 1.0, self.schedule.prior_variance

  def field(self, p) -> fm.Field:
    if self.schedule is None:
      return self.merge(p)
    return fm.probability_flow(fm.score_from_noise(self.merge(p), self.schedule), self.schedule)

  def sample_loss(self, p, sample, key):
    if self.schedule is None:  # a (data, noise) pair
      return fm.flow_matching_loss(self.merge(p), sample[:self.dim], sample[self.dim:], key)
    return fm.denoising_loss(self.merge(p), self.schedule, sample, key)

  def errors(self, p, points: jax.Array, t: jax.Array) -> jax.Array:
    """Per test point, at time t (one fixed noise draw): flow matching's squared velocity error on
    the path's law at t (noise and data mixed); for a score model s(t)^2 times the squared score
    error (the noise prediction's error), on the noised data's law."""
    noise = jax.random.normal(jax.random.PRNGKey(1), points.shape, points.dtype)
    if self.schedule is None:
      y_t = (1 - t) * noise + t * points
      exact = fm.mixture_velocity(y_t, t, self.means, self.sd)
      return jnp.sum(jnp.square(self.merge(p)(y_t, t) - exact), -1)
    a, s = self.schedule.mean_sd(t)
    noisy = a * points + s * noise
    exact = fm.noised_mixture_score(noisy, a, s, self.means, self.sd)
    learned = fm.score_from_noise(self.merge(p), self.schedule)(noisy, t)
    return s**2 * jnp.sum(jnp.square(learned - exact), -1)


def _network(config, dim: int, dtype):
  """(initial params, merge) of ``config``'s TimeMLP on ``dim`` coordinates."""
  from flax import nnx

  return _pure(fm.TimeMLP(dim, tuple(config.model.hidden), config.model.activation,
                          rngs=nnx.Rngs(config.model.seed)), dtype)


def dynamics(config, merge, dim: int, loc: np.ndarray, scale: float, dtype) -> Dynamics:
  """The ``Dynamics`` of ``config``'s model (its network's ``merge``) on data of dimension
  ``dim`` standardized by (loc, scale)."""
  schedule = fm.Schedule(config.problem.schedule) if config.model.name == "score_matching" else None
  means = sd = None
  if config.data.name in MIXTURES:
    mixture = MIXTURES[config.data.name]
    means, sd = jnp.asarray((mixture.means - loc) / scale, dtype), mixture.sd / scale
  return Dynamics(merge, dim, schedule, means, sd)


def dynamics_of(config, problem: NoisyFiniteSum) -> Dynamics:
  """The ``Dynamics`` of a problem that ``build`` made from ``config`` (for pictures: the
  standardization is read back from ``problem.to_data``)."""
  dim = problem.samples.shape[1]
  dtype = problem.samples.dtype
  loc = np.asarray(problem.to_data(jnp.zeros((dim,), dtype)), np.float64)
  scale = float(np.asarray(problem.to_data(jnp.ones((dim,), dtype)))[0] - loc[0])
  return dynamics(config, _network(config, dim, dtype)[1], dim, loc, scale, dtype)


def build(config, dataset, *, score: bool):
  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  levels = config.problem.dequantize_levels
  x = _dequantize(x, levels, config.data.seed)
  x_test = _dequantize(x_test, levels, config.data.seed + 1)
  dim = x.shape[1]
  loc, scale = _standardize(x)
  y, y_test = (x - loc) / scale, (x_test - loc) / scale
  params, merge = _network(config, dim, dtype)
  model = dynamics(config, merge, dim, loc, scale, dtype)
  problem = config.problem
  sampler = fm.Solver("heun", steps=problem.sample_steps)
  precise = fm.Solver("tsit5", tolerance=problem.ode_tolerance)
  log_scale = dim * math.log(scale)
  loc_d = jnp.asarray(loc, dtype)
  known = _mixture_metrics(config.data.name)
  t_data, t_noise, prior_variance = model.times
  field, sample_loss, errors = model.field, model.sample_loss, model.errors
  couple = None
  if not score:
    coupling = problem.coupling

    def couple(samples, key):
      return jnp.concatenate([samples, fm.couple(samples, key, coupling, SINKHORN_EPSILON)], -1)

  exact_target = known is not None and (score or problem.coupling == "independent")
  images = None
  if dataset.features.ndim > 2:
    from deepfound.experiment.gan import _classifier_metrics

    images = _classifier_metrics(config, dataset, dtype)

  def to_data(samples):
    return loc_d + scale * samples

  def draw(p, key, num, solver):
    return fm.ode_sample(field(p), key, num, dim, t_noise, t_data, prior_variance, solver, dtype)

  def test_points(problem_, count):
    return problem_.test_samples[:count]

  def metrics_fn(p, problem_):
    key = jax.random.fold_in(problem_.objective_key, 1)
    points = test_points(problem_, SCORE_POINTS)
    out = dict(test_loss=problem_.data_loss(p, points, key))
    if exact_target:
      times = (jnp.arange(SCORE_TIMES, dtype=dtype) + 0.5) / SCORE_TIMES
      times = t_data + (1.0 - t_data) * times if score else times
      out["score_error"] = jnp.mean(jax.vmap(lambda t: errors(p, points, t))(times))
    if known is not None:
      samples, _, _ = draw(p, jax.random.PRNGKey(0), MODE_SAMPLES, sampler)
      out.update(known[2](to_data(samples)))
    return out

  def final_fn(p, problem_):
    out = {}
    count = min(problem.nll_test_samples, problem_.test_samples.shape[0])
    probe = None if dim <= EXACT_TRACE_DIMS else jax.random.fold_in(problem_.objective_key, 4)
    log_p, steps, failed = fm.ode_log_likelihood(field(p), test_points(problem_, count), t_data,
                                                 t_noise, prior_variance, precise, probe)
    nll = -jnp.mean(log_p) + log_scale
    out.update(test_nll=nll, nll_ode_steps=steps.astype(dtype), ode_failures=failed.astype(dtype))
    if levels is not None:  # the discrete data's bound: (k + u) / (levels + 1) on [0, 1]^d
      out["test_bits_per_dim"] = (nll + dim * math.log(levels + 1)) / (dim * math.log(2))
    num = IMAGE_SAMPLES if images is not None else max(MODE_SAMPLES, W2_POINTS)
    samples, steps, failed = draw(p, jax.random.PRNGKey(0), num, precise)
    samples = to_data(samples)
    out.update(sample_ode_steps=steps.astype(dtype),
               ode_failures=out["ode_failures"] + failed.astype(dtype))
    if known is not None:
      entropy = known[0]
      out.update(kl_gap=nll - entropy, **known[2](samples[:MODE_SAMPLES]))
    if images is not None:
      out.update(images(samples))
    else:
      m = min(W2_POINTS, problem_.test_samples.shape[0], problem_.samples.shape[0])
      test = to_data(test_points(problem_, m))
      out["w2"] = fm.wasserstein2(samples[:m], test)
      # the same distance between training and test points: what an exact sampler gets
      out["w2_reference"] = fm.wasserstein2(to_data(problem_.samples[:m]), test)
    if not score:
      noise = jax.random.normal(jax.random.PRNGKey(2), (STRAIGHTNESS_POINTS, dim), dtype)
      out["straightness"], failed = fm.straightness(field(p), noise, precise)
      out["ode_failures"] = out["ode_failures"] + failed.astype(dtype)
    elif known is not None:
      score_fn = fm.score_from_noise(model.merge(p), model.schedule)
      sde = fm.reverse_sde_sample(score_fn, model.schedule, jax.random.PRNGKey(3), MODE_SAMPLES,
                                  dim, problem.sde_steps, dtype)
      out.update({f"sde_{k}": v for k, v in known[2](to_data(sde)).items()})
    return out

  def sample_fn(p, key, num, solver=precise):
    """Draws in the data's units by the ODE (``solver``: a ``flow_matching.Solver``)."""
    return to_data(draw(p, key, num, solver)[0])

  return NoisyFiniteSum(jnp.asarray(y, dtype), jnp.asarray(y_test, dtype), params,
                        jnp.asarray(config.problem.l2, dtype),
                        jax.random.PRNGKey(config.model.seed + 2), sample_loss, metrics_fn,
                        final_fn, objective_samples=min(len(y), 4_096), couple=couple,
                        couple_size=config.optim.batch_size, sample_fn=sample_fn,
                        to_data=to_data)


def check_tolerance(config) -> None:
  """Both models: an ODE tolerance the adaptive solver can meet in the run's precision."""
  tolerance = config.problem.ode_tolerance
  floor = 10 * float(np.finfo(precision_dtype(config.precision)).eps)
  if not floor <= tolerance <= 0.1:
    raise ConfigError(f"problem.ode_tolerance must be in [{floor:.3g}, 0.1] in {config.precision} "
                      f"(10 machine epsilons: below, the adaptive solver cannot meet it), got "
                      f"{tolerance!r}")


def check_flow_matching(config) -> None:
  """The tolerance, and an exact OT coupling small enough to solve at every step."""
  check_tolerance(config)
  if config.problem.coupling == "ot" and config.optim.batch_size > 1024:
    raise ConfigError(f"problem.coupling=ot solves a {config.optim.batch_size} x "
                      f"{config.optim.batch_size} assignment (O(b^3)) every step: use "
                      "optim.batch_size <= 1024, or problem.coupling=sinkhorn")


_SHARED = (
    Option("sample_steps", int, 50, "flow_matching, score_matching: Heun steps of the log "
           "points' samples", _count),
    Option("ode_tolerance", float, 1e-5, "flow_matching, score_matching: rtol = atol of the "
           "final likelihood and samples (Tsit5)", _positive),
    Option("nll_test_samples", int, 2_000, "flow_matching, score_matching: test points of the "
           "final ODE likelihood", _count),
    DEQUANTIZE,
)

register_model(ModelSpec(
    name="flow_matching", build=functools.partial(build, score=False), losses=("squared",),
    uses=("hidden", "activation"), check=check_flow_matching,
    summary="conditional flow matching, linear path; a velocity MLP of (x, t); ODE sampling",
    problem_options=(
        Option("coupling", str, "independent", "flow_matching: independent (I-CFM), ot (exact "
               "minibatch OT, OT-CFM) or sinkhorn (ott-jax plan)", one_of(fm.COUPLINGS)),
        *_SHARED)))
register_model(ModelSpec(
    name="score_matching", build=functools.partial(build, score=True), losses=("denoising",),
    uses=("hidden", "activation"), check=check_tolerance,
    summary="denoising score matching (VP or VE); probability-flow ODE and reverse-SDE sampling",
    problem_options=(
        Option("schedule", str, "vp", "score_matching: noise schedule, vp or ve (Song et al. "
               "2021)", one_of(fm.SCHEDULES)),
        Option("sde_steps", int, 1_000, "score_matching: Euler-Maruyama steps of the final "
               "reverse-SDE samples", _count),
        *_SHARED)))
