"""config -> data + problem + method -> on-device run, with metrics, checkpoints and progress."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepfound import data as data_lib
from deepfound.data import images as images_lib
from deepfound.experiment.checkpoint import Checkpointer
from deepfound.experiment.config import ConfigError, validate
from deepfound.experiment.progress import Progress
from deepfound.optim import driver
from deepfound.optim.memory import memory_bytes
from deepfound.problems import NetFiniteSum, make_logistic_stream, make_problem, solve_optimum

# Set in the environment to SIGKILL the process right after checkpointing chunk k (1-based):
# how the resume test interrupts a real run at a known point.
_KILL_AFTER_CHUNK = "DEEPFOUND_TEST_KILL_AFTER_CHUNK"


class DivergenceError(RuntimeError):
  """The objective or the parameters became NaN or infinite."""


def load_arrays(config) -> tuple[np.ndarray, np.ndarray]:
  name = config.data.name
  if name == "quantum":
    return data_lib.load_quantum(seed=config.data.seed, path=config.data.path)
  if name == "synthetic":
    return data_lib.make_logistic_data(config.data.num_samples, config.data.num_features,
                                       config.data.seed)
  if name == "breast_cancer":
    return data_lib.load_breast_cancer()
  if name == "libsvm":
    return data_lib.load_libsvm(config.data.path, binary=config.problem.loss == "logistic")
  raise data_lib.DataError(f"data.name={name} has no arrays")


def _net_arrays(config):
  """((x_train, y_train), (x_test, y_test)) standardized by the training set; images (H, W, C)."""
  data = config.data
  if data.name == "digits":
    return data_lib.split_and_standardize(*data_lib.load_digits(), data.test_fraction, data.seed)
  if data.name in ("moons", "spirals"):
    make = data_lib.make_moons if data.name == "moons" else data_lib.make_spirals
    return data_lib.split_and_standardize(*make(data.num_samples, seed=data.seed),
                                          data.test_fraction, data.seed)
  if data.name == "npz":
    return images_lib.standardize(*data_lib.load_npz(data.path))
  names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
           "t10k-labels-idx1-ubyte")
  paths = []
  for name in names:
    candidates = [os.path.join(data.path, name + suffix) for suffix in ("", ".gz")]
    found = [p for p in candidates if os.path.isfile(p)]
    if not found:
      raise data_lib.DataError(f"{data.path} has no {name}[.gz] (the MNIST IDX file names)")
    paths.append(found[0])
  return images_lib.standardize(data_lib.load_idx(*paths[:2]), data_lib.load_idx(*paths[2:]))


def build_net_problem(config) -> NetFiniteSum:
  from flax import nnx

  from deepfound import models

  (x, y), (x_test, y_test) = _net_arrays(config)
  if config.optim.batch_size > len(y):
    raise ConfigError(f"optim.batch_size must be <= the number of training samples ({len(y)}), "
                      f"got {config.optim.batch_size}")
  rngs = nnx.Rngs(config.model.seed)
  model_config = config.model
  if model_config.name == "cnn":
    model = models.CNN(x.shape[1:], int(y.max()) + 1, tuple(model_config.channels), rngs=rngs)
  else:
    x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    if model_config.name == "perceptron":
      if not set(np.unique(y)) <= {0, 1}:
        raise ConfigError(f"model.name=perceptron is a binary classifier; data.name="
                          f"{config.data.name} has {len(np.unique(y))} classes (use mlp)")
      model = models.perceptron(x.shape[1], rngs=rngs)
      y, y_test = 2.0 * y - 1.0, 2.0 * y_test - 1.0  # classes 0/1 -> -1/+1 for (17.4)
    else:
      sizes = [x.shape[1], *map(int, model_config.hidden), int(y.max()) + 1]
      model = models.MLP(sizes, model_config.activation, rngs=rngs)
  _, params, apply = models.split(model)
  dtype = jnp.float64 if config.precision == "float64" else jnp.float32
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  target_dtype = dtype if config.problem.loss == "logistic" else jnp.int32
  return NetFiniteSum(jnp.asarray(x, dtype), jnp.asarray(y, target_dtype),
                      jnp.asarray(x_test, dtype), jnp.asarray(y_test, target_dtype), params,
                      jnp.asarray(config.problem.l2, dtype), apply, config.problem.loss)


def build_problem(config):
  if config.model.name != "linear":
    return build_net_problem(config)
  dtype = jnp.float64 if config.precision == "float64" else jnp.float32
  if config.data.name == "stream":
    return make_logistic_stream(config.data.num_features, config.data.seed, config.problem.l2,
                                dtype=dtype)
  features, targets = load_arrays(config)
  if config.optim.batch_size > features.shape[0]:
    raise ConfigError(f"optim.batch_size must be <= the number of samples ({features.shape[0]}), "
                      f"got {config.optim.batch_size}")
  return make_problem(features, targets, config.problem.l2, config.problem.loss, dtype)


def build_method(config) -> driver.Method:
  optim = config.optim
  return driver.Method(
      name=optim.name, schedule=optim.schedule, batch_size=optim.batch_size,
      sampling=optim.sampling, memory=optim.memory, average_over_seen=optim.average_over_seen,
      svrg_frequency=optim.svrg_frequency,
  )


def problem_constants(problem) -> dict[str, Any]:
  """L, L_max and the float64 optimum E* (linear finite sums only: nets are not convex)."""
  if driver.is_stream(problem) or isinstance(problem, NetFiniteSum):
    return dict(lipschitz=None, max_sample_lipschitz=None, optimum=None)
  optimum = solve_optimum(problem)
  return dict(
      lipschitz=problem.lipschitz(),
      max_sample_lipschitz=problem.max_sample_lipschitz(),
      optimum=optimum.value if optimum.converged else None,
      optimum_gradient_norm=optimum.gradient_norm,
  )


def resolve_hyperparameters(config, constants) -> dict[str, float]:
  """Config values, with the defaults that depend on the problem filled in."""
  learning_rate = config.optim.learning_rate
  if learning_rate is None and config.optim.name == "bgd":
    learning_rate = 1.0 / constants["lipschitz"]  # BGD's default step 1/L (< 2/L)
  strong_convexity = config.optim.strong_convexity
  if strong_convexity is None:
    strong_convexity = config.problem.l2 if config.problem.l2 > 0 else 1.0
  if config.optim.schedule == "strongly_convex":
    learning_rate = 1.0 / strong_convexity  # tau_0 of 1/(mu (l + 1)); only reported
  return dict(learning_rate=float(learning_rate), l0=float(config.optim.l0),
              strong_convexity=float(strong_convexity))


def _check_gradient_memory(config, problem, method) -> float | None:
  """The SAG family keeps one gradient per sample: refuse a run whose memory would not fit."""
  if method.name not in driver.MEMORY_METHODS:
    return None
  needed = memory_bytes(method.memory, problem.init_params(), problem.num_samples)
  budget = (config.optim.max_memory_mb * 2**20 if config.optim.max_memory_mb
            else 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  if needed > budget:
    raise ConfigError(
        f"{method.name} keeps one gradient per sample: {problem.num_samples} samples x "
        f"{needed // problem.num_samples:,} bytes = {needed / 2**20:,.1f} MB, more than the "
        f"{budget / 2**20:,.1f} MB allowed (optim.max_memory_mb); use fewer samples, "
        "memory=scalar for linear models, or sgd/adam")
  return needed / 2**20


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read {path} ({e}); use another --workdir") from e


def _check_workdir(workdir: str) -> None:
  """A usable output directory, checked before anything is computed or written."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} exists and is not a directory")
  parent = workdir if os.path.isdir(workdir) else os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK):
    raise ConfigError(f"--workdir {workdir} is not writable")


def _write_json(path: str, value) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def _metric_lines(path: str) -> list[dict]:
  """The complete lines of a metrics file (a line cut short by a kill is dropped)."""
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          rows.append(json.loads(line))
        except ValueError:
          break
  return rows


def _truncate_metrics(path: str, last_step: int) -> list[dict]:
  """Keeps the metric lines up to ``last_step`` (a resumed run rewrites the rest)."""
  kept = [row for row in _metric_lines(path) if row["step"] <= last_step]
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in kept)
  os.replace(tmp, path)
  return kept


def _metric_rows(points, first_elapsed, chunk_seconds, method, problem, optimum):
  steps = np.asarray(points.step)
  rows = []
  for k, step in enumerate(steps):
    objective = float(points.objective[k])
    if driver.is_stream(problem):
      epoch = None
    else:
      epoch = float(driver.epochs_done(method, problem.num_samples, step))
    rows.append(dict(
        step=int(step), epoch=epoch, objective=objective,
        suboptimality=None if optimum is None else objective - optimum,
        learning_rate=float(points.learning_rate[k]),
        **({} if points.extras is None else
           {name: float(values[k]) for name, values in points.extras.items()}),
        # Points of a chunk come back together; their times are interpolated within it.
        elapsed_s=first_elapsed + chunk_seconds * (k + 1) / len(steps),
    ))
  return rows


def _check_finite(rows, state, hyper_info, constants, method) -> None:
  bad = [r for r in rows if not math.isfinite(r["objective"])]
  params_ok = all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state.params))
  if not bad and params_ok:
    return
  step = bad[0]["step"] if bad else rows[-1]["step"]
  what = "the objective is" if bad else "the parameters are"
  rate = hyper_info["learning_rate"]
  hint = ""
  if constants.get("lipschitz"):
    hint = f", 2/L = {2.0 / constants['lipschitz']:.4g}"
    if method.name in driver.MEMORY_METHODS:
      hint += f", 1/L_max = {1.0 / constants['max_sample_lipschitz']:.4g}"
  raise DivergenceError(
      f"diverged: {what} not finite at step {step} "
      f"(optim.learning_rate = {rate:.4g}{hint}); lower the learning rate"
  )


def run_experiment(config: ml_collections.ConfigDict, workdir: str, progress: bool = True):
  """Runs (or resumes) the experiment of ``config`` in ``workdir`` and returns its summary.

  Raises ``ConfigError`` / ``DataError`` before writing anything, and ``DivergenceError`` when
  the run diverges (after writing the metrics up to the first bad point and a summary).
  """
  validate(config)
  _check_workdir(workdir)
  if config.precision == "float64":
    jax.config.update("jax_enable_x64", True)
  problem = build_problem(config)
  method = build_method(config)
  constants = problem_constants(problem)
  hyper_info = resolve_hyperparameters(config, constants)
  gradient_memory_mb = _check_gradient_memory(config, problem, method)
  if method.name == "bgd" and constants["lipschitz"] and (
      hyper_info["learning_rate"] >= 2.0 / constants["lipschitz"]):
    print(f"warning: optim.learning_rate = {hyper_info['learning_rate']:.4g} is not below "
          f"2/L = {2.0 / constants['lipschitz']:.4g}; BGD may diverge", file=sys.stderr)

  config_json = json.loads(config.to_json())
  config_path = os.path.join(workdir, "config.json")
  summary_path = os.path.join(workdir, "summary.json")
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(config_path) and _read_json(config_path).get("config") != config_json:
    raise ConfigError(f"{workdir} holds a run with a different config; use another --workdir")
  if os.path.exists(summary_path) and _read_json(summary_path).get("status") == "complete":
    return _read_json(summary_path)
  os.makedirs(workdir, exist_ok=True)
  _write_json(config_path, dict(config=config_json, resolved=hyper_info, constants=constants))

  dtype = jnp.float64 if config.precision == "float64" else jnp.float32
  hyper = driver.hyperparameters(**hyper_info, dtype=dtype)
  key = jax.random.PRNGKey(config.seed)
  state = driver.init_state(problem, method, hyper, key)
  checkpointer = Checkpointer(workdir)
  start_step = checkpointer.latest_step()
  optimum = constants["optimum"]
  if start_step is not None:
    state = checkpointer.restore(start_step, state)
    kept = _truncate_metrics(metrics_path, start_step)
    elapsed_before = kept[-1]["elapsed_s"] if kept else 0.0
  else:
    start_step, elapsed_before = 0, 0.0
    first = jax.jit(driver.initial_log_point, static_argnames="method")(problem, method, hyper, state)
    rows = _metric_rows(jax.tree.map(lambda a: a[None], first), 0.0, 0.0, method, problem, optimum)
    with open(metrics_path, "w") as f:
      f.write(json.dumps(rows[0]) + "\n")

  total_logs = config.num_steps // config.log_every
  logs_per_chunk = min(total_logs, max(1, config.checkpoint_every // config.log_every))
  chunk_steps = logs_per_chunk * config.log_every
  compiled, compile_s = {}, 0.0

  def chunk_fn(num_logs):
    """The compiled chunk of ``num_logs`` log blocks: every chunk but a shorter last one shares
    one program, so a run compiles at most twice and never retraces."""
    nonlocal compile_s
    if num_logs not in compiled:
      tic = time.perf_counter()
      compiled[num_logs] = driver.run_chunk_jit.lower(
          problem, method, hyper, state, num_logs=num_logs, log_every=config.log_every).compile()
      compile_s += time.perf_counter() - tic
    return compiled[num_logs]

  chunk_fn(min(logs_per_chunk, (config.num_steps - start_step) // config.log_every or 1))

  bar = Progress(config.optim.name, config.num_steps, start_step, enabled=progress)
  kill_after = int(os.environ.get(_KILL_AFTER_CHUNK, "0"))
  run_seconds, chunks_done = 0.0, 0
  step = start_step
  status = "complete"
  try:
    while step < config.num_steps:
      program = chunk_fn(min(logs_per_chunk, (config.num_steps - step) // config.log_every))
      tic = time.perf_counter()
      state, points = program(problem, hyper, state)
      points = jax.device_get(points)
      seconds = time.perf_counter() - tic
      run_seconds += seconds
      rows = _metric_rows(points, elapsed_before + run_seconds - seconds, seconds, method, problem,
                          optimum)
      try:
        _check_finite(rows, state, hyper_info, constants, method)
      except DivergenceError:
        status = "diverged"
        rows = [r for r in rows if math.isfinite(r["objective"])]
        raise
      finally:
        with open(metrics_path, "a") as f:
          f.writelines(json.dumps(r) + "\n" for r in rows)
      step = int(state.step)
      checkpointer.save(step, state)
      chunks_done += 1
      bar.update(step, rows[-1]["objective"], rows[-1]["suboptimality"])
      if kill_after and chunks_done == kill_after:
        os.kill(os.getpid(), 9)
  except DivergenceError as e:
    last = _metric_lines(metrics_path)
    _write_json(summary_path, dict(last[-1] if last else {}, status=status, message=str(e),
                                   backend=jax.default_backend(), device_count=jax.device_count(),
                                   compile_s=compile_s, optimum=optimum,
                                   lipschitz=constants["lipschitz"]))
    raise
  finally:
    checkpointer.close()

  final = _metric_lines(metrics_path)[-1]
  steps_run = config.num_steps - start_step
  summary = dict(
      final,
      status=status,
      steps_per_second=steps_run / run_seconds if run_seconds > 0 else None,
      compile_s=compile_s,
      backend=jax.default_backend(),
      device_count=jax.device_count(),
      optimum=optimum,
      lipschitz=constants["lipschitz"],
      max_sample_lipschitz=constants["max_sample_lipschitz"],
      learning_rate_used=hyper_info["learning_rate"],
      resumed_from_step=start_step or None,
      method=method.name,
      chunk_steps=chunk_steps,
      gradient_memory_mb=gradient_memory_mb,
  )
  arrays = {}
  for prefix, tree in (("params", state.params), ("reported", driver.reported_params(state))):
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]:
      arrays[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
  np.savez(os.path.join(workdir, "params.npz"), **arrays)
  _write_json(summary_path, summary)
  return summary
