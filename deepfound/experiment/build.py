"""From a validated config to what a run needs: the problem (data + model), the method, the
problem's constants and the hyperparameters, in one form (``Setup``)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from deepfound import data as data_lib
from deepfound import distributed
from deepfound.errors import ConfigError
from deepfound.experiment.config import mesh_devices
from deepfound.experiment.discriminative import STREAM_EVALUATION_SAMPLES
from deepfound.experiment.kinds import get_kind
from deepfound.experiment.models import Built, get_model, source_name
from deepfound.optim import driver, sharding
from deepfound.optim.engine import DataParallel
from deepfound.optim.memory import memory_bytes
from deepfound.problems import LinearFiniteSum, SparseLinearFiniteSum, solve_optimum
from deepfound.problems.linear import LOSS_CURVATURE
from deepfound.problems.optimum import OptimumTooLarge

LINEAR_KINDS = (LinearFiniteSum, SparseLinearFiniteSum)
# scikit-learn's get_auto_step_size bounds L'' by 0.25 for the logistic and multinomial losses
# alike (and 1 for least squares); ours bounds the multinomial one by 0.5.
_SKLEARN_CURVATURE = {"logistic": 0.25, "multinomial": 0.25, "least_squares": 1.0}


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run of one config is made of."""

  problem: Any  # of a registered problem kind (deepfound.problems.kinds)
  method: Any  # the engine's static description (driver.Method, game.GameMethod, ...)
  hyper: Any  # its traced numbers: device arrays in the run's dtype
  resolved: dict[str, Any]  # the same hyperparameters as numbers, and notes (config.json)
  constants: dict[str, Any]  # L, L_max, E* where known
  gradient_memory_mb: float | None  # the SAG-family memory, if the rule keeps one
  fingerprint: dict[str, Any]  # of the problem's arrays (data, initial parameters): resumes check it
  label: str  # how progress lines and summary.json name the method ("sag", "adam/adam")
  divergence_note: str = ""  # what a divergence message adds: the rates, and what to do
  warnings: tuple[str, ...] = ()  # printed when the run starts (e.g. a step above 2/L)
  data_devices: int = 1  # the devices each minibatch is split over (``on_mesh``)


def build(config: ml_collections.ConfigDict) -> Setup:
  """Loads the data and builds the run (call inside the precision's x64 scope): the problem
  from the model's builder, then the rest from the model's problem kind (``kinds.KindSpec``)."""
  problem, notes = build_problem_with_notes(config)
  return get_kind(get_model(config.model.name).kind).build(config, problem, notes)


def on_mesh(config: ml_collections.ConfigDict, setup: Setup) -> Setup:
  """The setup run data-parallel over the ``mesh.data`` devices (``optim.sharding``): its
  problem's data and hyperparameters replicated on them, and its method sharding each minibatch
  over them; the setup itself for one device."""
  mesh = sharding.data_mesh(mesh_devices(config))
  if mesh is None:
    return setup
  if not isinstance(setup.method, DataParallel):
    raise ConfigError(f"mesh.data={config.mesh.data}: the engine of model.name="
                      f"{config.model.name} does not split minibatches over devices; use "
                      "mesh.data=1")
  return dataclasses.replace(setup, problem=sharding.replicate(setup.problem, mesh),
                             hyper=sharding.replicate(setup.hyper, mesh),
                             method=setup.method.with_mesh(mesh),
                             data_devices=sharding.mesh_size(mesh))


def fingerprint(problem) -> dict[str, Any]:
  """The shapes, dtypes and SHA-256 of the problem's arrays (for a stream, its held-out sample)."""
  leaves = [np.ascontiguousarray(leaf) for leaf in jax.tree.leaves(jax.device_get(problem))]
  digest = hashlib.sha256()
  for leaf in leaves:
    digest.update(f"{leaf.shape}{leaf.dtype.str}".encode())
    digest.update(leaf.tobytes())
  return dict(shapes=[list(leaf.shape) for leaf in leaves], dtypes=[leaf.dtype.name for leaf in leaves],
              sha256=digest.hexdigest())


def build_problem(config):
  """The problem of ``config`` (see ``build_problem_with_notes``)."""
  return build_problem_with_notes(config)[0]


def build_problem_with_notes(config) -> tuple[Any, tuple[str, ...]]:
  """The problem of ``config`` and notes on how it was built: its data set loaded and checked,
  then its model's builder (models other than ``linear`` get sparse data densified)."""
  spec = data_lib.get_dataset(config.data.name)
  _check_generated_size(config, spec)
  dataset = None
  if not spec.stream:
    dataset = spec.load(config.data)
    source = source_name(config)
    data_lib.check_dataset(dataset, source)
    if get_model(config.model.name).design_matrix:
      # A linear model takes the values as they are: in the run's precision, and in float64 for
      # its step sizes and E*.
      where = None if spec.locate is None else (lambda row: spec.locate(config.data, row))
      data_lib.check_range(dataset, config.precision, source, where)
      data_lib.check_columns(dataset, source, where)
    elif data_lib.is_sparse(dataset.features):
      dataset = _densified(config, dataset)
  built = get_model(config.model.name).build(config, dataset)
  return (built.problem, built.notes) if isinstance(built, Built) else (built, ())


def _densified(config, dataset):
  rows, columns = dataset.features.shape
  needed, budget = 8 * rows * columns, memory_budget(config.optim.max_memory_mb)
  if needed > budget:
    raise ConfigError(f"model.name={config.model.name} needs dense data: {rows:,} x {columns:,} "
                      f"values need about {needed / 2**30:,.1f} GiB, more than the "
                      f"{budget / 2**30:,.1f} GiB allowed; use model.name=linear, which keeps "
                      "them sparse")
  test = dataset.test
  if test is not None and data_lib.is_sparse(test[0]):
    test = (test[0].toarray(), test[1])
  return dataset._replace(features=dataset.features.toarray(), test=test)


def _check_generated_size(config, spec) -> None:
  """Refuses a generated set (synthetic, stream, moons, ...) too large for memory, before
  generating it: at most 8 bytes a value, against the memory budget."""
  data = config.data
  rows = data.num_samples if "num_samples" in spec.uses else STREAM_EVALUATION_SAMPLES
  if spec.stream:  # and each page of steps draws its samples at once
    rows += driver.PAGE_STEPS * config.optim.batch_size
  columns = data.num_features if "num_features" in spec.uses else 2
  if not ({"num_samples", "num_features"} & set(spec.uses)):
    return
  needed, budget = 8 * rows * columns, memory_budget(config.optim.max_memory_mb)
  if needed > budget:
    raise ConfigError(f"data.name={spec.name} with {rows:,} x {columns:,} values needs about "
                      f"{needed / 2**30:,.1f} GiB, more than the {budget / 2**30:,.1f} GiB allowed "
                      "(optim.max_memory_mb; by default half the RAM, or 80% of an accelerator's "
                      "free memory)")


def memory_layout(config) -> str:
  """optim.memory, with auto resolved to the model's layout (scalar for linear models)."""
  if config.optim.memory != "auto":
    return config.optim.memory
  return get_model(config.model.name).memory


def build_method(config) -> driver.Method:
  optim = config.optim
  options = {o.name: optim[o.name] for o in driver.get_rule(optim.name).options}
  return driver.Method(optim.name, schedule=optim.schedule, batch_size=optim.batch_size,
                       sampling=optim.sampling, memory=memory_layout(config), tol=optim.tol,
                       unroll=optim.get("unroll"), ema=optim.get("ema") or None, **options)


def problem_constants(problem, max_memory_mb: float | None = None) -> dict[str, Any]:
  """L, L_max (and the median L_i), scikit-learn's L of its automatic step, and the float64
  optimum E* with the seconds it took (linear finite sums only: nets are not convex).

  E* is left out (None, with ``optimum_note`` saying why) when its solve, on the host, would need
  more than ``max_memory_mb`` (default: half the host's RAM).
  """
  if not isinstance(problem, LINEAR_KINDS):
    return dict(lipschitz=None, max_sample_lipschitz=None, optimum=None)
  tic = time.perf_counter()
  note = None
  try:
    optimum = solve_optimum(problem, max_bytes=_host_budget(max_memory_mb))
  except OptimumTooLarge as e:
    optimum, note = None, (f"E* is not computed: {e} (optim.max_memory_mb); the run reports no "
                           "suboptimality")
  optimum_seconds = time.perf_counter() - tic
  sample_lipschitz = problem.sample_lipschitz()
  max_sample = float(np.max(sample_lipschitz))
  l2 = float(problem.l2)
  loss = problem.loss
  return dict(
      lipschitz=problem.lipschitz(),
      max_sample_lipschitz=max_sample,
      # c (max_i w_i ||x_i||^2 + [intercept]) + l2 with scikit-learn's c.
      auto_lipschitz=_SKLEARN_CURVATURE[loss] / LOSS_CURVATURE[loss] * (max_sample - l2) + l2,
      num_samples=problem.num_samples,
      l2=l2,
      median_sample_lipschitz=float(np.median(sample_lipschitz)),
      optimum=optimum.value if optimum is not None and optimum.converged else None,
      optimum_gradient_norm=None if optimum is None else optimum.gradient_norm,
      optimum_seconds=optimum_seconds,
      optimum_note=note,
  )


def resolve_hyperparameters(config, constants) -> dict[str, float]:
  """Config values, with the defaults that depend on the problem filled in."""
  learning_rate = config.optim.learning_rate
  rule = driver.get_rule(config.optim.name)
  if learning_rate is None and rule.default_learning_rate is not None:
    learning_rate = rule.default_learning_rate(constants)
  if learning_rate == "auto":
    if rule.auto_learning_rate is None or constants.get("auto_lipschitz") is None:
      raise ConfigError(f"optim.learning_rate=auto is scikit-learn's step of sag and saga on "
                        f"linear models; give {rule.name} a number")
    learning_rate = rule.auto_learning_rate(constants)
  if (config.optim.learning_rate in (None, "auto") and learning_rate is not None
      and config.optim.schedule != "strongly_convex"):
    _check_derived_step(config, float(learning_rate), constants)
  strong_convexity = config.optim.strong_convexity
  if strong_convexity is None:
    strong_convexity = config.problem.l2 if config.problem.l2 > 0 else 1.0
  if config.optim.schedule == "strongly_convex":
    learning_rate = 1.0 / strong_convexity  # tau_0 of 1/(mu (l + 1)); only reported
  return dict(learning_rate=float(learning_rate), l0=float(config.optim.l0),
              strong_convexity=float(strong_convexity))


def _check_derived_step(config, rate: float, constants) -> None:
  """A step derived from L or L_max must survive the run's precision: below its smallest normal
  number the device flushes it to zero, every update is zero, and the tol test would see a run
  that does not move as converged."""
  tiny = float(np.finfo(config.precision).tiny)
  if np.isfinite(rate) and rate >= tiny:
    return
  given = "auto" if config.optim.learning_rate == "auto" else "unset (1/L)"
  raise ConfigError(
      f"optim.learning_rate={given} gives {rate:.3g}, below {config.precision}'s smallest normal "
      f"number {tiny:.3g}, so every step would be zero: L_max = "
      f"{constants.get('max_sample_lipschitz') or float('nan'):.3g} (L = "
      f"{constants.get('lipschitz') or float('nan'):.3g}): the features have rows of huge norm; "
      "rescale them or give optim.learning_rate a number")


def _host_budget(max_memory_mb: float | None) -> int:
  """Bytes a host-side computation (the E* solve) may use: the flag, else half the RAM."""
  if max_memory_mb:
    return int(max_memory_mb * 2**20)
  return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def memory_budget(max_memory_mb: float | None) -> int:
  """Bytes one device may use: the flag, else 80 % of an accelerator's free memory, else half
  the host's RAM (the CPU backend's memory)."""
  if max_memory_mb:
    return int(max_memory_mb * 2**20)
  stats = jax.local_devices()[0].memory_stats() or {}  # (another process's device has none)
  if "bytes_limit" in stats:
    return int(0.8 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
  return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_gradient_memory(config, problem, method: driver.Method) -> float | None:
  """A rule that keeps one gradient per sample: refuse a run whose memory would not fit on a
  device (1/d of it on each of the d devices of mesh.data, split along the samples, which must
  split evenly). Returns the whole memory's MB."""
  if not method.spec.keeps_memory:
    return None
  n, devices = problem.num_samples, mesh_devices(config)
  if devices > 1 and n % devices:
    raise ConfigError(
        f"mesh.data={config.mesh.data}: {method.name} keeps one gradient per sample, split over "
        f"the {devices} devices, but the {n:,} samples do not split evenly; use a mesh.data that "
        f"divides {n:,}, or mesh.data=1")
  needed = memory_bytes(method.memory, problem.init_params(), n)
  budget = memory_budget(config.optim.max_memory_mb)
  if needed / devices > budget:
    per_device = f" ({needed / devices / 2**20:,.1f} MB on each of {devices} devices)"
    raise ConfigError(
        f"{method.name} keeps one gradient per sample: {n} samples x "
        f"{needed // n:,} bytes = {needed / 2**20:,.1f} MB{per_device if devices > 1 else ''}, "
        f"more than the {budget / 2**20:,.1f} MB allowed (optim.max_memory_mb); use fewer "
        "samples, memory=scalar for linear models, or sgd/adam")
  return needed / 2**20


def host_arrays(tree) -> dict[str, np.ndarray]:
  """A pytree's leaves by their key path, as NumPy arrays (for params.npz); leaves sharded over
  several processes are gathered (``distributed.gather``: every process must call this)."""
  return {jax.tree_util.keystr(path): distributed.gather(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
