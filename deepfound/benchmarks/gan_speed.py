"""Training throughput of the digits GAN: our compiled game loop against a plain PyTorch CPU loop.

"Ours" is the real training loop of ``configs/gan_digits.py``: the ``GAN`` problem that
``build.build`` makes (generator 16-256-256-64, relu, sigmoid intensities; discriminator
64-256-256-1, relu; the non-saturating JS losses), run by ``game.run_chunk_jit`` under the
alternating scheme (one discriminator step, then one generator step against the updated
discriminator, each on a fresh minibatch of 64 digits and 64 latents drawn on the device), both
players stepped by the registered ``adam`` rule (2e-4, b1 = 0.5, b2 = 0.999). One call of the
compiled chunk runs a block of steps in one ``lax.scan`` and ends in one log point, which evaluates
V, both losses and gradient norms on 512 held-out digits and labels 10,000 generated images with
the classifier: that log point is not a training step, so ours is timed by its marginal cost,
(time of a 3 S-step block - time of an S-step block) / 2 S, and the log point alone is timed
apart (``initial_log_point``, compiled on its own).

PyTorch runs the same two MLPs (``torch.nn.Linear``, started from our initial weights), the same
losses (``F.softplus``), the same batch and scheme: per step, 64 indices drawn with
``torch.randint`` into the 1,348 training digits (``problem.samples``) and 64 latents with
``torch.randn``, a discriminator step (the generator's samples made under ``torch.no_grad``), then
64 fresh latents and a generator step with the discriminator's parameters frozen
(``requires_grad_(False)``, the usual idiom, so that no discriminator weight gradients are
computed; ours differentiates the generator's loss in the generator's parameters only), each with
its own ``torch.optim.Adam`` of the same settings (its CPU default, the per-tensor loop), in
float32; as a plain eager loop and with both losses ``torch.compile``d, each on as many threads as
there are cores and on one thread (``torch.set_num_threads`` before every block). The generator's
loss reads no data: our step draws
a data minibatch for it as well (``GAN.draw``), which XLA drops as unused; the PyTorch loop does
not draw it. PyTorch is timed the same way as ours (marginal cost of 3 S - S steps), though it has
no per-block cost to remove. ``loss_parity`` checks that both compute the same losses and gradients
on the same weights and batch; ``step_parity`` that one whole alternating step (both players' adam
updates, on the very minibatches our step draws) moves the weights alike.

Blocks alternate (ours S, ours 3 S, torch S, torch 3 S, ...) so that background load on a shared
machine hits both alike; rates are medians over the rounds, with their min-max spread. PyTorch's
OpenMP threads wait passively (``OMP_WAIT_POLICY=passive``, set by the script): spinning ones would
take a core from ours' blocks in the same process. What PyTorch gets with spinning threads is
measured apart (``spin_probe``): the eager loop alone in a subprocess with ``OMP_WAIT_POLICY=active``,
after the interleaved rounds, not interleaved with ours.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
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
from deepfound.experiment import build, precision_scope, validate
from deepfound.optim import game

STEPS = 500  # S: the short block; the long block is 3 S
REPEATS = 7


def build_setup(config: ml_collections.ConfigDict):
  """``build.build(config)`` (``configs/gan_digits.py``): ``problem`` (a ``GAN``), ``method`` (a
  ``GameMethod``) and ``hyper`` (a ``GameHyper``), after checking that the config is the game this
  benchmark mirrors in PyTorch."""
  validate(config)
  if config.model.name != "gan" or config.problem.loss != "js" or config.problem.pack != 1:
    raise ValueError("the PyTorch twin covers model.name=gan with problem.loss=js and pack=1")
  if config.optim.scheme != "alternating" or config.model.activation != "relu":
    raise ValueError("the PyTorch twin covers optim.scheme=alternating with relu networks")
  for player in game.PLAYERS:
    if config.optim[player].name != "adam" or config.optim[player].schedule != "constant":
      raise ValueError(f"the PyTorch twin covers a constant-rate adam {player}")
  with precision_scope(config.precision):
    return build.build(config)


def _adam_settings(config, player: str) -> dict[str, Any]:
  group = config.optim[player]
  return dict(lr=float(group.learning_rate), betas=(float(group.b1), float(group.b2)))


def layer_arrays(params) -> list[tuple[np.ndarray, np.ndarray]]:
  """(kernel (in, out), bias) of each ``nnx.Linear`` of one player's parameters (an ``nnx.State``
  of ``deepfound.models.MLP``), in order."""
  layers = params["layers"]
  return [(np.array(layers[i]["kernel"][...]), np.array(layers[i]["bias"][...]))
          for i in range(len(layers))]


def torch_mlp(layers: list[tuple[np.ndarray, np.ndarray]], sigmoid_output: bool = False):
  """A ``torch.nn.Sequential`` of Linear layers with relu between them (and a final sigmoid),
  holding the given weights: our kernel (in, out) is PyTorch's weight (out, in) transposed."""
  import torch

  modules = []
  for i, (kernel, bias) in enumerate(layers):
    linear = torch.nn.Linear(*kernel.shape)
    with torch.no_grad():
      linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T, np.float32)))
      linear.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))
    modules.append(linear)
    if i < len(layers) - 1:
      modules.append(torch.nn.ReLU())
  if sigmoid_output:
    modules.append(torch.nn.Sigmoid())
  return torch.nn.Sequential(*modules)


def torch_players(params):
  """(generator, discriminator) as PyTorch modules holding ``params`` = (ours, ours); the
  generator ends in a sigmoid, as ``build_gan``'s does for images."""
  return torch_mlp(layer_arrays(params[0]), sigmoid_output=True), torch_mlp(layer_arrays(params[1]))


def torch_discriminator_loss(discriminator, real, fake):
  """-V of the JS GAN, as ``js_discriminator_loss``: mean softplus(-D(real)) + mean softplus(D(fake))."""
  import torch.nn.functional as F

  return (F.softplus(-discriminator(real)[:, 0]).mean()
          + F.softplus(discriminator(fake)[:, 0]).mean())


def torch_generator_loss(discriminator, fake):
  """The non-saturating generator loss, as ``js_generator_loss``: mean softplus(-D(fake))."""
  import torch.nn.functional as F

  return F.softplus(-discriminator(fake)[:, 0]).mean()


class OursLoop:
  """Our game loop: blocks of S or 3 S steps, each one call of the compiled chunk
  (``game.run_chunk_jit``, one program per block length, ending in one log point), and the log
  point alone (``game.initial_log_point``); the state carries over, so consecutive blocks are one
  training run. The first call of each compiles it (jit's cache keeps the programs)."""

  def __init__(self, setup, steps: int, seed: int = 0):
    self.problem, self.method, self.hyper = setup.problem, setup.method, setup.hyper
    self.steps = steps
    self.state = game.init_state(self.problem, self.method, self.hyper, jax.random.PRNGKey(seed))
    self.last_losses = (float("nan"), float("nan"))

  def block(self, n: int) -> float:
    """Runs ``n`` (S or 3 S) steps and their log point; returns the wall time in seconds."""
    start = time.perf_counter()
    self.state, points = game.run_chunk_jit(self.problem, self.method, self.hyper, self.state,
                                            num_logs=1, log_every=n)
    jax.block_until_ready((self.state.params, points))
    seconds = time.perf_counter() - start
    self.last_losses = (float(points.extras["discriminator_loss"][-1]),
                        float(points.extras["generator_loss"][-1]))
    return seconds

  def log_point_block(self) -> float:
    """The log point alone (metrics on held-out digits, 10,000 classified images), in seconds."""
    start = time.perf_counter()
    jax.block_until_ready(game.initial_log_point(self.problem, self.method, self.hyper,
                                                 self.state))
    return time.perf_counter() - start


class TorchLoop:
  """A plain PyTorch loop of the same game: blocks of n alternating steps (eager, or with both
  losses ``torch.compile``d), on ``threads`` threads (set before every block; None: as found)."""

  def __init__(self, samples: np.ndarray, players: tuple[list, list], batch: int, latent: int,
               adam: dict[str, dict[str, Any]], discriminator_steps: int = 1,
               compile_losses: bool = False, threads: int | None = None, seed: int = 0):
    import torch

    self.torch, self.threads = torch, threads
    self.batch, self.latent, self.discriminator_steps = batch, latent, discriminator_steps
    self.data = torch.from_numpy(np.array(samples, np.float32))
    self.generator = torch_mlp(players[0], sigmoid_output=True)
    self.discriminator = torch_mlp(players[1])
    self.opt_g = torch.optim.Adam(self.generator.parameters(), **adam["generator"])
    self.opt_d = torch.optim.Adam(self.discriminator.parameters(), **adam["discriminator"])
    self.rng = torch.Generator().manual_seed(seed)

    def d_loss(real, z):
      with torch.no_grad():
        fake = self.generator(z)
      return torch_discriminator_loss(self.discriminator, real, fake)

    def g_loss(z):
      return torch_generator_loss(self.discriminator, self.generator(z))

    self.d_loss = torch.compile(d_loss) if compile_losses else d_loss
    self.g_loss = torch.compile(g_loss) if compile_losses else g_loss
    self.last_losses = (float("nan"), float("nan"))

  @classmethod
  def from_setup(cls, setup, config: ml_collections.ConfigDict, **kwargs) -> TorchLoop:
    """The loop of ``setup``'s game, from its initial weights, with ``config``'s adam settings."""
    return cls(np.asarray(setup.problem.samples), _players(setup), setup.method.batch_size,
               setup.problem.latent_size, _adam(config), setup.method.option("discriminator_steps"),
               **kwargs)

  def step(self):
    torch = self.torch
    for _ in range(self.discriminator_steps):
      index = torch.randint(0, self.data.shape[0], (self.batch,), generator=self.rng)
      z = torch.randn(self.batch, self.latent, generator=self.rng)
      loss_d = self.d_loss(self.data[index], z)
      self.opt_d.zero_grad(set_to_none=True)
      loss_d.backward()
      self.opt_d.step()
    z = torch.randn(self.batch, self.latent, generator=self.rng)
    self.discriminator.requires_grad_(False)
    loss_g = self.g_loss(z)
    self.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    self.opt_g.step()
    self.discriminator.requires_grad_(True)
    return loss_d, loss_g

  def block(self, n: int) -> float:
    if self.threads:
      self.torch.set_num_threads(self.threads)
    start = time.perf_counter()
    for _ in range(n):
      loss_d, loss_g = self.step()
    seconds = time.perf_counter() - start
    self.last_losses = (float(loss_d.detach()), float(loss_g.detach()))
    return seconds


def _players(setup) -> tuple[list, list]:
  return tuple(layer_arrays(p) for p in setup.problem.initial_params)


def _adam(config) -> dict[str, dict[str, Any]]:
  return {player: _adam_settings(config, player) for player in game.PLAYERS}


def _relative(theirs: np.ndarray, mine: np.ndarray) -> float:
  return float(np.linalg.norm(theirs - mine) / max(np.linalg.norm(mine), 1e-30))


_gradients = jax.jit(game.gradients)


@functools.partial(jax.jit, static_argnames="method")
def _one_step(problem, method, hyper, key):
  """One game step of ``game.make_step`` from the initial parameters and fresh adam states, and
  the minibatches it draws: (generator, discriminator, [draw 0, ..., draw k])."""
  optimizers = tuple(game.player_optimizer(m, h, method.scheme)[0]
                     for m, h in zip(method.players, hyper, strict=True))
  params = problem.initial_params
  opt_state = tuple(o.init(p) for o, p in zip(optimizers, params, strict=True))
  (theta, xi), _ = game.make_step(problem, method, optimizers)((params, opt_state), key)
  draws = [problem.draw(jax.random.fold_in(key, j), method.batch_size)
           for j in range(method.option("discriminator_steps") + 1)]
  return theta, xi, draws


def loss_parity(setup, batch: int = 64, seed: int = 0) -> dict[str, float]:
  """Both players' losses and gradients, ours (``game.gradients`` on ``GAN.losses``) against the
  PyTorch functions of the timed loop, on our initial weights and one batch of training digits and
  latents: the absolute loss differences and the largest relative gradient difference (Frobenius
  norm, over all layers of both players)."""
  import torch

  problem = setup.problem
  params = problem.initial_params
  rng = np.random.default_rng(seed)
  samples = np.array(problem.samples, np.float32)
  real = samples[rng.integers(0, len(samples), batch)]
  latents = rng.standard_normal((batch, problem.latent_size)).astype(np.float32)
  mix = np.zeros(batch, np.float32)
  (grad_g, grad_d), (loss_g, loss_d) = _gradients(problem, params, (real, latents, mix))
  generator, discriminator = torch_players(params)
  fake = generator(torch.from_numpy(latents))
  torch_loss_g = torch_generator_loss(discriminator, fake)
  torch_grad_g = torch.autograd.grad(torch_loss_g, list(generator.parameters()))
  torch_loss_d = torch_discriminator_loss(discriminator, torch.from_numpy(real), fake.detach())
  torch_grad_d = torch.autograd.grad(torch_loss_d, list(discriminator.parameters()))
  worst = 0.0
  for ours, theirs in ((grad_g, torch_grad_g), (grad_d, torch_grad_d)):
    for i, (kernel, bias) in enumerate(layer_arrays(ours)):
      worst = max(worst, _relative(theirs[2 * i].numpy().T, kernel),
                  _relative(theirs[2 * i + 1].numpy(), bias))
  result = dict(generator_loss_ours=float(loss_g),
                generator_loss_torch=float(torch_loss_g.detach()),
                discriminator_loss_ours=float(loss_d),
                discriminator_loss_torch=float(torch_loss_d.detach()),
                grad_rel_diff=worst)
  result["loss_abs_diff"] = max(abs(result["generator_loss_ours"] - result["generator_loss_torch"]),
                                abs(result["discriminator_loss_ours"]
                                    - result["discriminator_loss_torch"]))
  return result


def step_parity(setup, config: ml_collections.ConfigDict, seed: int = 0) -> dict[str, float]:
  """One alternating game step of ours (``game.make_step``, adam for both players) against one
  iteration of the PyTorch loop's updates on the minibatches our step draws
  (``GAN.draw(fold_in(key, j))``, j = 0 for the discriminator and 1 for the generator):
  {"update_rel_diff": the largest relative difference of a tensor's update (new - old weights),
  "update_norm": the Frobenius norm of our whole update}."""
  import torch

  problem, method = setup.problem, setup.method
  params = problem.initial_params
  key = jax.random.PRNGKey(seed)
  theta, xi, draws = _one_step(problem, method, setup.hyper, key)

  loop = TorchLoop.from_setup(setup, config)  # its players and optimizers, our initial weights
  generator, discriminator = loop.generator, loop.discriminator
  for real, latents, _ in draws[:-1]:
    loss_d = loop.d_loss(torch.from_numpy(np.array(real)), torch.from_numpy(np.array(latents)))
    loop.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    loop.opt_d.step()
  discriminator.requires_grad_(False)
  loss_g = loop.g_loss(torch.from_numpy(np.array(draws[-1][1])))
  loop.opt_g.zero_grad(set_to_none=True)
  loss_g.backward()
  loop.opt_g.step()
  discriminator.requires_grad_(True)

  worst, total = 0.0, 0.0
  for before, after, module in ((params[0], theta, generator), (params[1], xi, discriminator)):
    weights = [p.detach().numpy() for p in module.parameters()]
    for i, ((k0, b0), (k1, b1)) in enumerate(zip(layer_arrays(before), layer_arrays(after),
                                                 strict=True)):
      for mine, theirs in ((k1 - k0, weights[2 * i].T - k0), (b1 - b0, weights[2 * i + 1] - b0)):
        worst = max(worst, _relative(theirs, mine))
        total += float(np.sum(np.square(mine)))
  return dict(update_rel_diff=worst, update_norm=float(np.sqrt(total)))


def _rates(short: list[float], long: list[float], steps: int) -> dict[str, Any]:
  """Marginal steps per second of each round, 2 S / (T(3 S) - T(S)) (NaN where the difference is
  not positive: noise at toy sizes), and the whole long block's rate 3 S / T(3 S)."""
  marginal = [2 * steps / (b - a) if b > a else float("nan") for a, b in zip(short, long, strict=True)]
  rates = spread([r for r in marginal if np.isfinite(r)] or [float("nan")], "steps_per_second")
  rates["repeats"] = marginal  # every round's, NaN ones too
  return dict(rates, block_steps_per_second=statistics.median([3 * steps / b for b in long]),
              seconds_short=list(short), seconds_long=list(long))


def _timed_rounds(loops: dict[str, Any], steps: int, repeats: int) -> dict[str, list[float]]:
  blocks = {}
  for name, loop in loops.items():
    blocks[f"{name}_short"] = lambda loop=loop: loop.block(steps)
    blocks[f"{name}_long"] = lambda loop=loop: loop.block(3 * steps)
    if name == "ours":
      blocks["ours_log_point"] = loop.log_point_block
  return interleaved(blocks, repeats)


def spin_probe(setup, config: ml_collections.ConfigDict, steps: int, repeats: int, threads: int,
               timeout: float = 1800) -> dict[str, Any]:
  """The eager PyTorch loop alone, in a subprocess whose OpenMP threads spin
  (``OMP_WAIT_POLICY=active``), on ``threads`` threads: warm-up, then ``repeats`` rounds of S and
  3 S steps; its ``_rates``."""
  import subprocess
  import sys
  import tempfile

  with tempfile.TemporaryDirectory() as tmp:
    arrays = {"samples": np.asarray(setup.problem.samples, np.float32)}
    for p, layers in enumerate(_players(setup)):
      for i, (kernel, bias) in enumerate(layers):
        arrays[f"{p}_{i}_kernel"], arrays[f"{p}_{i}_bias"] = kernel, bias
    np.savez(os.path.join(tmp, "game.npz"), **arrays)
    spec = dict(batch=setup.method.batch_size, latent=setup.problem.latent_size,
                discriminator_steps=setup.method.option("discriminator_steps"), adam=_adam(config),
                steps=steps, repeats=repeats, threads=threads)
    code = ("import sys; from deepfound.benchmarks.gan_speed import spin_probe_main; "
            "spin_probe_main(sys.argv[1], sys.argv[2])")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_WAIT_POLICY="active", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root,
                                                        os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code, os.path.join(tmp, "game.npz"),
                             json.dumps(spec)], capture_output=True, text=True, env=env,
                            timeout=timeout)
  if result.returncode != 0:
    raise RuntimeError(f"the spinning PyTorch probe failed: {result.stderr[-2000:]}")
  seconds = json.loads(result.stdout.strip().splitlines()[-1])
  return dict(_rates(seconds["short"], seconds["long"], steps), threads=threads,
              omp_wait_policy="active")


def spin_probe_main(path: str, spec: str) -> None:
  """The subprocess of ``spin_probe``: prints the seconds of its blocks as one JSON line."""
  import torch

  spec = json.loads(spec)
  arrays = np.load(path)
  players = tuple([(arrays[f"{p}_{i}_kernel"], arrays[f"{p}_{i}_bias"])
                   for i in range(sum(1 for k in arrays.files if k.startswith(f"{p}_")) // 2)]
                  for p in range(2))
  torch.set_num_threads(spec["threads"])
  loop = TorchLoop(arrays["samples"], players, spec["batch"], spec["latent"], spec["adam"],
                   spec["discriminator_steps"], threads=spec["threads"])
  steps = spec["steps"]
  loop.block(steps)
  loop.block(3 * steps)
  seconds = _timed_rounds({"torch": loop}, steps, spec["repeats"])
  print(json.dumps(dict(short=seconds["torch_short"], long=seconds["torch_long"])))


def _thread_counts(threads: tuple[int, ...] | None, cores: int) -> tuple[int, ...]:
  return tuple(dict.fromkeys(threads or (cores, 1)))


def run_benchmark(out: str, command: str, config: ml_collections.ConfigDict, steps: int = STEPS,
                  repeats: int = REPEATS, torch_compile: bool = False,
                  torch_threads: tuple[int, ...] | None = None, spin: bool = True, setup=None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
  """``config``: the digits GAN (``configs/gan_digits.py``); ``setup``: its ``build_setup`` if
  already built; ``torch_threads``: the thread counts of the PyTorch rows (default: the cores,
  and 1); ``spin``: also run ``spin_probe`` on the first of them. Writes ``gan.json`` and
  ``gan.md`` to ``out``; returns the results."""
  import torch  # noqa: F401 - missing, fail before building anything

  load_start = load_average()
  threads = _thread_counts(torch_threads, schedulable_cores())
  start = time.perf_counter()
  if setup is None:
    setup = build_setup(config)
  build_seconds = time.perf_counter() - start
  log(f"build (data, classifier of the log point's metrics): {build_seconds:.1f} s")
  makers: dict[str, Callable[[], Any]] = dict(ours=lambda: OursLoop(setup, steps))
  for kind in ("torch", "torch_compile") if torch_compile else ("torch",):
    for n in threads:
      makers[f"{kind}_t{n}"] = lambda kind=kind, n=n: TorchLoop.from_setup(
          setup, config, compile_losses=kind == "torch_compile", threads=n)

  def warm(name, loop):  # compilation (ours, torch.compile) and warm-up, untimed
    loop.block(steps)
    loop.block(3 * steps)
    if name == "ours":
      loop.log_point_block()

  loops, warmup_seconds = warm_up(
      makers, warm, log, lambda name, seconds: f"{name}: compilation and warm-up {seconds:.1f} s")
  start = time.perf_counter()
  seconds = _timed_rounds(loops, steps, repeats)
  timed_seconds = time.perf_counter() - start
  log(f"interleaved rounds: {timed_seconds:.0f} s")
  load_after_rounds = load_average()
  rates = {name: dict(_rates(seconds[f"{name}_short"], seconds[f"{name}_long"], steps),
                      threads=None if name == "ours" else loops[name].threads)
           for name in loops}
  if spin:
    start = time.perf_counter()
    rates[f"torch_spin_t{threads[0]}"] = spin_probe(setup, config, steps, repeats, threads[0])
    log(f"spinning PyTorch probe: {time.perf_counter() - start:.0f} s")
  parity = dict(loss=loss_parity(setup), step=step_parity(setup, config))
  load_end = load_average()

  ours = rates["ours"]["steps_per_second"]
  ratios = {name: ours / rate["steps_per_second"] for name, rate in rates.items() if name != "ours"}
  fastest = max((n for n in ratios if np.isfinite(ratios[n])), key=lambda n: rates[n][
      "steps_per_second"], default=next(iter(ratios)))
  per_round = {name: ratio_per_round(rates["ours"]["repeats"], rates[name]["repeats"])
               for name in loops if name != "ours"}
  problem, method = setup.problem, setup.method
  results = dict(
      command=command, steps_short=steps, steps_long=3 * steps, repeats=repeats,
      batch=method.batch_size, discriminator_steps=method.option("discriminator_steps"),
      num_samples=int(problem.samples.shape[0]), data_dim=int(problem.samples.shape[1]),
      latent_size=problem.latent_size,
      generator_sizes=[int(k.shape[0]) for k, _ in layer_arrays(problem.initial_params[0])]
      + [int(problem.samples.shape[1])],
      discriminator_sizes=[int(k.shape[0]) for k, _ in layer_arrays(problem.initial_params[1])] + [1],
      adam=_adam(config), precision=config.precision, **torch_record(list(threads)),
      loadavg_start=load_start, loadavg_after_rounds=load_after_rounds,
      loadavg_end=load_end, build_seconds=build_seconds, warmup_seconds=warmup_seconds,
      timed_seconds=timed_seconds, rates=rates, ratios=ratios, fastest_torch=fastest,
      ratio=ratios[fastest], ratio_per_round=per_round,
      log_point_seconds=spread(seconds["ours_log_point"]),
      final_losses={name: dict(discriminator=loop.last_losses[0], generator=loop.last_losses[1])
                    for name, loop in loops.items()},
      parity=parity)
  write_results(out, "gan", results, markdown(results))
  return results


def _row_name(name: str) -> str:
  if name == "ours":
    return "deepfound (`game.run_chunk_jit`, compiled scan)"
  kind, threads = name.rsplit("_t", 1)
  what = {"torch": "PyTorch CPU loop (eager)", "torch_compile": "PyTorch, `torch.compile`d losses",
          "torch_spin": "PyTorch eager, spinning OpenMP threads (alone, not interleaved)"}[kind]
  return f"{what}, {threads} thread{'s' if threads != '1' else ''}"


def markdown(results: dict[str, Any]) -> str:
  rates, ratios = results["rates"], results["ratios"]
  rows = []
  for name in [*ratios, "ours"]:
    rate = rates[name]
    ratio = ratios.get(name, 1.0)
    rows.append(f"| {_row_name(name)} | {rate['steps_per_second']:,.0f} | {rate['min']:,.0f} - "
                f"{rate['max']:,.0f} | {ratio:.2f} | {rate['block_steps_per_second']:,.0f} |")
  loss, step = results["parity"]["loss"], results["parity"]["step"]
  rounds = "; ".join(f"{_row_name(name)}: {r['median']:.2f} ({r['min']:.2f} - {r['max']:.2f})"
                     for name, r in results["ratio_per_round"].items())
  short, long = results["steps_short"], results["steps_long"]
  log_point = results["log_point_seconds"]
  generator = "-".join(str(s) for s in results["generator_sizes"])
  discriminator = "-".join(str(s) for s in results["discriminator_sizes"])
  adam = results["adam"]["generator"]
  warmup = results["warmup_seconds"]
  torch_warmup = ", ".join(f"{_row_name(name)} {seconds:.0f} s"
                           for name, seconds in warmup.items() if name != "ours")
  spin = [name for name in rates if name.startswith("torch_spin")]
  spin_note = []
  if spin:
    spin_note = [
        f"The spinning row ran after the interleaved rounds, alone, in a subprocess with "
        f"`OMP_WAIT_POLICY=active` (the same blocks and rounds; load average "
        f"{format_load(results['loadavg_after_rounds'])} at its start, {format_load(results['loadavg_end'])} "
        "after the parity checks). Spinning worker threads hold a core between operations (and "
        "after the loop), so this row cannot be interleaved with ours, and its rate depends on "
        "nothing else running: on a shared machine it varies from run to run far more than the "
        "interleaved rows, and it stalls under load (results/bench/vae.md).",
        ""]
  return "\n".join([
      f"# Training throughput: GAN on 8x8 digits, generator {generator} (relu, sigmoid output), "
      f"discriminator {discriminator} (relu), alternating adam, batch {results['batch']}",
      "",
      f"Command: `{results['command']}`. Game steps per second (one step: "
      f"{results['discriminator_steps']} discriminator step then one generator step, each on a "
      f"fresh minibatch of {results['batch']} of the {results['num_samples']:,} training digits and "
      f"{results['batch']} Gaussian latents of size {results['latent_size']}; adam lr {adam['lr']:g}, "
      f"betas {adam['betas'][0]:g} / {adam['betas'][1]:g} for both players; "
      f"{results['precision']}). Each rate is the marginal cost of a step, 2 S / (time of "
      f"{long:,} steps - time of {short:,} steps), median over {results['repeats']} rounds with the "
      "min - max over the rounds; blocks of ours and of every PyTorch row alternate within a "
      "round, so background load hits all alike. Target: ours / PyTorch >= 1. **Ours / the "
      f"fastest PyTorch row ({_row_name(results['fastest_torch'])}): {results['ratio']:.2f}.**",
      "",
      "Included: drawing the minibatches (indices, gather, latents), both players' forward and "
      "backward passes and both adam updates. Excluded: compilation and warm-up blocks (ours "
      f"{warmup['ours']:.0f} s; {torch_warmup}), building the problem "
      f"({results['build_seconds']:.0f} s, most of it training the log point's classifier), and "
      "ours' log point, which every compiled block ends with (V, losses and gradient norms on 512 "
      "held-out digits, 10,000 generated images labelled by the classifier, a Frechet distance): "
      f"timed alone it takes {1e3 * log_point['median']:.0f} ms (median; "
      f"{1e3 * log_point['min']:.0f} - {1e3 * log_point['max']:.0f}). The last column is the whole "
      f"{long:,}-step block, log point included for ours.",
      "",
      f"jax {results['jax_version']} ({results['jax_backend']}; XLA's intra-op pool has one thread "
      f"per schedulable core: {results['cpu_cores']}), PyTorch {results['torch_version']} "
      "(`torch.set_num_threads` before each block, `OMP_WAIT_POLICY="
      f"{results.get('omp_wait_policy')}` in this process). Load average (1 / 5 / 15 min) at start "
      f"{format_load(results['loadavg_start'])}, after the interleaved rounds "
      f"{format_load(results['loadavg_after_rounds'])}.",
      "",
      "| what | steps per second (median, marginal) | min - max | ours / this row | "
      f"whole {long:,}-step block, steps per second |",
      "|---|---|---|---|---|",
      *rows,
      "",
      f"Ours / PyTorch within each round (median, min - max): {rounds}.",
      "",
      *spin_note,
      "Same models, losses and updates, checked from our initial weights: on one batch of 64 "
      f"digits, generator loss {loss['generator_loss_ours']:.6f} (ours) vs "
      f"{loss['generator_loss_torch']:.6f} (PyTorch), discriminator loss "
      f"{loss['discriminator_loss_ours']:.6f} vs {loss['discriminator_loss_torch']:.6f} (largest "
      f"difference {loss['loss_abs_diff']:.1e}), gradients' largest relative difference "
      f"{loss['grad_rel_diff']:.1e}; one whole alternating step on the minibatches our step draws "
      f"moves every weight tensor alike to a relative {step['update_rel_diff']:.1e}. PyTorch's "
      "generator step freezes the discriminator's parameters (no weight gradients there, as in "
      "ours) and draws no data minibatch, which the generator's loss does not read (ours draws one "
      "and XLA drops it).",
      "",
  ])
