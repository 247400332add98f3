"""Generative adversarial networks as two-player games (17.4.3), the ``kinds.Game`` of the driver
``deepfound.optim.game``.

The chapter replaces the fixed loss between alpha_theta = h_theta # zeta and the data by a
learned one:

    min_theta max_xi  E_z f_xi(h_theta(z)) - (1/m) sum_j phi*(f_xi(y_j)).

With the discriminator's scores s = f_xi(x) read as logits of D = sigmoid(s), the
Jensen-Shannon GAN's payoff is V = E_data log D + E_model log(1 - D), which at the optimal
discriminator D* = p / (p + q) equals 2 JS(p, q) - log 4. Its discriminator minimizes -V; its
generator minimizes the non-saturating -E_model log D (Goodfellow et al. 2014), which has the
same fixed points and does not vanish when D rejects the samples. The Wasserstein GAN takes the
sup over 1-Lipschitz critics: V = E_data f - E_model f, the generator minimizes -E_model f; the
constraint is kept by clipping the critic's weights (``wgan_clip``, "only a proxy") or by the
gradient penalty lambda E (|grad f(x_hat)| - 1)^2 on random interpolates of real and generated
points (``wgan_gp``, Gulrajani et al. 2017).

PacGAN (Lin et al. 2018): with ``pack`` = k > 1 the discriminator sees k samples at once,
concatenated (all real or all generated), which penalizes a generator that drops modes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

LOSSES = ("js", "wgan_clip", "wgan_gp")
# The settings of ``GAN`` that each loss reads (besides ``pack``, which all read).
LOSS_SETTINGS = {"js": (), "wgan_clip": ("clip",), "wgan_gp": ("penalty_weight",)}
_FINITE_NOISE_SEED = 17_4_3  # the key of the fixed latents of ``GAN.sample_batch``


def js_discriminator_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  """-V of the Jensen-Shannon GAN: -E_data log D - E_model log(1 - D), D = sigmoid(score)."""
  return jnp.mean(jax.nn.softplus(-real_scores)) + jnp.mean(jax.nn.softplus(fake_scores))


def js_generator_loss(fake_scores: jax.Array) -> jax.Array:
  """The non-saturating generator loss -E_model log D."""
  return jnp.mean(jax.nn.softplus(-fake_scores))


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     mix: jax.Array) -> jax.Array:
  """E (|grad_x f(x_hat)| - 1)^2 over x_hat = u real + (1 - u) fake, one u per row."""
  points = mix[:, None] * real + (1.0 - mix[:, None]) * fake
  grads = jax.vmap(jax.grad(lambda x: critic(x[None])[0]))(points)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=-1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def _static(default=None):
  return dataclasses.field(default=default, metadata=dict(static=True))


def _no_metrics(params, problem) -> dict[str, jax.Array]:
  del params, problem
  return {}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GAN:
  """A GAN on samples held on the device (flattened to (N, d)).

  ``generator_fn(params, z) -> x`` maps latents (b, latent_size) to samples (b, d);
  ``discriminator_fn(params, x) -> scores`` maps packed samples (b, pack d) to (b,) scores.
  Log points evaluate on held-out samples with fixed latents (``evaluation_batch``).
  """

  samples: jax.Array  # (N, d) training data
  test_samples: jax.Array  # (m, d) held-out data, m a multiple of pack
  test_latents: jax.Array  # (>= m, latent_size) fixed latents of the log points' samples
  test_mix: jax.Array  # (m // pack,) fixed interpolation weights of the evaluation's penalty
  initial_params: Any  # (generator, discriminator)
  generator_fn: Callable = _static()
  discriminator_fn: Callable = _static()
  loss: str = _static("js")
  pack: int = _static(1)
  clip: float = _static(0.01)  # wgan_clip: the critic's weights stay in [-clip, clip]
  penalty_weight: float = _static(10.0)  # wgan_gp: lambda
  metrics_fn: Callable = _static(_no_metrics)

  @property
  def latent_size(self) -> int:
    return self.test_latents.shape[1]

  def init_params(self):
    return self.initial_params

  def draw(self, key: jax.Array, batch_size: int):
    """``batch_size`` packs: batch_size * pack data points and latents, and the penalty's
    interpolation weights."""
    k_data, k_latent, k_mix = jax.random.split(key, 3)
    count = batch_size * self.pack
    index = jax.random.randint(k_data, (count,), 0, self.samples.shape[0])
    latents = jax.random.normal(k_latent, (count, self.latent_size), self.samples.dtype)
    mix = jax.random.uniform(k_mix, (batch_size,), self.samples.dtype)
    return self.samples[index], latents, mix

  # The finite sum of the svre scheme (kinds.FiniteGame): sample i is the i-th pack of training
  # points, rows i * pack ... (i + 1) * pack - 1, with latents and a penalty weight that are fixed
  # functions of i (drawn from a fixed key, so that a batch's loss is a function of the indices).
  @property
  def num_samples(self) -> int:
    return self.samples.shape[0] // self.pack

  def sample_batch(self, indices: jax.Array):
    rows = (indices[:, None] * self.pack + jnp.arange(self.pack)).reshape(-1)
    k_latent, k_mix = jax.random.split(jax.random.PRNGKey(_FINITE_NOISE_SEED))
    latents = jax.vmap(lambda i: jax.random.normal(
        jax.random.fold_in(k_latent, i), (self.latent_size,), self.samples.dtype))(rows)
    mix = jax.vmap(lambda i: jax.random.uniform(
        jax.random.fold_in(k_mix, i), (), self.samples.dtype))(indices)
    return self.samples[rows], latents, mix

  def evaluation_batch(self):
    return (self.test_samples, self.test_latents[:self.test_samples.shape[0]], self.test_mix)

  def generate(self, generator, latents: jax.Array) -> jax.Array:
    return self.generator_fn(generator, latents)

  def _scores(self, params, batch):
    generator, discriminator = params
    real, latents, mix = batch
    fake = self.generate(generator, latents)
    packs = real.shape[0] // self.pack
    real, fake = real.reshape(packs, -1), fake.reshape(packs, -1)
    critic = lambda x: self.discriminator_fn(discriminator, x)  # noqa: E731
    return critic, real, fake, critic(real), critic(fake), mix

  def losses(self, params, batch):
    """(generator's loss, discriminator's loss) on ``batch``."""
    critic, real, fake, real_scores, fake_scores, mix = self._scores(params, batch)
    if self.loss == "js":
      return js_generator_loss(fake_scores), js_discriminator_loss(real_scores, fake_scores)
    discriminator_loss = jnp.mean(fake_scores) - jnp.mean(real_scores)
    if self.loss == "wgan_gp":
      penalty = gradient_penalty(critic, real, jax.lax.stop_gradient(fake), mix)
      discriminator_loss = discriminator_loss + self.penalty_weight * penalty
    return -jnp.mean(fake_scores), discriminator_loss

  def objective(self, params) -> jax.Array:
    """The payoff V on held-out data: E_data log D + E_model log(1 - D) (js; 2 JS - log 4 at the
    optimal D), or E_data f - E_model f (the critic's Wasserstein estimate)."""
    _, _, _, real_scores, fake_scores, _ = self._scores(params, self.evaluation_batch())
    if self.loss == "js":
      return -js_discriminator_loss(real_scores, fake_scores)
    return jnp.mean(real_scores) - jnp.mean(fake_scores)

  def project(self, discriminator):
    if self.loss == "wgan_clip":
      return jax.tree.map(lambda w: jnp.clip(w, -self.clip, self.clip), discriminator)
    return discriminator

  def metrics(self, params) -> dict[str, jax.Array]:
    return self.metrics_fn(params, self)

  def sample(self, params, key: jax.Array, num: int) -> jax.Array:
    latents = jax.random.normal(key, (num, self.latent_size), self.samples.dtype)
    return self.generate(params[0], latents)

