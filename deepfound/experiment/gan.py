"""The GANs of section 17.4.3 as a registered model (``model.name=gan``): a generator MLP and a
discriminator MLP playing the game of ``deepfound.problems.gan``, each player stepped by its own
registered rule (``optim.generator.*``, ``optim.discriminator.*``) under ``optim.scheme``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deepfound.data.mixtures import MIXTURES, mode_metrics
from deepfound.errors import ConfigError
from deepfound.experiment.config import precision_dtype
from deepfound.experiment.generative import (
    LATENT_SIZE,
    MODE_SAMPLES,
    _count,
    _flat_samples,
    _positive,
    _pure,
)
from deepfound.experiment.models import ModelSpec, register_model
from deepfound.problems.gan import GAN, LOSSES
from deepfound.registry import Option

EVALUATION_PACKS = 512  # packs of held-out data on which log points evaluate V and the losses


def build_gan(config, dataset) -> GAN:
  from flax import nnx

  from deepfound.models import MLP

  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  model, problem = config.model, config.problem
  pack, latent, dim = problem.pack, model.latent_size, x.shape[1]
  images = dataset.features.ndim > 2
  rngs = nnx.Rngs(model.seed)
  generator = MLP([latent, *model.hidden, dim], model.activation, rngs=rngs)
  discriminator = MLP([pack * dim, *model.discriminator_hidden, 1], model.activation, rngs=rngs)
  gen_params, gen_merge = _pure(generator, dtype)
  disc_params, disc_merge = _pure(discriminator, dtype)

  def generator_fn(params, z):
    out = gen_merge(params)(z)
    return jax.nn.sigmoid(out) if images else out  # pixel intensities in [0, 1]

  def discriminator_fn(params, packed):
    return disc_merge(params)(packed)[:, 0]

  count = EVALUATION_PACKS * pack
  if len(x_test) < count:
    raise ConfigError(f"model.name=gan evaluates on {count} held-out samples (problem.pack = "
                      f"{pack}); {config.data.name} holds out {len(x_test)}")
  key = jax.random.PRNGKey(model.seed + 1)
  test_latents = jax.random.normal(key, (max(count, MODE_SAMPLES), latent), dtype)
  test_mix = jax.random.uniform(jax.random.fold_in(key, 1), (EVALUATION_PACKS,), dtype)
  mixture = MIXTURES.get(config.data.name)

  def metrics_fn(params, problem):
    if mixture is None:
      return {}
    generated = problem.generate(params[0], problem.test_latents[:MODE_SAMPLES])
    return mode_metrics(generated, mixture.means, mixture.sd)

  return GAN(jnp.asarray(x, dtype), jnp.asarray(x_test[:count], dtype), test_latents,
             test_mix, (gen_params, disc_params), generator_fn, discriminator_fn,
             problem.loss, pack, problem.clip, problem.penalty_weight, metrics_fn)


register_model(ModelSpec(
    name="gan", build=build_gan, losses=LOSSES, finite_sum=False, game=True,
    summary="GAN: generator and discriminator MLPs, each with its own rule (17.4.3)",
    options=(LATENT_SIZE,
             Option("discriminator_hidden", tuple, (200, 200, 200),
                    "gan: the discriminator's hidden widths")),
    problem_options=(
        Option("pack", int, 1, "gan: samples per discriminator input (PacGAN)", _count),
        Option("clip", float, 0.01, "wgan_clip: the critic's weights stay in [-clip, clip]",
               _positive),
        Option("penalty_weight", float, 10.0, "wgan_gp: weight of the gradient penalty",
               _positive))))
