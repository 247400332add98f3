"""The models of section 17.4 (deep generative models) behind the model registry.

* ``gmm``, ``flow``: density fitting by maximum likelihood, E_i = -log rho_theta(x_i) (17.4.1),
  a finite sum: every registered rule applies, the SAG family included.
* ``pushforward``: a generator h_theta, alpha_theta = h_theta # N(0, I), fitted by a minibatch
  Sinkhorn divergence or MMD to the data (17.4.1, "minimum Kantorovich estimators").
* ``autoencoder``: encoder and decoder MLPs, squared reconstruction error (17.4.2).
* ``vae``: the variational auto-encoder, its loss a k-sample importance-weighted bound with the
  reparameterization trick, on dynamically binarized images (17.4.2).

Generative models fit the data's law: labels are ignored. Samples are used as stored (2-D point
sets) or as intensities in [0, 1] (images, flattened); nothing is standardized, so densities and
likelihoods are those of the data as given.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.data.mixtures import MIXTURES, mode_metrics
from deepfound.errors import ConfigError
from deepfound.experiment.config import precision_dtype
from deepfound.experiment.models import (
    ModelSpec,
    check_batch_size,
    register_model,
    source_name,
    train_test,
)
from deepfound.models.density import MIXINGS, TRANSFORMS
from deepfound.problems.divergences import PARAMETERS, SOLVER_KEYS, parameter_problem, scaling_iterations
from deepfound.problems.generative import LossFiniteSum, NoisyFiniteSum, PushForward
from deepfound.registry import Option, one_of

MODE_SAMPLES = 2_500  # samples on which the mode metrics are computed (VEEGAN, PacGAN)
ENTROPY_SAMPLES = 1_000_000  # Monte-Carlo draws of a known mixture's entropy
PUSHFORWARD_EVAL = 1_000  # generated and test points of a push-forward's logged objective
ELBO_TEST_SAMPLES = 1_000  # test images of a VAE's logged test ELBO
MMD_SCALES = 6  # Gaussian kernels of widths problem.bandwidth * 2^k, k < MMD_SCALES, summed


def _positive(value) -> str | None:
  return None if value > 0 else "must be > 0"


def _count(value) -> str | None:
  return None if 1 <= value <= 1_000_000 else "must be in [1, 1,000,000]"


def _pure(model, dtype):
  """(params, merge): the model's ``nnx.Param`` leaves in ``dtype``, and params -> the module
  (its other variables, e.g. a flow's fixed standardization, are constants of it)."""
  from flax import nnx

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  rest = jax.tree.map(lambda r: r.astype(dtype) if jnp.issubdtype(r.dtype, jnp.floating) else r,
                      rest)
  return params, lambda p: nnx.merge(graphdef, p, rest)


def _flat_samples(config, dataset):
  """Training and test samples as (n, d) host arrays (labels dropped, nothing standardized)."""
  (x, _), (x_test, _) = train_test(config, dataset, standardize=False)
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  x_test = np.asarray(x_test, np.float64).reshape(len(x_test), -1)
  check_batch_size(config, len(x))
  return x, x_test


def _check_intensities(config, x: np.ndarray) -> None:
  if x.size and (x.min() < 0 or x.max() > 1):
    raise ConfigError(f"model.name={config.model.name} models pixel intensities in [0, 1]; "
                      f"{source_name(config)} has values in [{x.min():.3g}, {x.max():.3g}]")


@functools.cache
def _mixture_entropy(name: str) -> tuple[float, float]:
  return MIXTURES[name].entropy(ENTROPY_SAMPLES, seed=0)


def _mixture_metrics(name: str):
  """For a data set whose law is known (ring, grid): its entropy (Monte-Carlo, with its standard
  error) and a function of samples -> the mode metrics. None elsewhere."""
  if name not in MIXTURES:
    return None
  mixture = MIXTURES[name]
  entropy, stderr = _mixture_entropy(name)
  return entropy, stderr, lambda samples: mode_metrics(samples, mixture.means, mixture.sd)


def _dequantize(x: np.ndarray, levels: int | None, seed: int) -> np.ndarray:
  """Intensities k / levels -> (k + u) / (levels + 1), u ~ U[0, 1) drawn once: a continuous density
  of discrete data (its likelihood lower-bounds that of the discrete data)."""
  if levels is None:
    return x
  counts = np.rint(x * levels)
  off = np.abs(x * levels - counts)
  if x.size and off.max() > 1e-3:
    raise ConfigError(f"problem.dequantize_levels = {levels} expects intensities k/{levels}; the "
                      f"data hold values that are not (e.g. {x.flat[np.argmax(off)]:.6g})")
  if x.size and (counts.min() < 0 or counts.max() > levels):
    raise ConfigError(f"problem.dequantize_levels = {levels} expects intensities in [0, 1]; the data "
                      f"range over [{x.min():.3g}, {x.max():.3g}]")
  noise = np.random.default_rng(seed).random(x.shape)
  return (counts + noise) / (levels + 1)


# ---- density fitting by maximum likelihood (gmm, flow) ---------------------------------------


def _gmm(config, x: np.ndarray, rngs):
  """K components, means at k-means++ seeds (spread-out data points, as EM's usual start)."""
  from sklearn.cluster import kmeans_plusplus

  from deepfound.models.density import GaussianMixtureModel

  k = config.model.num_components
  if k > len(x):
    raise ConfigError(f"model.num_components ({k}) is more than the {len(x)} training samples")
  start, _ = kmeans_plusplus(x, k, random_state=config.model.seed)
  return GaussianMixtureModel(k, x.shape[1], rngs=rngs, init_points=start,
                              scale=float(np.mean(x.std(axis=0))) or 1.0)


def _flow(config, x: np.ndarray, rngs):
  """A coupling flow (spline or affine) with the data's mean and per-coordinate sd built in."""
  from deepfound.models.density import CouplingFlow

  model = config.model
  scale = x.std(axis=0)
  return CouplingFlow(x.shape[1], model.num_layers, tuple(model.hidden), rngs=rngs,
                      transform=model.transform, mixing=model.mixing, num_bins=model.num_bins,
                      tail_bound=model.tail_bound, activation=model.activation,
                      data_loc=x.mean(axis=0), data_scale=np.where(scale > 0, scale, 1.0))


def _upgrade_flow(stored: dict) -> None:
  """Flows stored before model.transform existed were RealNVP: affine couplings, alternating."""
  model = stored.setdefault("model", {})
  if "transform" not in model:
    model.update(transform="affine", mixing="alternate")


def check_density(config) -> None:
  """Early stopping watches the validation NLL: it needs a validation set."""
  if config.problem.patience and not config.problem.validation_fraction:
    raise ConfigError(f"problem.patience = {config.problem.patience} stops on the validation NLL; "
                      "set problem.validation_fraction > 0 to hold out a validation set")


def _validation_split(x: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(training rows, validation rows): round(fraction n) rows drawn at random (seeded) from the
  training set; the test set is not touched."""
  if not fraction:
    return x, x[:0]
  count = int(round(fraction * len(x)))
  if not 1 <= count < len(x):
    raise ConfigError(f"problem.validation_fraction = {fraction} leaves {len(x) - count} training "
                      f"and {count} validation samples of {len(x)}")
  order = np.random.default_rng(seed).permutation(len(x))
  return x[np.sort(order[count:])], x[np.sort(order[:count])]


def bits_per_dim(nll: jax.Array, dim: int, levels: int) -> jax.Array:
  """The NLL (nats) of a density of dequantized data (k + u) / (levels + 1) on [0, 1]^dim, as bits
  per dimension of the discrete data k in {0, ..., levels}: (nll / dim + log(levels + 1)) / log 2
  (the volume of a cell of the grid is (levels + 1)^-dim). A uniform model has log2(levels + 1)."""
  return (nll / dim + math.log(levels + 1)) / math.log(2)


def _dequantize_draw(x: jax.Array, key: jax.Array, levels: int) -> jax.Array:
  """Intensities k / levels -> (k + u) / (levels + 1), u ~ U[0, 1) drawn from ``key``."""
  counts = jnp.round(x * levels)
  return (counts + jax.random.uniform(key, x.shape, x.dtype)) / (levels + 1)


def build_density(config, dataset, make_model):
  """Maximum likelihood of the density that ``make_model(config, x, rngs)`` builds.

  With ``problem.dequantize_levels`` (images), every step dequantizes its minibatch with fresh
  uniform noise (as flows of images are trained: a fixed draw is a set of n points in [0, 1]^d
  that a flow can memorize), so the problem is a ``NoisyFiniteSum``; the test and validation
  images are dequantized once (seeded), and their NLLs are of those draws.

  With ``problem.validation_fraction`` > 0, that share of the training set is held out: its NLL
  (``valid_nll``) is logged and the run reports the iterate of its best log point
  (``driver.selects``), whose NLLs the summary gives as ``final_*``.
  """
  from flax import nnx

  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  levels = config.problem.dequantize_levels
  x, x_valid = _validation_split(x, config.problem.validation_fraction, config.data.seed + 2)
  check_batch_size(config, len(x))
  x_test = _dequantize(x_test, levels, config.data.seed + 1)
  x_valid = _dequantize(x_valid, levels, config.data.seed + 3)
  # The model's standardization is fitted to one dequantized draw of the training set.
  model = make_model(config, _dequantize(x, levels, config.data.seed), nnx.Rngs(config.model.seed))
  params, merge = _pure(model, dtype)
  known = _mixture_metrics(config.data.name)
  dim = x.shape[1]
  validation = len(x_valid) > 0

  def nll(p, samples):
    return -jnp.mean(merge(p).log_density(samples))

  def metrics_fn(p, problem):
    test_nll = nll(p, problem.test_samples)
    out = dict(test_nll=test_nll)
    if problem.validation_samples is not None:
      out.update(valid_nll=nll(p, problem.validation_samples))
    if levels is not None:
      out.update(test_bits_per_dim=bits_per_dim(test_nll, dim, levels))
    if known is not None:
      entropy, stderr, modes = known
      out.update(kl_gap=test_nll - entropy, entropy=jnp.asarray(entropy, test_nll.dtype),
                 entropy_stderr=jnp.asarray(stderr, test_nll.dtype))
      out.update(modes(merge(p).sample(jax.random.PRNGKey(0), MODE_SAMPLES)))
    return out

  def final_fn(p, problem):  # at the reported iterate: the selected one, with a validation set
    return {f"final_{k}": v for k, v in metrics_fn(p, problem).items()
            if k in ("test_nll", "valid_nll", "test_bits_per_dim", "kl_gap")}

  def sample_fn(p, key, num):
    return merge(p).sample(key, num)

  shared = dict(metrics_fn=metrics_fn, sample_fn=sample_fn)
  if validation:
    shared.update(final_fn=final_fn, validation_samples=jnp.asarray(x_valid, dtype),
                  select_by="valid_nll", patience=config.problem.patience or None)
  data = (jnp.asarray(x, dtype), jnp.asarray(x_test, dtype), params,
          jnp.asarray(config.problem.l2, dtype))
  if levels is None:
    return LossFiniteSum(*data, lambda p, sample: -merge(p).log_density(sample), **shared)

  def noisy_loss(p, sample, key):
    return -merge(p).log_density(_dequantize_draw(sample, key, levels))

  return NoisyFiniteSum(*data, jax.random.PRNGKey(config.model.seed + 2), noisy_loss,
                        objective_samples=min(len(x), 10_000), **shared)


# ---- push-forward generators (Sinkhorn, MMD) --------------------------------------------------


def _bandwidths(narrowest: float | None) -> tuple[float, ...] | None:
  """A multi-scale kernel: the narrowest width resolves a mode, the widest still reaches a mode
  that no generated point is near (a single narrow kernel lets the generator drop it)."""
  return None if narrowest is None else tuple(narrowest * 2.0**k for k in range(MMD_SCALES))


def check_pushforward(config) -> None:
  """The loss's parameter (``divergences.PARAMETERS``) is required (its scale is the data's: no
  default fits every set) and must be computable in the run's precision."""
  loss = config.problem.loss
  key = PARAMETERS[loss]
  value = config.problem[key]
  if value is None:
    raise ConfigError(f"problem.{key} is required for problem.loss={loss} (in the data's units; "
                      f"configs/pushforward_2d.py:<data>,{loss} sets the data set's)")
  scales = _bandwidths(value) if loss == "mmd" else value
  if problem := parameter_problem(loss, scales, precision_dtype(config.precision)):
    raise ConfigError(f"problem.{key} = {value!r} {problem}")
  start = config.problem.get("epsilon_start") if loss == "sinkhorn" else None
  if start is not None:
    if start <= value:
      raise ConfigError(f"problem.epsilon_start = {start!r} must exceed problem.epsilon = "
                        f"{value!r} (the scaling runs from it down to epsilon; unset it for none)")
    decay, iterations = config.problem.epsilon_decay, config.problem.sinkhorn_iterations
    needed = scaling_iterations(start, value, decay)
    if needed is None or needed >= iterations:
      raise ConfigError(
          f"problem.epsilon_start = {start!r} scaled by problem.epsilon_decay = {decay!r} per "
          f"iteration " + ("never reaches" if needed is None else
                           f"needs {needed} iterations to reach") + f" problem.epsilon = {value!r}; "
          f"problem.sinkhorn_iterations = {iterations} must be more (or use a smaller decay)")


def build_pushforward(config, dataset):
  from flax import nnx

  from deepfound.models import MLP
  from deepfound.problems.divergences import minibatch_divergence

  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  latent = config.model.latent_size
  model = MLP([latent, *config.model.hidden, x.shape[1]], config.model.activation,
              rngs=nnx.Rngs(config.model.seed))
  params, merge = _pure(model, dtype)
  loss, epsilon = config.problem.loss, config.problem.epsilon
  bandwidth = _bandwidths(config.problem.bandwidth)

  solver = {keyword: config.problem[key] for key, keyword in SOLVER_KEYS[loss].items()}

  def divergence(generated, data):
    return minibatch_divergence(loss, generated, data, epsilon=epsilon, bandwidth=bandwidth,
                                **solver)

  known = _mixture_metrics(config.data.name)
  eval_latents = jax.random.normal(jax.random.PRNGKey(config.model.seed + 1),
                                   (max(PUSHFORWARD_EVAL, MODE_SAMPLES), latent), dtype)

  def generate(p, z):
    return merge(p)(z)

  def metrics_fn(p, problem):
    if known is None:
      return {}
    return known[2](generate(p, problem.eval_latents[:MODE_SAMPLES]))

  return PushForward(jnp.asarray(x, dtype), jnp.asarray(x_test[:PUSHFORWARD_EVAL], dtype),
                     eval_latents[:PUSHFORWARD_EVAL], params, jnp.asarray(config.problem.l2, dtype),
                     generate, divergence, metrics_fn)


# ---- auto-encoders ---------------------------------------------------------------------------


def build_autoencoder(config, dataset):
  from flax import nnx

  from deepfound.models.autoencoder import AutoEncoder, pca_reconstruction_mse

  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  code = config.model.code_size
  if code >= x.shape[1]:
    raise ConfigError(f"model.code_size ({code}) must be below the data's dimension ({x.shape[1]})")
  model = AutoEncoder(x.shape[1], code, tuple(config.model.hidden), config.model.activation,
                      rngs=nnx.Rngs(config.model.seed))
  params, merge = _pure(model, dtype)
  pca_train = pca_reconstruction_mse(x, x, code)
  pca_test = pca_reconstruction_mse(x, x_test, code)

  def sample_loss(p, sample):
    return jnp.mean(jnp.square(merge(p)(sample) - sample))

  def metrics_fn(p, problem):
    train = problem.data_loss(p, problem.samples)
    return dict(reconstruction_mse=train, pca_mse=jnp.asarray(pca_train, train.dtype),
                test_reconstruction_mse=problem.data_loss(p, problem.test_samples),
                test_pca_mse=jnp.asarray(pca_test, train.dtype))

  return LossFiniteSum(jnp.asarray(x, dtype), jnp.asarray(x_test, dtype), params,
                       jnp.asarray(config.problem.l2, dtype), sample_loss, metrics_fn)


# ---- the variational auto-encoder ------------------------------------------------------------


def build_vae(config, dataset):
  from flax import nnx

  from deepfound.models import vae as vae_lib

  dtype = precision_dtype(config.precision)
  x, x_test = _flat_samples(config, dataset)
  _check_intensities(config, x)
  model = vae_lib.VAE(x.shape[1], tuple(config.model.hidden), config.model.latent_size,
                      rngs=nnx.Rngs(config.model.seed))
  params, merge = _pure(model, dtype)
  k = 1 if config.problem.loss == "elbo" else config.problem.num_importance_samples
  eval_k, eval_images = config.problem.eval_importance_samples, config.problem.eval_test_samples
  chunk = max(c for c in range(1, min(eval_k, 100) + 1) if eval_k % c == 0)

  def sample_loss(p, sample, key):
    binarize_key, noise_key = jax.random.split(key)
    binary = vae_lib.binarize(binarize_key, sample)
    return -vae_lib.iwae_bound(merge(p), binary, noise_key, k)

  def binarized_test(problem, count):
    images = problem.test_samples[:count]
    return vae_lib.binarize(jax.random.fold_in(problem.objective_key, 1), images)

  def metrics_fn(p, problem):
    images = binarized_test(problem, ELBO_TEST_SAMPLES)
    elbo = vae_lib.elbo(merge(p), images, jax.random.fold_in(problem.objective_key, 2))
    return dict(test_elbo=jnp.mean(elbo))

  def final_fn(p, problem):
    images = binarized_test(problem, eval_images)
    key = jax.random.fold_in(problem.objective_key, 3)
    keys = jax.random.split(key, images.shape[0])  # each image its own importance samples
    bound = jax.lax.map(
        lambda args: vae_lib.log_likelihood_estimate(merge(p), args[0], args[1], eval_k, chunk),
        (images, keys), batch_size=10)
    subset_elbo = vae_lib.elbo(merge(p), images, jax.random.fold_in(problem.objective_key, 2))
    elbo = vae_lib.elbo(merge(p), binarized_test(problem, len(problem.test_samples)),
                        jax.random.fold_in(problem.objective_key, 2))
    # test_log_likelihood and test_log_likelihood_elbo: the same images, the same binarization.
    return dict(test_log_likelihood=jnp.mean(bound), test_log_likelihood_elbo=jnp.mean(subset_elbo),
                test_elbo_full=jnp.mean(elbo),
                test_log_likelihood_images=jnp.asarray(images.shape[0], elbo.dtype),
                test_log_likelihood_k=jnp.asarray(eval_k, elbo.dtype))

  return NoisyFiniteSum(jnp.asarray(x, dtype), jnp.asarray(x_test, dtype), params,
                        jnp.asarray(config.problem.l2, dtype),
                        jax.random.PRNGKey(config.model.seed + 2), sample_loss, metrics_fn,
                        final_fn, objective_samples=min(len(x), 10_000))


DEQUANTIZE = Option("dequantize_levels", int, None,
                    "gmm, flow: intensities k/levels get uniform noise (digits: 16)", _count)
PATIENCE = Option("patience", int, 0,
                  "gmm, flow: with a validation set, stop once this many log points in a row "
                  "bring no better validation NLL (0: never)",
                  lambda v: None if 0 <= v <= 1_000_000 else "must be in [0, 1,000,000]")
VALIDATION = Option("validation_fraction", float, 0.0,
                    "gmm, flow: share of the training set held out; the run reports the iterate "
                    "of the best validation NLL", lambda v: None if 0 <= v < 1 else "must be in [0, 1)")
LATENT_SIZE = Option("latent_size", int, 2, "pushforward, vae: latent dimension", _count)

register_model(ModelSpec(
    name="gmm", build=functools.partial(build_density, make_model=_gmm), losses=("nll",),
    summary="Gaussian mixture (Cholesky-factored precisions), fitted by MLE (17.4.1)",
    options=(Option("num_components", int, 8, "gmm: mixture components", _count),),
    problem_options=(DEQUANTIZE, VALIDATION, PATIENCE), check=check_density))
register_model(ModelSpec(
    name="flow", build=functools.partial(build_density, make_model=_flow), losses=("nll",),
    uses=("hidden", "activation"),
    summary="coupling flow, rational-quadratic splines (or RealNVP's affine maps), MLE (17.4.1)",
    options=(Option("num_layers", int, 6, "flow: coupling layers", _count),
             Option("transform", str, "spline",
                    "flow: the couplings' map, spline (Neural Spline Flows) or affine (RealNVP)",
                    one_of(TRANSFORMS)),
             Option("mixing", str, "lu", "flow: between couplings, an LU-factored linear map "
                    "(lu), a fixed permutation (permute), or nothing (alternate)",
                    one_of(MIXINGS)),
             Option("num_bins", int, 8, "flow (spline): bins of each spline",
                    lambda v: None if 2 <= v <= 512 else "must be in [2, 512]"),
             Option("tail_bound", float, 3.0, "flow (spline): the splines act on [-B, B] of the "
                    "standardized data, the identity outside",
                    lambda v: None if 0 < v <= 100 else "must be in (0, 100] (standard deviations)")),
    variant_keys={"transform": {"spline": ("num_bins", "tail_bound")}},
    upgrade=_upgrade_flow,
    problem_options=(DEQUANTIZE, VALIDATION, PATIENCE), check=check_density))
register_model(ModelSpec(
    name="pushforward", build=build_pushforward, losses=tuple(PARAMETERS), finite_sum=False,
    uses=("hidden", "activation"),
    loss_keys={loss: (key, *SOLVER_KEYS[loss]) for loss, key in PARAMETERS.items()},
    check=check_pushforward,
    summary="MLP generator from an N(0, I) latent, fitted by a minibatch divergence (17.4.1)",
    options=(LATENT_SIZE,),
    problem_options=(
        Option("epsilon", float, None, "sinkhorn: entropic regularization (required)", _positive),
        Option("rho", float, None, "sinkhorn: unbalanced transport, KL penalty rho on the "
               "marginals in epsilon's units (reach about sqrt(rho)); unset: balanced", _positive),
        Option("epsilon_start", float, None, "sinkhorn: epsilon scaling within each solve, from "
               "this epsilon down to problem.epsilon; unset: none", _positive),
        Option("epsilon_decay", float, 0.8, "sinkhorn: factor per iteration of that scaling",
               lambda v: None if 0 < v < 1 else "must be in (0, 1)"),
        Option("sinkhorn_iterations", int, 2000, "sinkhorn: most iterations of each solve",
               _count),
        Option("sinkhorn_threshold", float, 1e-3, "sinkhorn: stop a solve once the marginals' "
               "L1 error is below this (0: always run sinkhorn_iterations)",
               lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
        Option("sinkhorn_momentum", float, None, "sinkhorn: over-relaxation of the data-generator "
               "solve's updates; unset: none",
               lambda v: None if 0 < v < 2 else "must be in (0, 2)"),
        Option("bandwidth", float, None,
               f"mmd: narrowest of {MMD_SCALES} Gaussian kernel widths h 2^k (required)",
               _positive))))
register_model(ModelSpec(
    name="autoencoder", build=build_autoencoder, losses=("squared",),
    uses=("hidden", "activation"),
    summary="encoder and decoder MLPs (model.hidden; () is linear), squared error (17.4.2)",
    options=(Option("code_size", int, 8, "autoencoder: code dimension", _count),)))
register_model(ModelSpec(
    name="vae", build=build_vae, losses=("elbo", "iwae"), uses=("hidden",),
    loss_keys={"iwae": ("num_importance_samples",)},
    summary="variational auto-encoder, Bernoulli pixels, reparameterized bound (17.4.2)",
    options=(LATENT_SIZE,),
    problem_options=(
        Option("num_importance_samples", int, 5, "iwae: samples k of the training bound", _count),
        Option("eval_importance_samples", int, 5000, "vae: k of the final test log-likelihood",
               _count),
        Option("eval_test_samples", int, 500, "vae: test images of that estimate", _count))))
