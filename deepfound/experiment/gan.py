"""The GANs of section 17.4.3 as a registered model (``model.name=gan``): a generator MLP and a
discriminator MLP playing the game of ``deepfound.problems.gan``, each player stepped by its own
registered rule (``optim.generator.*``, ``optim.discriminator.*``) under ``optim.scheme``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.data import class_ids
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
from deepfound.experiment.models import ModelSpec, register_model, source_name, train_test
from deepfound.problems.gan import GAN, LOSS_SETTINGS, LOSSES
from deepfound.registry import Option, one_of

EVALUATION_PACKS = 512  # packs of held-out data on which log points evaluate V and the losses
CLASSIFIED_SAMPLES = 10_000  # generated images that the classifier labels at each log point
CLASSIFIER_HIDDEN = (256, 64)  # its penultimate layer's 64 features give the Frechet distance
CLASSIFIER_STEPS = 3_000


def _classifier_metrics(config, dataset, dtype):
  """For image data: an MLP classifier trained here on the real training images (our own: the
  Inception network of FID cannot be downloaded), and a function of generated images -> the
  number of classes they cover, the KL of their class histogram from uniform, and the Frechet
  distance between real and generated images in the classifier's penultimate features."""
  import optax

  (x, y), (x_test, y_test) = train_test(config, dataset, standardize=False)
  y, y_test, classes = class_ids(y, y_test, source_name(config))
  y = jnp.asarray(y)
  x = jnp.asarray(np.asarray(x, np.float64).reshape(len(x), -1), dtype)
  x_test = jnp.asarray(np.asarray(x_test, np.float64).reshape(len(x_test), -1), dtype)
  sizes = [x.shape[1], *CLASSIFIER_HIDDEN, classes]
  keys = jax.random.split(jax.random.PRNGKey(config.model.seed + 2), len(sizes) - 1)
  params = [(jax.random.normal(k, (a, b), dtype) * np.sqrt(2.0 / a), jnp.zeros((b,), dtype))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]

  def features(params, images):
    for w, b in params[:-1]:
      images = jax.nn.relu(images @ w + b)
    return images

  def logits(params, images):
    w, b = params[-1]
    return features(params, images) @ w + b

  def loss(params, index):
    scores = logits(params, x[index])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scores, y[index]))

  optimizer = optax.adam(1e-3)

  @jax.jit
  def train(params):
    def step(carry, key):
      params, state = carry
      grads = jax.grad(loss)(params, jax.random.randint(key, (128,), 0, x.shape[0]))
      updates, state = optimizer.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    keys = jax.random.split(jax.random.PRNGKey(config.model.seed + 3), CLASSIFIER_STEPS)
    return jax.lax.scan(step, (params, optimizer.init(params)), keys)[0][0]

  params = train(params)
  accuracy = float(jnp.mean(jnp.argmax(logits(params, x_test), -1) == jnp.asarray(y_test)))
  real = features(params, x)
  real_mean, real_cov = jnp.mean(real, 0), jnp.cov(real, rowvar=False)

  def judge(generated):
    fake = features(params, generated)
    counts = jnp.bincount(jnp.argmax(logits(params, generated), -1), length=classes)
    q = counts / generated.shape[0]
    kl = jnp.sum(jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q * classes, 1.0)), 0.0))
    return dict(classes_covered=jnp.sum(counts > 0).astype(dtype), class_kl=kl,
                frechet_distance=frechet_distance(real_mean, real_cov, jnp.mean(fake, 0),
                                                  jnp.cov(fake, rowvar=False)),
                classifier_test_accuracy=jnp.asarray(accuracy, dtype))

  return judge


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> jax.Array:
  """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^(1/2) S_b S_a^(1/2))^(1/2)), the Frechet (2-
  Wasserstein) distance of two Gaussians, through symmetric eigendecompositions."""
  def sqrt_psd(m):
    values, vectors = jnp.linalg.eigh((m + m.T) / 2)
    return (vectors * jnp.sqrt(jnp.maximum(values, 0.0))) @ vectors.T

  root_a = sqrt_psd(cov_a)
  cross = sqrt_psd(root_a @ cov_b @ root_a)
  return (jnp.sum(jnp.square(mean_a - mean_b))
          + jnp.trace(cov_a) + jnp.trace(cov_b) - 2.0 * jnp.trace(cross))


def _init_stddev(value) -> str | None:
  return None if 0 <= value <= 10 else "must be in [0, 10] (0: flax's default)"


def build_gan(config, dataset) -> GAN:
  from flax import nnx

  from deepfound.models import MLP

  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  model, problem = config.model, config.problem
  pack, latent, dim = problem.pack, model.latent_size, x.shape[1]
  images = dataset.features.ndim > 2
  rngs = nnx.Rngs(model.seed)
  init_stddev = model.init_stddev or None
  generator = MLP([latent, *model.hidden, dim], model.activation, rngs=rngs,
                  batch_norm=model.generator_norm == "batch", init_stddev=init_stddev)
  discriminator = MLP([pack * dim, *model.discriminator_hidden, 1], model.activation,
                      pieces=model.maxout_pieces, init_stddev=init_stddev, rngs=rngs)
  gen_params, gen_merge = _pure(generator, dtype)
  disc_params, disc_merge = _pure(discriminator, dtype)

  def generator_fn(params, z):
    out = gen_merge(params)(z)
    return jax.nn.sigmoid(out) if images else out  # pixel intensities in [0, 1]

  def discriminator_fn(params, packed):
    return disc_merge(params)(packed)[:, 0]

  packs = min(EVALUATION_PACKS, len(x_test) // pack)
  if packs < 1:
    raise ConfigError(f"problem.pack = {pack} is more than the {len(x_test)} held-out samples")
  count = packs * pack
  key = jax.random.PRNGKey(model.seed + 1)
  mixture = MIXTURES.get(config.data.name)
  judge = None
  if images:
    judge = _classifier_metrics(config, dataset, dtype)
  num_latents = max(count, MODE_SAMPLES, CLASSIFIED_SAMPLES if images else 0)
  test_latents = jax.random.normal(key, (num_latents, latent), dtype)
  test_mix = jax.random.uniform(jax.random.fold_in(key, 1), (packs,), dtype)

  def metrics_fn(params, problem):
    if mixture is not None:
      generated = problem.generate(params[0], problem.test_latents[:MODE_SAMPLES])
      return mode_metrics(generated, mixture.means, mixture.sd)
    if judge is not None:
      return judge(problem.generate(params[0], problem.test_latents[:CLASSIFIED_SAMPLES]))
    return {}

  return GAN(jnp.asarray(x, dtype), jnp.asarray(x_test[:count], dtype), test_latents,
             test_mix, (gen_params, disc_params), generator_fn, discriminator_fn,
             problem.loss, pack, problem.clip, problem.penalty_weight, metrics_fn)


register_model(ModelSpec(
    name="gan", build=build_gan, losses=LOSSES, finite_sum=False, kind="game",
    uses=("hidden", "activation"), loss_keys=LOSS_SETTINGS, penalized=False,
    summary="GAN: generator and discriminator MLPs, each with its own rule (17.4.3)",
    options=(LATENT_SIZE,
             Option("discriminator_hidden", tuple, (200, 200, 200),
                    "gan: the discriminator's hidden widths"),
             Option("maxout_pieces", int, 1,
                    "gan: k > 1 makes the discriminator's hidden units maxout units of k pieces "
                    "(PacGAN's 2-D discriminator: 5) instead of model.activation", _count),
             Option("generator_norm", str, "none",
                    "gan: batch normalizes the generator's hidden layers (PacGAN's 2-D "
                    "generator: batch; the statistics of each call's own batch)",
                    one_of(("none", "batch"))),
             Option("init_stddev", float, 0.0,
                    "gan: both networks' weights drawn from N(0, sd^2), biases 0 (PacGAN: "
                    "0.02); 0 keeps flax's LeCun normal", _init_stddev)),
    problem_options=(
        Option("pack", int, 1, "gan: samples per discriminator input (PacGAN)", _count),
        Option("clip", float, 0.01, "wgan_clip: the critic's weights stay in [-clip, clip]",
               _positive),
        Option("penalty_weight", float, 10.0, "wgan_gp: weight of the gradient penalty",
               _positive))))
