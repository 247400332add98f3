"""Training throughput of the digits MLP: our minibatch SGD against a plain PyTorch CPU loop."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound.benchmarks.timing import median_seconds, timed, versions, write_results
from deepfound.experiment import build
from deepfound.optim import driver

STEPS = 20_000
BATCH = 32


def ours(config: ml_collections.ConfigDict, seeds: int = 1, steps: int = STEPS) -> float:
  """Samples per second of minibatch SGD on the digits MLP of ``config`` (compilation
  excluded)."""
  problem = build.build_problem(config)
  method = driver.Method("sgd", batch_size=BATCH)
  hyper = driver.hyperparameters(0.05)
  run = functools.partial(driver.run, problem, method, hyper, num_steps=steps, log_every=steps)
  if seeds == 1:
    seconds = median_seconds(lambda: run(jax.random.PRNGKey(0))[1].objective, repeats=5)
  else:
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds))
    batched = jax.jit(jax.vmap(lambda k: run(k)[1].objective))
    seconds = median_seconds(lambda: batched(keys), repeats=5)
  return seeds * steps * BATCH / seconds


def torch_loop(config: ml_collections.ConfigDict) -> tuple[float, int]:
  """(samples per second, threads) of the same architecture, batch and step count as a plain
  PyTorch loop on the CPU."""
  import torch

  problem = build.build_problem(config)
  x = torch.tensor(np.asarray(problem.features), dtype=torch.float32)
  y = torch.tensor(np.asarray(problem.targets), dtype=torch.long)
  torch.manual_seed(0)
  model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
  optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
  loss_fn = torch.nn.CrossEntropyLoss()
  indices = torch.randint(0, len(y), (STEPS, BATCH))

  def train():
    for step in range(STEPS):
      batch = indices[step]
      optimizer.zero_grad(set_to_none=True)
      loss_fn(model(x[batch]), y[batch]).backward()
      optimizer.step()

  train()  # warm-up
  times, _ = timed(train, 3)
  return STEPS * BATCH / float(np.median(times)), torch.get_num_threads()


def run_benchmark(out: str, command: str, config: ml_collections.ConfigDict) -> dict:
  """``config``: the digits MLP experiment (``configs/mlp_digits.py:sgd``)."""
  torch_rate, threads = torch_loop(config)
  found = versions("torch", "jax")
  results = dict(
      command=command, steps=STEPS, batch=BATCH, ours_samples_per_second=ours(config),
      ours_8_seeds_samples_per_second=ours(config, 8), torch_samples_per_second=torch_rate,
      torch_version=found["torch"], torch_threads=threads, jax_version=found["jax"],
  )
  results["ratio"] = results["ours_samples_per_second"] / torch_rate
  results["ratio_8_seeds"] = results["ours_8_seeds_samples_per_second"] / torch_rate
  write_results(out, "nets", results, markdown(results))
  return results


def markdown(results: dict) -> str:
  return "\n".join([
      "# Training throughput: MLP 64-128-10 (relu) on digits, minibatch SGD, batch 32",
      "",
      f"Command: `{results['command']}`. {results['steps']:,} steps, medians of repeated runs, "
      f"compilation and warm-up excluded; PyTorch {results['torch_version']} on "
      f"{results['torch_threads']} threads, jax {results['jax_version']}.",
      "",
      "| what | samples per second | ratio to PyTorch (target >= 1.0) |",
      "|---|---|---|",
      f"| PyTorch CPU loop | {results['torch_samples_per_second']:,.0f} | 1.00 |",
      f"| deepfound, one run | {results['ours_samples_per_second']:,.0f} | "
      f"{results['ratio']:.2f} |",
      f"| deepfound, 8 seeds vmapped in one program | "
      f"{results['ours_8_seeds_samples_per_second']:,.0f} | {results['ratio_8_seeds']:.2f} |",
      "",
  ])
