"""The chapter's cost claims, measured: reverse vs forward mode, and checkpointing a chain."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.autodiff import checkpointing, forward_gradient, reverse_gradient
from deepfound.autodiff.flops import flops
from deepfound.benchmarks.timing import machine, median_seconds, write_results
from deepfound.figures import io

HIDDEN = 64
WIDTH = 32  # d of the checkpointed chain


def mode_costs(inputs: int) -> dict:
  """f(x) = sum(tanh(W2 tanh(W1 x))), x in R^M: flops and time of f, reverse and forward mode."""
  rng = np.random.default_rng(0)
  w1 = jnp.asarray(rng.normal(size=(HIDDEN, inputs)) / np.sqrt(inputs), jnp.float32)
  w2 = jnp.asarray(rng.normal(size=(HIDDEN, HIDDEN)) / np.sqrt(HIDDEN), jnp.float32)
  x = jnp.asarray(rng.normal(size=inputs), jnp.float32)

  # Weights are arguments, not closure constants: XLA would fold constant products away.
  def f(v, a, b):
    return jnp.sum(jnp.tanh(b @ jnp.tanh(a @ v)))

  def reverse(v, a, b):
    return reverse_gradient(lambda u: f(u, a, b), v)

  def forward(v, a, b):
    return forward_gradient(lambda u: f(u, a, b), v)

  functions = dict(f=f, reverse=reverse, forward=forward, jax_grad=jax.grad(f))
  row = dict(inputs=inputs)
  for name, fn in functions.items():
    row[f"{name}_flops"] = flops(fn, x, w1, w2)
    compiled = jax.jit(fn)
    row[f"{name}_seconds"] = median_seconds(lambda c=compiled: c(x, w1, w2), repeats=21)
  want = jax.grad(f)(x, w1, w2)
  row["reverse_error"] = float(jnp.max(jnp.abs(reverse(x, w1, w2) - want)))
  row["forward_error"] = float(jnp.max(jnp.abs(forward(x, w1, w2) - want)))
  return row


def checkpoint_costs(num_layers: int) -> dict:
  rng = np.random.default_rng(0)
  weights = jnp.asarray(rng.normal(size=(num_layers, WIDTH, WIDTH)) / np.sqrt(WIDTH), jnp.float32)
  x = jnp.asarray(rng.normal(size=WIDTH), jnp.float32)
  base = flops(lambda w, v: checkpointing.chain_loss(w, v), weights, x)
  plain = checkpointing.input_gradient("none")(weights, x)
  row = dict(layers=num_layers, loss_flops=base)
  for scheme in checkpointing.SCHEMES:
    gradient = checkpointing.input_gradient(scheme)
    compiled = jax.jit(gradient)
    row[scheme] = dict(
        temp_bytes=checkpointing.temp_bytes(scheme, weights, x),
        flops_over_loss=flops(gradient, weights, x) / base,
        seconds=median_seconds(lambda c=compiled: c(weights, x), repeats=21),
        max_difference_to_plain=float(jnp.max(jnp.abs(compiled(weights, x) - plain))),
    )
  return row


def run_benchmark(out: str, command: str) -> dict:
  modes = [mode_costs(m) for m in (16, 64, 256, 1024)]
  chains = [checkpoint_costs(length) for length in (16, 64, 256, 1024)]
  results = dict(command=command, **machine("backend"), hidden=HIDDEN, width=WIDTH, modes=modes,
                 checkpointing=chains)
  write_results(out, "autodiff", results, markdown(results))
  _figure(results, out)
  return results


def _figure(results: dict, out: str) -> None:
  import matplotlib.pyplot as plt

  layers = [row["layers"] for row in results["checkpointing"]]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
  series = []
  for scheme in checkpointing.SCHEMES:
    memory = [row[scheme]["temp_bytes"] / 1024 for row in results["checkpointing"]]
    seconds = [row[scheme]["seconds"] * 1e3 for row in results["checkpointing"]]
    axes[0].loglog(layers, memory, "o-", label=scheme)
    axes[1].loglog(layers, seconds, "o-", label=scheme)
    series += [io.series(f"{scheme} temp KiB", layers, memory),
               io.series(f"{scheme} ms", layers, seconds)]
  axes[0].set(xlabel="layers L", ylabel="peak temporary memory (KiB)",
              title="gradient of a tanh chain, d = 32")
  axes[1].set(xlabel="layers L", ylabel="time of the gradient (ms)")
  inputs = [row["inputs"] for row in results["modes"]]
  for name in ("reverse", "forward", "jax_grad"):
    ratio = [row[f"{name}_flops"] / row["f_flops"] for row in results["modes"]]
    axes[2].loglog(inputs, ratio, "o-", label=name)
    series.append(io.series(f"{name} flops / f flops", inputs, ratio))
  axes[2].loglog(inputs, inputs, "k:", label="M")
  axes[2].set(xlabel="inputs M", ylabel="flops / flops of f", title="f: R^M -> R, 2-layer tanh")
  for ax in axes:
    ax.legend()
  fig.suptitle("Section 17.2: reverse mode costs a constant times f, forward mode M times; "
               "checkpointing trades flops for memory")
  io.save(fig, "autodiff", out, dict(series=series))


def markdown(results: dict) -> str:
  lines = [
      "# Automatic differentiation: costs (section 17.2)",
      "",
      f"Command: `{results['command']}` (backend {results['backend']}). Flops are counted on the "
      "jaxpr (scan bodies times their length; 2 per multiply-add); times are medians of 21 runs "
      "of the jitted function.",
      "",
      f"## Reverse and forward mode, f(x) = sum(tanh(W2 tanh(W1 x))), x in R^M, {HIDDEN} hidden",
      "",
      "| M | f flops | reverse / f (target <= 3) | forward / f (target M .. M+4) | jax.grad / f "
      "| f us | reverse us | forward us | max error vs jax.grad |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results["modes"]:
    lines.append(
        f"| {r['inputs']} | {r['f_flops']:,.0f} | {r['reverse_flops'] / r['f_flops']:.3f} | "
        f"{r['forward_flops'] / r['f_flops']:.2f} | {r['jax_grad_flops'] / r['f_flops']:.3f} | "
        f"{r['f_seconds'] * 1e6:.1f} | {r['reverse_seconds'] * 1e6:.1f} | "
        f"{r['forward_seconds'] * 1e6:.1f} | "
        f"{max(r['reverse_error'], r['forward_error']):.1e} |")
  lines += [
      "",
      f"## Checkpointing the gradient of a chain of L tanh layers (d = {results['width']})",
      "",
      "Peak temporary memory from XLA's memory analysis of the compiled gradient; flops relative "
      "to one evaluation of the loss.",
      "",
      "| L | none: KiB | sqrt: KiB | recursive: KiB | none: flops/f | sqrt: flops/f | "
      "recursive: flops/f | log2(L) | none ms | sqrt ms | recursive ms |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results["checkpointing"]:
    cells = [f"{r[s]['temp_bytes'] / 1024:.1f}" for s in checkpointing.SCHEMES]
    cells += [f"{r[s]['flops_over_loss']:.2f}" for s in checkpointing.SCHEMES]
    cells.append(f"{math.log2(r['layers']):.0f}")
    cells += [f"{r[s]['seconds'] * 1e3:.2f}" for s in checkpointing.SCHEMES]
    lines.append(f"| {r['layers']} | " + " | ".join(cells) + " |")
  first, last = results["checkpointing"][0], results["checkpointing"][-1]
  growth = ", ".join(f"{s} x{last[s]['temp_bytes'] / first[s]['temp_bytes']:.2f}"
                     for s in checkpointing.SCHEMES)
  difference = max(row[s]["max_difference_to_plain"] for row in results["checkpointing"]
                   for s in checkpointing.SCHEMES)
  lines += ["", f"Memory growth from L = 16 to L = 1024: {growth} (target for recursive: <= 3). "
            f"Every scheme gives the plain gradient: max difference {difference:.1e}.", ""]
  return "\n".join(lines)
