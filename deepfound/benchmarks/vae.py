"""Training throughput of the VAE (and the IWAE, k = 5): our adam loop against a plain PyTorch CPU loop.

"Ours" is the real training loop of ``configs/vae_mnist.py``: the problem ``build_vae`` makes, run by
the registered ``adam`` rule through ``driver.run_chunk_jit`` (one compiled ``lax.scan`` per block of
steps, pages of batches drawn ahead), batch 100. The data are random intensities in [0, 1] of MNIST's
shape (60,000 x 784): the cost of a step does not depend on them. A block of ``steps`` steps ends in
one log point; its objective and metrics are cut down to one batch (``objective_samples``, no test
ELBO) so that a block times training steps, not evaluation.

PyTorch runs the same model (784-200-200-2x50 tanh encoder, 50-200-200-784 tanh decoder, Glorot
uniform weights, zero biases), the same bound (``log_weights`` of ``deepfound.models.vae``: Bernoulli
log-likelihood as minus the summed BCE-with-logits, one reparameterized z per importance sample,
log p(z) - log q(z | x) = (1/2) sum [eps^2 + v - z^2]), dynamic binarization with ``torch.bernoulli``,
a batch of 100 indices drawn uniformly each step and ``torch.optim.Adam(lr=1e-3)``, in float32, as
a plain eager loop. ``loss_parity`` checks that the two compute the same loss and gradient on the same
weights, binary pixels and noise.

Blocks of the two alternate (ours, torch, ours, torch, ...) so that background load on a shared
machine hits both alike; rates are medians over the repeats, with their min-max spread.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.benchmarks.timing import (
    format_load,
    interleaved,
    load_average,
    ratio_per_round,
    schedulable_cores,
    spread,
    torch_record,
    warm_up,
    write_results,
)
from deepfound.data import Dataset
from deepfound.experiment.generative import build_vae
from deepfound.models import vae as vae_lib
from deepfound.optim import driver

BATCH = 100
LEARNING_RATE = 1e-3
NUM_SAMPLES, DATA_DIM = 60_000, 784  # MNIST's training set
NUM_TEST = 1_000
STEPS = 200  # steps per timed block (the page of batches the driver draws ahead at log_every 600)
REPEATS = 7
IMPORTANCE_SAMPLES = (1, 5)  # k = 1: the VAE (ELBO); k = 5: the IWAE


def synthetic_dataset(num_samples: int = NUM_SAMPLES, data_dim: int = DATA_DIM,
                      num_test: int = NUM_TEST, seed: int = 0) -> Dataset:
  """Random intensities in [0, 1), float32, with a test split of ``num_test`` rows (labels zero)."""
  rng = np.random.default_rng(seed)
  x = rng.random((num_samples, data_dim), dtype=np.float32)
  x_test = rng.random((num_test, data_dim), dtype=np.float32)
  return Dataset(x, np.zeros(num_samples, np.int32), test=(x_test, np.zeros(num_test, np.int32)))


def _no_metrics(params, problem) -> dict[str, jax.Array]:
  del params, problem
  return {}


def vae_config(config: ml_collections.ConfigDict, num_importance_samples: int
               ) -> ml_collections.ConfigDict:
  """``config`` (``configs/vae_mnist.py``) with the loss of k importance samples (1: the ELBO)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.problem.loss = "elbo" if num_importance_samples == 1 else "iwae"
  config.problem.num_importance_samples = num_importance_samples
  config.optim.batch_size = BATCH
  return config


def build_problem(config: ml_collections.ConfigDict, dataset: Dataset, num_importance_samples: int):
  """The ``NoisyFiniteSum`` of ``build_vae``, its log-point objective cut to one batch, no metrics."""
  problem = build_vae(vae_config(config, num_importance_samples), dataset)
  return dataclasses.replace(problem, objective_samples=BATCH, metrics_fn=_no_metrics)


class OursLoop:
  """Blocks of ``steps`` adam steps of our driver, each block one call of the compiled chunk; the
  state carries over, so consecutive blocks are one training run."""

  def __init__(self, problem, steps: int, seed: int = 0):
    self.problem, self.steps = problem, steps
    self.method = driver.Method("adam", batch_size=BATCH)
    self.hyper = driver.hyperparameters(LEARNING_RATE)
    self.state = driver.init_state(problem, self.method, self.hyper, jax.random.PRNGKey(seed))
    self.last_objective = float("nan")

  def block(self) -> float:
    """Runs one block; returns its wall time in seconds (outputs blocked on)."""
    start = time.perf_counter()
    self.state, log = driver.run_chunk_jit(self.problem, self.method, self.hyper, self.state,
                                           num_logs=1, log_every=self.steps)
    jax.block_until_ready((self.state.params, log.objective))
    seconds = time.perf_counter() - start
    self.last_objective = float(log.objective[-1])
    return seconds


def torch_vae(data_dim: int, hidden: tuple[int, ...], latent_size: int, seed: int = 0):
  """The PyTorch twin of ``deepfound.models.vae.VAE``: ``(encoder, decoder)`` Sequentials, Glorot
  uniform weights and zero biases (as ours)."""
  import torch

  torch.manual_seed(seed)

  def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
      linear = torch.nn.Linear(a, b)
      torch.nn.init.xavier_uniform_(linear.weight)
      torch.nn.init.zeros_(linear.bias)
      layers.append(linear)
      if i < len(sizes) - 2:
        layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)

  return (mlp([data_dim, *hidden, 2 * latent_size]), mlp([latent_size, *reversed(hidden), data_dim]))


def torch_bound(encoder, decoder, x, eps):
  """log (1/k) sum_j w_j per sample, for binary ``x`` (b, d) and noise ``eps`` (k, b, m): the bound
  of ``deepfound.models.vae.iwae_bound`` (k = 1: the one-sample ELBO)."""
  import torch
  import torch.nn.functional as F

  latent = eps.shape[-1]
  out = encoder(x)
  mean, log_var = out[..., :latent], out[..., latent:]
  z = mean + torch.exp(0.5 * log_var) * eps
  logits = decoder(z)
  log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
  log_weights = log_px + 0.5 * (eps.square() + log_var - z.square()).sum(-1)
  return torch.logsumexp(log_weights, dim=0) - math.log(eps.shape[0])


class TorchLoop:
  """Blocks of ``steps`` steps of a plain PyTorch loop (eager, or ``torch.compile``d loss)."""

  def __init__(self, features: np.ndarray, hidden: tuple[int, ...], latent_size: int,
               num_importance_samples: int, steps: int, compile_loss: bool = False, seed: int = 0):
    import torch

    self.torch, self.steps, self.k, self.latent = torch, steps, num_importance_samples, latent_size
    self.data = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    self.encoder, self.decoder = torch_vae(features.shape[1], hidden, latent_size, seed)
    parameters = [*self.encoder.parameters(), *self.decoder.parameters()]
    self.optimizer = torch.optim.Adam(parameters, lr=LEARNING_RATE)
    self.generator = torch.Generator().manual_seed(seed)

    def loss(x, eps):
      return -torch_bound(self.encoder, self.decoder, x, eps).mean()

    self.loss = torch.compile(loss) if compile_loss else loss
    self.last_loss = float("nan")

  def step(self):
    torch = self.torch
    index = torch.randint(0, self.data.shape[0], (BATCH,), generator=self.generator)
    x = torch.bernoulli(self.data[index], generator=self.generator)
    eps = torch.randn(self.k, BATCH, self.latent, generator=self.generator)
    loss = self.loss(x, eps)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return loss

  def block(self) -> float:
    start = time.perf_counter()
    for _ in range(self.steps):
      loss = self.step()
    seconds = time.perf_counter() - start
    self.last_loss = float(loss.detach())
    return seconds


def loss_parity(config: ml_collections.ConfigDict, num_importance_samples: int = 1,
                batch: int = 8, seed: int = 0) -> dict[str, float]:
  """Our training loss and its gradient against PyTorch's on the same weights, binary pixels and
  noise: {"loss_ours", "loss_torch", "loss_abs_diff", "grad_rel_diff"} (the largest relative
  difference of a parameter's gradient, in the Frobenius norm)."""
  import torch
  from flax import nnx

  hidden, latent = tuple(config.model.hidden), config.model.latent_size
  model = vae_lib.VAE(DATA_DIM, hidden, latent, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model, nnx.Param)
  rng = np.random.default_rng(seed)
  x = (rng.random((batch, DATA_DIM)) < 0.5).astype(np.float32)
  eps = rng.standard_normal((num_importance_samples, batch, latent)).astype(np.float32)

  def ours(p):
    lw = vae_lib.log_weights(nnx.merge(graphdef, p), jnp.asarray(x), jnp.asarray(eps))
    return -jnp.mean(jax.nn.logsumexp(lw, axis=0) - math.log(num_importance_samples))

  loss, grads = jax.value_and_grad(ours)(params)
  encoder, decoder = torch_vae(DATA_DIM, hidden, latent, seed)
  pairs = []  # (torch Linear, our layer's kernel and bias gradients)
  for ours_mlp, theirs, ours_grads in ((model.encoder, encoder, grads["encoder"]),
                                       (model.decoder, decoder, grads["decoder"])):
    linears = [m for m in theirs if isinstance(m, torch.nn.Linear)]
    for i, (layer, linear) in enumerate(zip(ours_mlp.layers, linears, strict=True)):
      with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.array(layer.kernel[...]).T))
        linear.bias.copy_(torch.from_numpy(np.array(layer.bias[...])))
      pairs.append((linear, ours_grads["layers"][i]))
  torch_loss = -torch_bound(encoder, decoder, torch.from_numpy(x), torch.from_numpy(eps)).mean()
  torch_loss.backward()
  worst = 0.0
  for linear, g in pairs:
    for theirs, mine in ((linear.weight.grad.numpy().T, g["kernel"][...]),
                         (linear.bias.grad.numpy(), g["bias"][...])):
      mine = np.asarray(mine)
      worst = max(worst, float(np.linalg.norm(theirs - mine) / max(np.linalg.norm(mine), 1e-30)))
  theirs_loss = float(torch_loss.detach())
  return dict(loss_ours=float(loss), loss_torch=theirs_loss,
              loss_abs_diff=abs(float(loss) - theirs_loss), grad_rel_diff=worst)


def _summary(seconds: list[float], steps: int) -> dict[str, Any]:
  return spread([steps * BATCH / s for s in seconds], "samples_per_second")


def run_benchmark(out: str, command: str, config: ml_collections.ConfigDict, steps: int = STEPS,
                  repeats: int = REPEATS, importance_samples: tuple[int, ...] = IMPORTANCE_SAMPLES,
                  torch_compile: bool = False, num_samples: int = NUM_SAMPLES,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
  """``config``: the VAE experiment (``configs/vae_mnist.py``). Writes ``vae.json`` and ``vae.md``
  to ``out``; returns the results."""
  import torch

  load_start = load_average()
  threads = schedulable_cores()
  torch.set_num_threads(threads)
  dataset = synthetic_dataset(num_samples)
  hidden, latent = tuple(config.model.hidden), config.model.latent_size
  makers = {}
  for k in importance_samples:
    makers[f"ours_k{k}"] = lambda k=k: OursLoop(build_problem(config, dataset, k), steps)
    makers[f"torch_k{k}"] = lambda k=k: TorchLoop(dataset.features, hidden, latent, k, steps)
    if torch_compile:
      makers[f"torch_compile_k{k}"] = lambda k=k: TorchLoop(dataset.features, hidden, latent, k,
                                                            steps, compile_loss=True)

  def describe(name, seconds):
    impl, k = name.rsplit("_k", 1)
    return f"{impl} k={k}: warm-up block {seconds:.1f} s"

  # One block each: compilation (ours, torch.compile) and warm-up, untimed.
  loops, compile_seconds = warm_up(makers, lambda _, loop: loop.block(), log, describe,
                                   count_construction=False)
  seconds = interleaved({name: loop.block for name, loop in loops.items()}, repeats)
  parity = {f"k{k}": loss_parity(config, k) for k in importance_samples}
  load_end = load_average()

  variants = {}
  for k in importance_samples:
    variant = {impl: _summary(seconds[f"{impl}_k{k}"], steps)
               for impl in ("ours", "torch", "torch_compile") if f"{impl}_k{k}" in seconds}
    torch_rate = variant["torch"]["samples_per_second"]
    # Ratio per round too: ours and torch of one round ran back to back, under the same load.
    variant.update(ratio=variant["ours"]["samples_per_second"] / torch_rate,
                   ratio_per_round=ratio_per_round(variant["ours"]["repeats"],
                                                   variant["torch"]["repeats"]),
                   warmup_seconds={impl: compile_seconds[f"{impl}_k{k}"] for impl in variant},
                   final_loss=dict(ours=loops[f"ours_k{k}"].last_objective,
                                   torch=loops[f"torch_k{k}"].last_loss),
                   parity=parity[f"k{k}"])
    if "torch_compile" in variant:
      variant["ratio_to_torch_compile"] = (variant["ours"]["samples_per_second"]
                                           / variant["torch_compile"]["samples_per_second"])
    variants[f"k{k}"] = variant

  results = dict(
      command=command, steps_per_block=steps, repeats=repeats, batch=BATCH,
      num_samples=num_samples, data_dim=DATA_DIM, hidden=list(hidden), latent_size=latent,
      learning_rate=LEARNING_RATE, precision="float32", **torch_record(torch.get_num_threads()),
      loadavg_start=load_start, loadavg_end=load_end, variants=variants)
  write_results(out, "vae", results, markdown(results))
  return results


def _omp_note(policy: str | None) -> list[str]:
  if policy is None:
    return ["PyTorch's OpenMP threads wait with libgomp's default policy (active spinning).", ""]
  return [f"`OMP_WAIT_POLICY={policy}` for PyTorch's OpenMP threads: with libgomp's default (active "
          "spinning), PyTorch on 2 threads stalled on this shared machine (a separate probe: a "
          "100 x 784 x 200 matmul took 15-20 ms instead of 0.4 ms, a VAE step about 0.5 s).", ""]


def markdown(results: dict[str, Any]) -> str:
  names = dict(torch="PyTorch CPU loop (eager)", torch_compile="PyTorch, `torch.compile`d loss",
               ours="deepfound (adam driver, compiled scan)")
  rows = []
  for key, variant in results["variants"].items():
    k = int(key[1:])
    what = "VAE (ELBO, k = 1)" if k == 1 else f"IWAE (k = {k})"
    for impl in ("torch", "torch_compile", "ours"):
      if impl not in variant:
        continue
      rate = variant[impl]
      ratio = rate["samples_per_second"] / variant["torch"]["samples_per_second"]
      rows.append(f"| {what} | {names[impl]} | {rate['samples_per_second']:,.0f} | "
                  f"{rate['min']:,.0f} - {rate['max']:,.0f} | {ratio:.2f} |")
  parity = "; ".join(f"k = {key[1:]}: loss difference {v['parity']['loss_abs_diff']:.1e}, gradient "
                     f"relative difference {v['parity']['grad_rel_diff']:.1e}"
                     for key, v in results["variants"].items())
  rounds = "; ".join(f"k = {key[1:]}: {v['ratio_per_round']['median']:.2f} "
                     f"({v['ratio_per_round']['min']:.2f} - {v['ratio_per_round']['max']:.2f})"
                     for key, v in results["variants"].items())
  hidden = "-".join(str(h) for h in results["hidden"])
  return "\n".join([
      f"# Training throughput: VAE {results['data_dim']}-{hidden}-{results['latent_size']} (tanh), "
      f"adam, batch {results['batch']}",
      "",
      f"Command: `{results['command']}`. Samples per second of training steps (batch "
      f"{results['batch']}, float32, dynamic binarization, one reparameterized bound per step): "
      f"median over {results['repeats']} blocks of {results['steps_per_block']} steps each, with "
      "the min - max over the blocks; compilation and a warm-up block excluded. Blocks of ours and "
      "PyTorch alternate, so background load hits both alike. Data: random intensities of MNIST's "
      f"shape ({results['num_samples']:,} x {results['data_dim']}).",
      "",
      f"jax {results['jax_version']} ({results['jax_backend']}; XLA's intra-op pool has one thread "
      f"per schedulable core: {results['cpu_cores']}), PyTorch {results['torch_version']} on "
      f"{results['torch_threads']} threads (`torch.set_num_threads`). Load average (1 / 5 / 15 "
      f"min) at start {format_load(results['loadavg_start'])}, at end {format_load(results['loadavg_end'])} "
      "(a shared machine).",
      "",
      *_omp_note(results.get("omp_wait_policy")),
      "| model | what | samples per second (median) | min - max | ratio to PyTorch eager |",
      "|---|---|---|---|---|",
      *rows,
      "",
      f"Ratio ours / PyTorch within each round (median, min - max): {rounds}.",
      "",
      "Ours is the real training loop: `driver.run_chunk_jit` with the registered `adam` rule on the "
      "problem `build_vae` makes, one log point per block with its objective cut to one batch. "
      f"Same model and loss, checked on shared weights, pixels and noise: {parity}.",
      "",
  ])
