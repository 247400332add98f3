"""The on-device driver: runs a method on a problem inside one compiled program.

A run is a pure function of (problem, hyperparameters, key): ``init_state`` then ``run_chunk``
repeatedly. ``run_chunk`` is one ``jax.jit`` of a ``lax.scan`` over log blocks, each a ``lax.scan``
of ``log_every`` steps followed by one evaluation of the full objective on the device. The host
only sees chunk boundaries (progress, checkpoints); chunks of equal length never retrace. Because
everything is a pure function, ``jax.vmap`` over hyperparameters and keys gives many runs in one
program (``run`` is the whole trajectory in a single call, the form a sweep vmaps).

Per-step cost does not depend on n: one sample (or minibatch) is gathered, the gradient memory is
touched at those rows only (see ``memory.py``), and indices come from a counter-based PRNG
(uniform with replacement) or a permutation drawn once per epoch (shuffled epochs).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepfound.optim import schedules
from deepfound.optim.sag import sag
from deepfound.optim.saga import saga
from deepfound.optim.sga import averaged_params, sga
from deepfound.optim.sgd import bgd, sgd
from deepfound.optim.svrg import svrg

MEMORY_METHODS = ("sag", "saga", "svrg")
SAMPLINGS = ("uniform", "shuffle")


@dataclasses.dataclass(frozen=True)
class Method:
  """What is compiled into the program (hashable, static). Numbers that may vary between the
  runs of one program (learning rate, l0, ...) live in ``Hyperparameters`` instead."""

  name: str  # bgd, sgd, sga, sag, saga, svrg
  schedule: str = "constant"  # one of schedules.SCHEDULES
  batch_size: int = 1
  sampling: str = "uniform"  # "uniform": i.i.d. with replacement (the chapter); "shuffle": epochs
  memory: str = "scalar"  # gradient memory layout for sag/saga/svrg
  average_over_seen: bool = False  # SAG: divide by samples seen during the first pass
  svrg_frequency: int | None = None  # SVRG snapshot period m (None: one epoch, n // batch_size)


class Hyperparameters(NamedTuple):
  """Numeric settings, traced: vmap over any of them."""

  learning_rate: jax.Array  # constant rate, or tau0 of a schedule
  l0: jax.Array  # warm-up length of the inverse_time / inverse_sqrt schedules
  strong_convexity: jax.Array  # mu of the strongly_convex schedule


def hyperparameters(learning_rate, l0=1.0, strong_convexity=1.0, dtype=jnp.float32):
  return Hyperparameters(*(jnp.asarray(v, dtype) for v in (learning_rate, l0, strong_convexity)))


class RunState(NamedTuple):
  params: optax.Params
  opt_state: optax.OptState
  step: jax.Array  # int32 scalar, iterations done
  order: jax.Array  # int32 (n,): this epoch's permutation ("shuffle"), else shape (0,)
  key: jax.Array  # the run's PRNG key (constant; step keys are fold_in(key, step))


class LogPoint(NamedTuple):
  step: jax.Array  # iterations done at this point
  objective: jax.Array  # full E at the reported iterate (the average for SGA)
  learning_rate: jax.Array  # schedule value at this iteration count
  params: Any = None  # the reported iterate, when asked for (record_params=True)
  extras: Any = None  # the problem's own metrics (nets: loss, train and test accuracy), if any


def is_stream(problem) -> bool:
  return problem.num_samples is None


def make_optimizer(method: Method, hyper: Hyperparameters, num_samples: int | None):
  """The optax transformation and the schedule for ``method`` with (traced) ``hyper``."""
  schedule = schedules.make_schedule(
      method.schedule, hyper.learning_rate, hyper.l0, hyper.strong_convexity
  )
  # A constant rate goes in as a number, not a schedule: a schedule's step counter is one more
  # kernel in the loop body, and on CPU XLA runs bodies of more than 8 kernels through a slower
  # concurrent executor (measured: 0.2 vs 0.6-0.9 us per SAG step).
  rate = hyper.learning_rate if method.schedule == "constant" else schedule
  if method.name == "bgd":
    return bgd(rate), schedule
  if method.name == "sgd":
    return sgd(rate), schedule
  if method.name == "sga":
    return sga(rate), schedule
  if method.name == "adam":  # the optax baseline of section 17.3's experiments
    return optax.adam(rate), schedule
  if num_samples is None:
    raise ValueError(f"{method.name} keeps one gradient per sample and needs a finite data set")
  if method.name == "sag":
    opt = sag(rate, num_samples, method.memory, method.batch_size,
                      method.average_over_seen)
  elif method.name == "saga":
    opt = saga(rate, num_samples, method.memory, method.batch_size)
  elif method.name == "svrg":
    period = method.svrg_frequency or max(num_samples // method.batch_size, 1)
    opt = svrg(rate, num_samples, period, method.memory)
  else:
    raise ValueError(f"unknown method {method.name!r}")
  return opt, schedule


def steps_per_epoch(method: Method, num_samples: int) -> int:
  return max(num_samples // method.batch_size, 1)


def epochs_done(method: Method, num_samples: int, steps):
  """Samples touched / n after ``steps`` iterations (a number or a NumPy array): the sampled
  gradients, plus for SVRG the full pass over all n samples at each snapshot (the first at step
  0); for BGD, one epoch per iteration."""
  steps = np.asarray(steps, np.float64)
  if method.name == "bgd":
    return steps
  touched = steps * method.batch_size
  if method.name == "svrg":
    period = method.svrg_frequency or steps_per_epoch(method, num_samples)
    touched = touched + num_samples * np.ceil(steps / period)
  return touched / num_samples


def init_state(problem, method: Method, hyper: Hyperparameters, key: jax.Array,
               params: optax.Params | None = None) -> RunState:
  """The state before the first step; ``params`` defaults to the problem's start (zero)."""
  params = problem.init_params() if params is None else params
  optimizer, _ = make_optimizer(method, hyper, problem.num_samples)
  if method.sampling == "shuffle" and not is_stream(problem) and method.name != "bgd":
    order = _permutation(key, 0, problem.num_samples)
  else:
    order = jnp.zeros((0,), jnp.int32)
  return RunState(params, optimizer.init(params), jnp.zeros((), jnp.int32), order, key)


def _permutation(key: jax.Array, epoch: jax.Array, num_samples: int) -> jax.Array:
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_samples).astype(jnp.int32)


def _draw_page(problem, method: Method, state: RunState, page: int):
  """The samples of the next ``page`` steps, drawn at once, and the epoch permutation after them.

  Returns ((indices (page, b), x (page, b, p), y (page, b)), order). Every draw is a pure function
  of (key, step), so a run does not depend on how it is cut into pages, log blocks or chunks.
  Drawing a page at once matters on CPU: a threefry call per step inside the loop costs more than
  a SAG step, and gathering a page of rows overlaps the memory latency of a large X.
  """
  b = method.batch_size
  steps = state.step + jnp.arange(page, dtype=jnp.int32)
  if is_stream(problem):
    x, y = jax.vmap(lambda t: problem.draw(jax.random.fold_in(state.key, t), b))(steps)
    return (jnp.zeros((page, b), jnp.int32), x, y), state.order
  n = problem.num_samples
  if method.sampling == "uniform":
    draw = lambda t: jax.random.randint(jax.random.fold_in(state.key, t), (b,), 0, n,  # noqa: E731
                                        dtype=jnp.int32)
    indices, order = jax.vmap(draw)(steps), state.order
  else:
    # ``order`` is the permutation of the epoch of ``state.step``; a page (no longer than an
    # epoch) reaches at most into the next one. Within an epoch, step k takes samples
    # order[k b : (k + 1) b]; the last n % b samples of each permutation are skipped.
    per_epoch = steps_per_epoch(method, n)
    epoch = state.step // per_epoch
    crosses = (state.step + page) // per_epoch > epoch
    upcoming = jax.lax.cond(crosses, lambda: _permutation(state.key, epoch + 1, n),
                            lambda: state.order)
    slots = (steps % per_epoch)[:, None] * b + jnp.arange(b, dtype=jnp.int32)
    indices = jnp.where((steps // per_epoch == epoch)[:, None], state.order[slots], upcoming[slots])
    order = upcoming
  return (indices, problem.features[indices], problem.targets[indices]), order


def _refresh_fn(problem, method: Method):
  """params -> (gradient memory at params, mean stored gradient), for SVRG snapshots."""
  return lambda params: problem.snapshot(params, method.memory)


def make_step(problem, method: Method, hyper: Hyperparameters):
  """One iteration of ``method``: (params, opt_state), drawn samples -> (params, opt_state).

  ``drawn`` is the step's (indices (b,), x (b, p), y (b,)); BGD ignores it. The loop carries only
  what the update changes: counters, keys and permutations live at the page level, which keeps
  the scan body small (on CPU, every extra carried value costs time in each iteration).
  """
  optimizer, _ = make_optimizer(method, hyper, problem.num_samples)

  def step(carry, drawn=None):
    params, opt_state = carry
    if method.name == "bgd":
      updates, opt_state = optimizer.update(problem.gradient(params), opt_state, params)
    else:
      index_b, x_b, y_b = drawn
      if method.name in MEMORY_METHODS:
        scale_b, gradients_b = problem.terms(params, x_b, y_b)
        extra = dict(index=index_b, sample_scale=scale_b, sample_features=x_b,
                     regularizer_gradient=problem.regularizer_gradient(params))
        if method.name == "svrg":
          extra["refresh_fn"] = _refresh_fn(problem, method)
        updates, opt_state = optimizer.update(gradients_b, opt_state, params, **extra)
      else:  # only the minibatch mean is needed: no per-sample gradients
        updates, opt_state = optimizer.update(problem.mean_gradient(params, x_b, y_b), opt_state,
                                              params)
    return optax.apply_updates(params, updates), opt_state

  return step


_PAGE_STEPS = 256  # 100 KB of rows at p = 100: leaves the cache to the gradient memory


def _largest_divisor_at_most(value: int, bound: int) -> int:
  return max(d for d in range(1, min(value, bound) + 1) if value % d == 0)


def reported_params(state: RunState) -> optax.Params:
  """The iterate whose objective is reported: the Cesaro average for SGA, else the params."""
  return averaged_params(state.opt_state, state.params)


def run_chunk(problem, method: Method, hyper: Hyperparameters, state: RunState, *,
              num_logs: int, log_every: int, record_params: bool = False
              ) -> tuple[RunState, LogPoint]:
  """``num_logs * log_every`` iterations; evaluates E every ``log_every`` of them (and keeps the
  reported iterate too with ``record_params``)."""
  step = make_step(problem, method, hyper)
  _, schedule = make_optimizer(method, hyper, problem.num_samples)

  # Steps run in pages of samples drawn ahead (see _draw_page); a page divides the log block
  # and, for shuffled epochs, is no longer than an epoch.
  bound = _PAGE_STEPS
  if method.sampling == "shuffle" and not is_stream(problem) and method.name != "bgd":
    bound = min(bound, steps_per_epoch(method, problem.num_samples))
  page = _largest_divisor_at_most(log_every, bound)

  def run_page(state):
    drawn, order = _draw_page(problem, method, state, page)
    carry = jax.lax.scan(lambda c, d: (step(c, d), None), (state.params, state.opt_state), drawn)[0]
    return RunState(*carry, state.step + page, order, state.key)

  def log_block(state, _):
    if method.name == "bgd":
      carry = jax.lax.fori_loop(0, log_every, lambda _, c: step(c), (state.params, state.opt_state))
      state = RunState(*carry, state.step + log_every, state.order, state.key)
    else:
      state = jax.lax.fori_loop(0, log_every // page, lambda _, s: run_page(s), state)
    reported = reported_params(state)
    extras = problem.metrics(reported) if hasattr(problem, "metrics") else None
    return state, LogPoint(state.step, problem.objective(reported), schedule(state.step),
                           reported if record_params else None, extras)

  return jax.lax.scan(log_block, state, None, length=num_logs)


run_chunk_jit = jax.jit(run_chunk,
                        static_argnames=("method", "num_logs", "log_every", "record_params"))


@functools.partial(jax.jit, static_argnames=("method", "num_steps", "log_every", "record_params"))
def run(problem, method: Method, hyper: Hyperparameters, key: jax.Array,
        params: optax.Params | None = None, *, num_steps: int, log_every: int,
        record_params: bool = False) -> tuple[RunState, LogPoint]:
  """A whole run in one program: the pure function that sweeps ``vmap`` over hyper and key.

  ``params`` is the starting point (default: the problem's, zero). ``num_steps`` must be a
  multiple of ``log_every``. Returns the final state and one ``LogPoint`` per ``log_every``
  iterations (leaves with a leading axis of size num_steps // log_every).
  """
  if num_steps % log_every:
    raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")
  state = init_state(problem, method, hyper, key, params)
  return run_chunk(problem, method, hyper, state, num_logs=num_steps // log_every,
                   log_every=log_every, record_params=record_params)


def initial_log_point(problem, method: Method, hyper: Hyperparameters, state: RunState,
                      record_params: bool = False) -> LogPoint:
  _, schedule = make_optimizer(method, hyper, problem.num_samples)
  reported = reported_params(state)
  extras = problem.metrics(reported) if hasattr(problem, "metrics") else None
  return LogPoint(state.step, problem.objective(reported), schedule(state.step),
                  reported if record_params else None, extras)

