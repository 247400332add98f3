"""The problems of section 17.4 (deep generative models), as the driver's problem kinds.

* ``LossFiniteSum`` (a ``FiniteSum``): E(theta) = (1/n) sum_i loss(theta, x_i) + (l2/2)||theta||^2
  for a per-sample loss given as a function: density fitting by maximum likelihood,
  loss = -log rho_theta(x_i) (17.4.1), and the auto-encoder's reconstruction error (17.4.2).
  Every rule applies, SAG and its family included (pytree gradient memory).
* ``NoisyFiniteSum`` (a ``StochasticFiniteSum``): the same with a loss that also takes a PRNG
  key, loss(theta, x_i, xi): the VAE's reparameterized bound. The driver hands its gradient
  methods ``(samples, key)``, a fresh key per step.
* ``PushForward`` (an ``Expectation``): a generator h_theta pushes a latent law zeta forward,
  alpha_theta = h_theta # zeta, and the loss is a divergence between a generated minibatch and
  a data minibatch (Sinkhorn, MMD: "minimum Kantorovich estimators"). Each step draws fresh
  latents and data points, so it is an expectation: SGD, SGA and adam apply, not the SAG family.

The models, losses and metrics are static callables, so one problem class serves every model:
``sample_loss(params, x[, key])``, ``metrics_fn(params, problem) -> dict`` (logged beside the
objective at every log point, on the device) and ``final_fn(params, problem) -> dict`` (once, at
the end of a run: what is too slow for every log point, e.g. a VAE's k = 5000 likelihood bound).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from deepfound.problems.kinds import SampleTerms

MetricsFn = Callable[[optax.Params, Any], dict[str, jax.Array]]
SampleFn = Callable[[optax.Params, jax.Array, int], jax.Array]  # (params, key, num) -> (num, d)


_COUPLING_STREAM = 2  # fold_in tag of the key that pairs a batch, apart from its losses' keys


def _no_metrics(params, problem) -> dict[str, jax.Array]:
  del params, problem
  return {}


def _penalty(l2: jax.Array, params: optax.Params) -> jax.Array:
  return 0.5 * l2 * optax.tree.norm(params, squared=True)


def _static(default=None):
  return dataclasses.field(default=default, metadata=dict(static=True))


class _Parts:
  """What the three problems share: the start, the L2 term's gradient, the metrics and the
  sampler, from the fields ``initial_params``, ``l2``, ``metrics_fn``, ``final_fn`` and
  ``sample_fn`` (``PushForward`` samples by its generator instead)."""

  def init_params(self):
    return self.initial_params

  def regularizer_gradient(self, params):
    return jax.tree.map(lambda p: self.l2 * p, params)

  def metrics(self, params) -> dict[str, jax.Array]:
    return self.metrics_fn(params, self)

  def final_metrics(self, params) -> dict[str, jax.Array]:
    return self.final_fn(params, self)

  def sample(self, params, key: jax.Array, num: int, **options) -> jax.Array:
    """``num`` draws from the model at ``params`` by its ``sample_fn`` (a density, flow or score
    model's sampler, in the data's units); ``options`` go to it (e.g. an ODE solver)."""
    if self.sample_fn is None:
      raise TypeError("this model has no sampler")
    return self.sample_fn(params, key, num, **options)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LossFiniteSum(_Parts):
  """E(theta) = (1/n) sum_i sample_loss(theta, x_i) + (l2/2)||theta||^2 on samples on the device.

  ``test_samples`` ride along for the metrics (held-out NLL, test reconstruction error).
  """

  samples: jax.Array  # (n, *sample_shape)
  test_samples: jax.Array  # (m, *sample_shape)
  initial_params: Any  # parameter pytree (an nnx.State) at initialization
  l2: jax.Array
  sample_loss: Callable[[optax.Params, jax.Array], jax.Array] = _static()
  metrics_fn: MetricsFn = _static(_no_metrics)
  final_fn: MetricsFn = _static(_no_metrics)
  sample_fn: SampleFn | None = _static()  # draws from the fitted model, where it has a sampler
  validation_samples: jax.Array | None = None  # held out of the training set, for select_by
  # A metric of metrics_fn whose smallest logged value picks the iterate the run reports
  # (``kinds.SelectsIterate``), e.g. "valid_nll"; None: the last one.
  select_by: str | None = _static()
  patience: int | None = _static()  # early stopping: log points without a better select_by

  @property
  def num_samples(self) -> int:
    return self.samples.shape[0]

  def batch(self, indices: jax.Array) -> jax.Array:
    return self.samples[indices]

  def with_l2(self, l2: jax.Array) -> LossFiniteSum:
    return dataclasses.replace(self, l2=l2)

  def _loss(self, params, x):
    return self.sample_loss(params, x) + _penalty(self.l2, params)

  def terms(self, params, batch) -> SampleTerms:
    return SampleTerms(jax.vmap(jax.grad(self._loss), (None, 0))(params, batch))

  def mean_gradient(self, params, batch):
    return jax.grad(lambda p: jnp.mean(jax.vmap(self._loss, (None, 0))(p, batch)))(params)

  def data_loss(self, params, samples: jax.Array) -> jax.Array:
    """The mean loss over ``samples`` (no penalty): the training or test NLL."""
    return jnp.mean(jax.vmap(self.sample_loss, (None, 0))(params, samples))

  def objective(self, params) -> jax.Array:
    return self.data_loss(params, self.samples) + _penalty(self.l2, params)

  def gradient(self, params):
    return jax.grad(self.objective)(params)

  def snapshot(self, params, memory: str):
    if memory != "pytree":
      raise ValueError("generative models need memory='pytree'")
    table = jax.vmap(jax.grad(self._loss), (None, 0))(params, self.samples)
    return table, jax.tree.map(lambda t: jnp.mean(t, axis=0), table)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NoisyFiniteSum(_Parts):
  """E(theta) = (1/n) sum_i E_xi sample_loss(theta, x_i, xi) + (l2/2)||theta||^2.

  A batch, as ``terms`` and ``mean_gradient`` receive it, is ``(samples, key)``: the driver draws
  the step's key (``kinds.StochasticFiniteSum``) and each sample of the batch gets its own part
  of it. The objective is a Monte-Carlo estimate on ``objective_samples`` training samples with
  the fixed ``objective_key``, so it is a deterministic function of theta (logged curves do not
  jitter from the noise of the estimate, only from theta).

  With ``couple`` (flow matching's pairing of data and noise), a batch's samples are the rows
  ``couple(samples, key)`` return: each sample joined to its part of a minibatch-wide draw (an
  optimal-transport coupling pairs the whole minibatch at once). Evaluations over more samples
  (the objective, the full gradient, the SAG table) pair them in chunks of ``couple_size``, as
  the steps' minibatches are paired.
  """

  samples: jax.Array  # (n, *sample_shape)
  test_samples: jax.Array
  initial_params: Any
  l2: jax.Array
  objective_key: jax.Array  # fixed noise of the logged objective and metrics
  sample_loss: Callable[[optax.Params, jax.Array, jax.Array], jax.Array] = _static()
  metrics_fn: MetricsFn = _static(_no_metrics)
  final_fn: MetricsFn = _static(_no_metrics)
  objective_samples: int = _static(10_000)
  couple: Callable[[jax.Array, jax.Array], jax.Array] | None = _static()
  couple_size: int = _static(1)
  sample_fn: Callable[..., jax.Array] | None = _static()  # (params, key, num, **options) -> draws
  # stored samples -> the data's units, where the model stores them transformed (standardized)
  to_data: Callable[[jax.Array], jax.Array] | None = _static()
  validation_samples: jax.Array | None = None  # held out of the training set, for select_by
  select_by: str | None = _static()  # as LossFiniteSum's
  patience: int | None = _static()

  @property
  def num_samples(self) -> int:
    return self.samples.shape[0]

  def batch(self, indices: jax.Array) -> jax.Array:
    return self.samples[indices]

  def paired(self, samples: jax.Array, key: jax.Array) -> jax.Array:
    """``samples`` as the losses take them: unchanged, or ``couple``d in chunks of
    ``couple_size`` (the rest, if any, as one smaller chunk)."""
    if self.couple is None:
      return samples
    key = jax.random.fold_in(key, _COUPLING_STREAM)
    n, b = samples.shape[0], min(self.couple_size, samples.shape[0])
    whole = n // b * b
    chunks = samples[:whole].reshape(n // b, b, *samples.shape[1:])
    paired = jax.vmap(self.couple)(chunks, jax.random.split(key, n // b))
    parts = [paired.reshape(whole, *paired.shape[2:])]
    if whole < n:
      parts.append(self.couple(samples[whole:], jax.random.fold_in(key, n)))
    return jnp.concatenate(parts)

  def noisy_batch(self, indices: jax.Array, key: jax.Array):
    return self.paired(self.samples[indices], key), key

  def with_l2(self, l2: jax.Array) -> NoisyFiniteSum:
    return dataclasses.replace(self, l2=l2)

  def _loss(self, params, sample, key):
    return self.sample_loss(params, sample, key) + _penalty(self.l2, params)

  def terms(self, params, batch) -> SampleTerms:
    samples, key = batch  # each sample its own part of the step's key
    keys = jax.random.split(key, samples.shape[0])
    return SampleTerms(jax.vmap(jax.grad(self._loss), (None, 0, 0))(params, samples, keys))

  def mean_gradient(self, params, batch):
    samples, key = batch
    keys = jax.random.split(key, samples.shape[0])
    return jax.grad(lambda p: jnp.mean(jax.vmap(self._loss, (None, 0, 0))(p, samples, keys)))(params)

  def data_loss(self, params, samples: jax.Array, key: jax.Array) -> jax.Array:
    """The mean loss over ``samples`` (paired first, if the problem pairs them)."""
    samples = self.paired(samples, key)
    keys = jax.random.split(key, samples.shape[0])
    return jnp.mean(jax.vmap(self.sample_loss, (None, 0, 0))(params, samples, keys))

  def objective(self, params) -> jax.Array:
    subset = self.samples[:self.objective_samples]
    return self.data_loss(params, subset, self.objective_key) + _penalty(self.l2, params)

  def gradient(self, params):
    # The full gradient at the fixed noise of ``objective_key`` over every sample.
    return jax.grad(lambda p: self.data_loss(p, self.samples, self.objective_key)
                    + _penalty(self.l2, p))(params)

  def snapshot(self, params, memory: str):
    if memory != "pytree":
      raise ValueError("generative models need memory='pytree'")
    batch = (self.paired(self.samples, self.objective_key), self.objective_key)
    table = self.terms(params, batch).gradients
    return table, jax.tree.map(lambda t: jnp.mean(t, axis=0), table)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PushForward(_Parts):
  """E(theta) = E_{z ~ zeta^b, x ~ beta^b} D(h_theta(z_1..b), x_1..b) + (l2/2)||theta||^2.

  ``draw`` takes b data points uniformly (with replacement) and b latents z ~ N(0, I); the
  gradient is the integral over z of grad_x D(h_theta(z), x) d_theta h_theta(z), computed by
  autodiff through the divergence. The logged objective is D between ``eval_latents`` pushed
  forward and ``test_samples`` (fixed, so it is a deterministic function of theta).
  """

  samples: jax.Array  # (n, d) the data
  test_samples: jax.Array  # (m, d)
  eval_latents: jax.Array  # (m, latent_size), fixed
  initial_params: Any
  l2: jax.Array
  generate: Callable[[optax.Params, jax.Array], jax.Array] = _static()  # (params, z (b, k)) -> (b, d)
  divergence: Callable[[jax.Array, jax.Array], jax.Array] = _static()  # (generated, data) -> scalar
  metrics_fn: MetricsFn = _static(_no_metrics)
  final_fn: MetricsFn = _static(_no_metrics)

  @property
  def latent_size(self) -> int:
    return self.eval_latents.shape[1]

  def draw(self, key: jax.Array, batch_size: int):
    key_data, key_latent = jax.random.split(key)
    indices = jax.random.randint(key_data, (batch_size,), 0, self.samples.shape[0])
    latents = jax.random.normal(key_latent, (batch_size, self.latent_size), self.samples.dtype)
    return self.samples[indices], latents

  def with_l2(self, l2: jax.Array) -> PushForward:
    return dataclasses.replace(self, l2=l2)

  def _loss(self, params, batch):
    data, latents = batch
    return self.divergence(self.generate(params, latents), data) + _penalty(self.l2, params)

  def mean_gradient(self, params, batch):
    return jax.grad(self._loss)(params, batch)

  def terms(self, params, batch) -> SampleTerms:
    raise TypeError("a push-forward loss compares whole minibatches; it has no per-sample terms "
                    "(use sgd, sga or adam)")

  def objective(self, params) -> jax.Array:
    return self._loss(params, (self.test_samples, self.eval_latents))

  def sample(self, params, key: jax.Array, num: int) -> jax.Array:
    """h_theta(z) for ``num`` draws z ~ N(0, I)."""
    latents = jax.random.normal(key, (num, self.latent_size), self.samples.dtype)
    return self.generate(params, latents)

