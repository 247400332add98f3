"""The on-device driver: runs a registered update rule on a problem inside one compiled program.

A run is a pure function of (problem, hyperparameters, key): ``init_state`` then ``run_chunk``
repeatedly. ``run_chunk`` is one ``jax.jit`` of a ``lax.scan`` over log blocks; a log block runs
``log_every`` steps (in pages of samples drawn ahead, see ``_draw_page``) and then evaluates the
full objective once, on the device. The host only sees chunk boundaries (progress, checkpoints);
chunks of equal length never retrace. Because everything is a pure function, ``jax.vmap`` over
hyperparameters and keys gives many runs in one program (``run`` is the whole trajectory in a
single call, the form a sweep vmaps). ``run_on_indices`` steps through given sample indices
instead, to compare against a reference implementation step for step.

What a step computes comes from the rule's spec (``registry.RuleSpec``): its transformation and
the gradient oracle it needs (``oracles.py``). The problem is a ``FiniteSum`` or an
``Expectation`` (``deepfound.problems.kinds``); this module is their engine (``engine.Engine``:
``init_state``, ``run_chunk_jit``, ``initial_log_point``, ``run``, ``reported_params``,
``final_params``, ``epochs``, ``failure``, ``final_facts``), registered at its end.

Per-step cost does not depend on n: one sample (or minibatch) is gathered, the gradient memory is
touched at those rows only (see ``memory.py``), and indices come from a counter-based PRNG
(uniform with replacement) or a permutation drawn once per epoch (shuffled epochs).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepfound.numerics import any_run
from deepfound.optim import lazy, schedules, sharding
from deepfound.optim import memory as memory_lib
from deepfound.optim.engine import BLOWUP_FACTOR, Failure, LogPoint, register_engine
from deepfound.optim.oracles import ORACLES
from deepfound.optim.registry import RuleContext, RuleSpec, get_rule, steps_per_epoch
from deepfound.optim.rules.sga import averaged_params, exponential_average
from deepfound.problems.kinds import (
  Expectation,
  FiniteSum,
  Proximal,
  SelectsIterate,
  StochasticFiniteSum,
  check_runnable,
  num_samples_of,
)

SAMPLINGS = ("uniform", "shuffle")
Problem = FiniteSum | Expectation  # the kinds this engine runs (a StochasticFiniteSum is a FiniteSum)


@dataclasses.dataclass(frozen=True, init=False)
class Method:
  """What is compiled into the program (hashable, static): a registered rule with its schedule,
  batch size, sampling, memory layout and options. Numbers that may vary between the runs of
  one program (learning rate, l0, ...) live in ``Hyperparameters`` instead.

  ``Method("sag", average_over_seen=True)``: keyword arguments beyond the shared ones are the
  rule's options (``RuleSpec.options``), defaults filled in. ``method.with_mesh(mesh)`` is the
  same method run data-parallel (``sharding.py``): each minibatch sharded over the mesh.
  """

  name: str
  schedule: str
  batch_size: int
  sampling: str
  memory: str
  tol: float | None
  options: tuple[tuple[str, Any], ...]  # the rule's options, sorted by name
  # Data parallelism: minibatches sharded over this mesh's "data" axis (``sharding.data_mesh``);
  # None: one device, the program as it always was.
  mesh: jax.sharding.Mesh | None
  # Steps unrolled into one iteration of the dense loop over a page's steps (``lax.scan``'s
  # unroll, at most the page; the lazy sparse path has its own loop and ignores it): None picks
  # the backend's default (``default_unroll``) when the program is traced.
  unroll: int | None
  # The decay of an exponential moving average of the iterates that the run reports in place of
  # its last iterate (``rules.sga.exponential_average``); None: no average.
  ema: float | None

  def __init__(self, name: str, schedule: str = "constant", batch_size: int = 1,
               sampling: str = "uniform", memory: str = "scalar", tol: float | None = None,
               unroll: int | None = None, ema: float | None = None, **options: Any):
    spec = get_rule(name)
    unknown = set(options) - {o.name for o in spec.options}
    if unknown:
      raise ValueError(f"update rule {name!r} has no option {', '.join(sorted(unknown))}; its "
                       f"options: {', '.join(o.name for o in spec.options) or 'none'}")
    for option in spec.options:
      option.validate("optim", options.get(option.name))
    for field, value, allowed in (("schedule", schedule, schedules.SCHEDULES),
                                  ("sampling", sampling, SAMPLINGS),
                                  ("memory", memory, memory_lib.LAYOUTS)):
      if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}, got {value!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if tol is not None and not (isinstance(tol, int | float) and np.isfinite(tol) and tol > 0):
      raise ValueError(f"tol must be a number > 0 or None, got {tol!r}")
    if unroll is not None and (isinstance(unroll, bool) or not isinstance(unroll, int)
                               or not 1 <= unroll <= PAGE_STEPS):
      raise ValueError(f"unroll must be an integer in [1, {PAGE_STEPS}] or None, got {unroll!r}")
    _check_ema(spec, ema)
    values = dict(name=name, schedule=schedule, batch_size=batch_size, sampling=sampling,
                  memory=memory, tol=None if tol is None else float(tol),
                  options=tuple(sorted(spec.resolve_options(options).items())), mesh=None,
                  unroll=unroll, ema=None if ema is None else float(ema))
    for field, value in values.items():
      object.__setattr__(self, field, value)

  def with_mesh(self, mesh: jax.sharding.Mesh | None) -> Method:
    """This method with its minibatches sharded over ``mesh`` (None: on one device). A rule
    that draws no samples (BGD's full gradients) has nothing to shard and refuses a mesh."""
    if mesh is not None and not self.draws_samples:
      raise ValueError(f"{self.name} takes full gradients: no minibatch to shard over a mesh")
    return sharding.with_mesh(self, mesh)

  def with_ema(self, ema: float | None) -> Method:
    """This method reporting an exponential moving average of decay ``ema`` (None: none)."""
    _check_ema(self.spec, ema)
    method = copy.copy(self)
    object.__setattr__(method, "ema", None if ema is None else float(ema))
    return method

  @property
  def label(self) -> str:
    """How progress lines and summaries name the method: the rule's name."""
    return self.name

  @property
  def spec(self) -> RuleSpec:
    return get_rule(self.name)

  @property
  def draws_samples(self) -> bool:
    return ORACLES[self.spec.oracle].draws_samples

  def context(self, learning_rate: optax.ScalarOrSchedule, num_samples: int | None,
              proximal: bool = False) -> RuleContext:
    return RuleContext(learning_rate, num_samples, self.batch_size, self.memory, dict(self.options),
                       proximal)


def _check_ema(spec: RuleSpec, ema: Any) -> None:
  if ema is None:
    return
  if isinstance(ema, bool) or not isinstance(ema, int | float) or not 0 < ema < 1:
    raise ValueError(f"ema must be a decay in (0, 1) or None, got {ema!r}")
  if spec.averages:
    raise ValueError(f"{spec.name} reports an average of its iterates already; ema applies to "
                     "rules that report their last iterate")


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
  # With a stopping tolerance (Method.tol): the weights at the last epoch end (else shape (0,))
  # and the step at which the run converged (-1 while it runs; a converged run idles).
  anchor: Any
  stopped_at: jax.Array
  # With a problem that selects its reported iterate (``select_by``, e.g. a flow's validation
  # NLL): the best log point so far (``Best``); else () (no leaves: older checkpoints resume).
  best: Any = ()


class Best(NamedTuple):
  """The log point with the smallest value of the problem's ``select_by`` metric so far: that
  value (inf before the first log point), its step (-1 before) and its reported iterate."""

  value: jax.Array
  step: jax.Array
  params: optax.Params


def selects(problem: Problem) -> str | None:
  """The metric whose smallest logged value selects the iterate a run reports at its end (its
  final metrics and saved parameters), or None: the last iterate (``kinds.SelectsIterate``)."""
  return problem.select_by if isinstance(problem, SelectsIterate) else None


def patience(problem: Problem) -> int | None:
  """Early stopping: a run that selects its iterate (``selects``) stops once this many log points
  in a row have not improved on the best; None: never."""
  return problem.patience if selects(problem) is not None else None


def _track_best(problem: Problem, state: RunState, point: LogPoint, log_every: int = 1) -> RunState:
  """``state`` with ``best`` moved to this log point if its metric is smaller (a NaN never is),
  and, with a ``patience``, stopped (``stopped_at``) when the best is that many log points old."""
  value = point.extras[selects(problem)].astype(state.best.value.dtype)
  better = (value < state.best.value) & (state.stopped_at < 0)  # frozen once the run stopped
  pick = lambda new, old: jnp.where(better, new, old)  # noqa: E731
  state = state._replace(best=Best(pick(value, state.best.value), pick(state.step, state.best.step),
                                   jax.tree.map(pick, reported_params(state), state.best.params)))
  wait = patience(problem)
  if wait:
    stale = (state.stopped_at < 0) & (state.step - state.best.step >= wait * log_every)
    state = state._replace(stopped_at=jnp.where(stale, state.step, state.stopped_at))
  return state


def has_l1(problem: Problem) -> bool:
  """Whether ``problem`` has an L1 term (``kinds.Proximal`` with l1 > 0)."""
  return isinstance(problem, Proximal) and bool(problem.l1)


def make_optimizer(method: Method, hyper: Hyperparameters, num_samples: int | None,
                   proximal: bool = False):
  """The optax transformation and the schedule for ``method`` with (traced) ``hyper``; with
  ``proximal`` (the problem has an L1 term) the rule must take proximal steps."""
  rate, schedule = rates(method, hyper)
  if method.spec.needs_finite_sum and num_samples is None:
    raise ValueError(f"{method.name} needs a finite sum; a stream has n = infinity")
  if proximal and not method.spec.proximal:
    raise ValueError(f"{method.name} takes no proximal step, so it cannot handle an L1 term; "
                     "use sgd or saga, or l1 = 0")
  transformation = method.spec.build(method.context(rate, num_samples, proximal))
  if method.ema is not None:
    transformation = optax.chain(transformation, exponential_average(method.ema))
  return transformation, schedule


def rates(method: Method, hyper: Hyperparameters) -> tuple[optax.ScalarOrSchedule, optax.Schedule]:
  """(the rule's step size: a number, or the schedule; the schedule), for ``method``'s schedule
  at ``hyper`` (``schedules.rate_and_schedule``)."""
  return schedules.rate_and_schedule(method.schedule, hyper.learning_rate, hyper.l0,
                                     hyper.strong_convexity)


def _optimizer(problem: Problem, method: Method, hyper: Hyperparameters):
  return make_optimizer(method, hyper, num_samples_of(problem), has_l1(problem))


def epochs_done(method: Method, num_samples: int, steps):
  """Per-sample gradients evaluated after ``steps`` iterations (a number or a NumPy array),
  over n, as the rule's spec counts them (BGD: n per iteration; SVRG: b per step plus n per
  snapshot; ...)."""
  steps = np.asarray(steps, np.float64)
  context = method.context(None, num_samples)
  return method.spec.sample_gradients(steps, context) / num_samples


def _shuffles(problem: Problem, method: Method) -> bool:
  return method.sampling == "shuffle" and method.draws_samples and isinstance(problem, FiniteSum)


def init_state(problem: Problem, method: Method, hyper: Hyperparameters, key: jax.Array,
               params: optax.Params | None = None, *,
               memory_at: optax.Params | None = None) -> RunState:
  """The state before the first step; ``params`` defaults to the problem's start (zero).

  With ``memory_at``, a SAG/SAGA gradient memory starts filled with every sample's gradient at
  those params (as lightning's SAG starts), instead of empty.
  """
  check_runnable(problem)
  params = problem.init_params() if params is None else params
  optimizer, _ = _optimizer(problem, method, hyper)
  if lazy.supports(problem, method):
    if memory_at is not None:
      raise ValueError("memory_at is not supported by the lazy (sparse) form of "
                       f"{method.name}")
    opt_state = lazy.init_memory(problem, method, params)
  else:
    opt_state = optimizer.init(params)
  if memory_at is not None:
    table, mean = problem.snapshot(memory_at, method.memory)
    gradient_sum = jax.tree.map(lambda m: m * problem.num_samples, mean)
    opt_state = memory_lib.fill_memory(opt_state, table, gradient_sum)
  if _shuffles(problem, method):
    order = _permutation(key, 0, problem.num_samples)
  else:
    order = jnp.zeros((0,), jnp.int32)
  anchor = _stop_weights(problem, params) if method.tol is not None else jnp.zeros((0,))
  best = ()
  if selects(problem) is not None:
    dtype = jax.tree.leaves(params)[0].dtype  # the metrics' precision
    best = Best(jnp.asarray(jnp.inf, dtype), jnp.full((), -1, jnp.int32),
                jax.tree.map(jnp.copy, params))
  state = RunState(params, opt_state, jnp.zeros((), jnp.int32), order, key, anchor,
                   jnp.full((), -1, jnp.int32), best)
  return _on_mesh(problem, method, state)


def _on_mesh(problem: Problem, method: Method, state: RunState) -> RunState:
  """``state`` replicated on ``method.mesh``, its per-sample memory sharded along the samples
  (``sharding.state_shardings``); unchanged without a mesh."""
  if method.mesh is None:
    return state
  shardings = sharding.state_shardings(state, method.mesh, num_samples_of(problem))
  return sharding.constrain(state, shardings)


def _stop_weights(problem: Problem, params):
  """The weights scikit-learn's stopping test compares: without the intercept for a linear
  model (``kinds.Proximal``), else every parameter."""
  return problem.coefficients(params) if isinstance(problem, Proximal) else params


def converged(problem: Problem, method: Method, state: RunState, params) -> RunState:
  """The epoch-end test: max |w - w_prev| / max |w| <= tol (scikit-learn's SAG criterion);
  records the step of convergence and the new anchor.

  Weights that are all zero and did not move over the epoch pass only where zero is a minimum
  (``_zero_is_stationary``). scikit-learn counts them as converged in every case, but they are
  also what a step too small for the run's precision leaves (flushed to zero, it moves nothing):
  that run has not converged.
  """
  weights = _stop_weights(problem, params)
  leaves = jax.tree.leaves(weights)
  change = max(jnp.max(jnp.abs(w - a)) for w, a in zip(leaves, jax.tree.leaves(state.anchor),
                                                          strict=True))
  largest = max(jnp.max(jnp.abs(w)) for w in leaves)
  # The full gradient only where some run's weights are zero (reduced over vmapped runs, so
  # that a sweep does not compute it at every epoch end).
  stationary = jax.lax.cond(any_run(largest == 0),
                            lambda: _zero_is_stationary(problem, method, params),
                            lambda: jnp.zeros((), bool))
  done = jnp.where(largest > 0, change <= method.tol * largest, (change == 0) & stationary)
  stopped_at = jnp.where(done & (state.stopped_at < 0), state.step, state.stopped_at)
  return state._replace(anchor=weights, stopped_at=stopped_at)


def _zero_is_stationary(problem: FiniteSum, method: Method, params) -> jax.Array:
  """Whether weights of zero (``_stop_weights``) minimize E at ``params``: every coefficient's
  gradient is within the L1 weight (0 without L1), up to tol times the largest gradient (the
  rounding of the proximal step). A full gradient, O(nnz + p): ``converged`` computes it only
  when some run's weights are zero."""
  gradient = jax.tree.leaves(_stop_weights(problem, problem.gradient(params)))
  threshold = problem.l1 if has_l1(problem) else 0.0
  excess = max(jnp.max(jnp.maximum(jnp.abs(g) - threshold, 0.0)) for g in gradient)
  scale = max(jnp.max(jnp.abs(g)) for g in gradient)
  return excess <= method.tol * scale


def _permutation(key: jax.Array, epoch: jax.Array, num_samples: int) -> jax.Array:
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_samples).astype(jnp.int32)


def _draw_page(problem: Problem, method: Method, state: RunState, page: int):
  """The samples of the next ``page`` steps, drawn at once, and the epoch permutation after them.

  Returns ((indices (page, b), batch with leaves (page, b, ...)), order). Every draw is a pure
  function of (key, step), so a run does not depend on how it is cut into pages, log blocks or
  chunks. Drawing a page at once matters on CPU: a threefry call per step inside the loop costs
  more than a SAG step, and gathering a page of rows overlaps the memory latency of a large X.
  """
  b = method.batch_size
  steps = state.step + jnp.arange(page, dtype=jnp.int32)
  if not isinstance(problem, FiniteSum):  # an Expectation (check_runnable: exactly one kind)
    batch = jax.vmap(lambda t: problem.draw(jax.random.fold_in(state.key, t), b))(steps)
    return _shard_page(method, (jnp.zeros((page, b), jnp.int32), batch)), state.order
  n = problem.num_samples
  if method.sampling == "uniform":
    draw = lambda t: jax.random.randint(jax.random.fold_in(state.key, t), (b,), 0, n,  # noqa: E731
                                        dtype=jnp.int32)
    indices, order = jax.vmap(draw)(steps), state.order
  else:
    # ``order`` is the permutation of the epoch of ``state.step``; a page (no longer than an
    # epoch) reaches at most into the next one. Within an epoch, step k takes samples
    # order[k b : (k + 1) b]; the last n % b samples of each permutation are skipped.
    per_epoch = steps_per_epoch(n, b)
    epoch = state.step // per_epoch
    crosses = (state.step + page) // per_epoch > epoch
    upcoming = jax.lax.cond(crosses, lambda: _permutation(state.key, epoch + 1, n),
                            lambda: state.order)
    slots = (steps % per_epoch)[:, None] * b + jnp.arange(b, dtype=jnp.int32)
    indices = jnp.where((steps // per_epoch == epoch)[:, None], state.order[slots], upcoming[slots])
    order = upcoming
  indices = _shard_page(method, indices)
  return _shard_page(method, (indices, _batches(problem, indices, state.key, steps))), order


def _shard_page(method: Method, page):
  """A page of drawn samples (leaves (page, b, ...)) sharded along b over ``method.mesh``."""
  return sharding.shard_batch(page, method.mesh, method.batch_size, axis=1)


_NOISE_STREAM = 1  # fold_in tag of a step's noise key, apart from its sampling key


def _batches(problem: Problem, indices: jax.Array, key: jax.Array, steps: jax.Array):
  """The batches of ``indices`` (steps, b); a stochastic finite sum's carry each step's noise key
  (a pure function of the run's key and the step, like the samples)."""
  if not isinstance(problem, StochasticFiniteSum):
    return jax.vmap(problem.batch)(indices)
  noise = jax.vmap(lambda t: jax.random.fold_in(jax.random.fold_in(key, t), _NOISE_STREAM))(steps)
  return jax.vmap(problem.noisy_batch)(indices, noise)


def make_step(problem: Problem, method: Method, optimizer: optax.GradientTransformationExtraArgs):
  """One iteration of ``method`` (whose transformation is ``optimizer``, from
  ``make_optimizer``): (params, opt_state), drawn samples -> (params, opt_state).

  ``drawn`` is the step's (indices (b,), batch); a rule whose oracle draws no samples (BGD) gets
  None. The rule's oracle computes the gradients and extra arguments its ``update`` takes. The
  loop carries only what the update changes: counters, keys and permutations live at the page
  level, which keeps the scan body small (on CPU, every extra carried value costs time in each
  iteration).
  """
  oracle = ORACLES[method.spec.oracle].compute

  def step(carry, drawn=None):
    params, opt_state = carry
    drawn = sharding.shard_batch(drawn, method.mesh, method.batch_size)
    updates, extra = oracle(problem, method.memory, params, drawn)
    updates, opt_state = optimizer.update(updates, opt_state, params, **extra)
    return optax.apply_updates(params, updates), opt_state

  return step


PAGE_STEPS = 256  # 100 KB of rows at p = 100: leaves the cache to the gradient memory
# A page of lazy sparse steps run by the compiled kernel (lazy_kernel): its plain steps are one
# call, and what is left to spread is the page's own work (its draws, the rebase test). On
# rcv1-shaped data (SAG, 10 epochs, one log block) pages of up to 256, 1,024 and 2,048 steps
# took 0.47-0.50, 0.41-0.53 and 0.47-0.49 us a step (medians of 9, two runs each): flat around
# 1,024, where the page's overhead is about 0.08 us a step.
KERNEL_PAGE_STEPS = 1024
# Steps per loop iteration by backend (``Method.unroll``'s default); measured by
# scripts/accelerator_check.py (results/bench/accelerator.md: step time against the unroll).
DEFAULT_UNROLL = {"cpu": 1, "gpu": 8}


def page_bound(problem: Problem, method: Method) -> int:
  """The most steps a page holds: ``KERNEL_PAGE_STEPS`` where the lazy path's compiled kernel
  runs them (``lazy.kernel_runs``), ``PAGE_STEPS`` otherwise."""
  if lazy.supports(problem, method) and lazy.kernel_runs(problem):
    return KERNEL_PAGE_STEPS
  return PAGE_STEPS


def default_unroll(backend: str | None = None) -> int:
  """The unroll of a dense step loop on ``backend`` (default: JAX's default backend)."""
  return DEFAULT_UNROLL.get(backend or jax.default_backend(), 1)


def resolve_unroll(method: Method) -> int:
  return method.unroll or default_unroll()


def largest_divisor_at_most(value: int, bound: int) -> int:
  return max(d for d in range(1, min(value, bound) + 1) if value % d == 0)


def reported_params(state: RunState) -> optax.Params:
  """The iterate whose objective is reported: the exponential moving average with
  ``Method.ema``, the Cesaro average for SGA, else the params."""
  return averaged_params(state.opt_state, state.params)


def final_params(state: RunState) -> optax.Params:
  """The iterate a finished run reports (its final metrics, its saved parameters): the best log
  point's where the problem selects one (``selects``), else ``reported_params``."""
  return state.best.params if isinstance(state.best, Best) else reported_params(state)


def log_point(problem: Problem, schedule: optax.Schedule, state: RunState, record_params: bool = False
              ) -> LogPoint:
  """The metrics of ``state``: E and the problem's metrics at the reported iterate."""
  reported = reported_params(state)
  return LogPoint(state.step, problem.objective(reported), schedule(state.step),
                  reported if record_params else None, problem.metrics(reported))


def _log(problem: Problem, method: Method, schedule: optax.Schedule, state: RunState,
         log_every: int, record_params: bool) -> tuple[RunState, LogPoint]:
  """The end of a log block: the state placed on the method's mesh, its log point, and the best
  iterate (and early stop) brought up to date where the problem selects one."""
  state = _on_mesh(problem, method, state)
  point = log_point(problem, schedule, state, record_params)
  if selects(problem) is not None:
    state = _track_best(problem, state, point, log_every)
  return state, point


def _lazy_block(one_run, problem: Problem, method: Method, hyper: Hyperparameters,
                state: RunState, *, page: int, log_every: int) -> RunState:
  """``one_run(problem, hyper, state)``: a log block on the lazy sparse path; under ``vmap``
  over runs that draw the same rows (a sweep over rates: the problem, the key and the step
  shared), the block of all runs at once with ``lazy.multi_run_steps``: one gather and one
  scatter of the rows a step for every run, stored side by side."""

  @jax.custom_batching.custom_vmap
  def block(problem, hyper, state):
    return one_run(problem, hyper, state)

  @block.def_vmap
  def _(axis_size, in_batched, problem, hyper, state):
    problem_b, _, state_b = in_batched
    shared = not any(jax.tree.leaves((problem_b, state_b.key, state_b.step, state_b.order)))
    if not shared or method.tol is not None or patience(problem) is not None:
      in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
      out = jax.vmap(one_run, in_axes=in_axes)(problem, hyper, state)
      return out, jax.tree.map(lambda _: True, out)
    runs = lambda tree, flags: jax.tree.map(  # noqa: E731
        lambda a, b: a if b else jnp.broadcast_to(a, (axis_size,) + jnp.shape(a)), tree, flags)
    hyper = runs(hyper, in_batched[1])
    params, memory = runs(state.params, state_b.params), runs(state.opt_state, state_b.opt_state)
    start = state.step
    carry = lazy.multi_begin(problem, method, params, memory, log_every)
    # (pages of the plain length: the kernel's longer ones do not serve this path)
    short = largest_divisor_at_most(page, PAGE_STEPS)

    def multi_page(_, carried):
      state, carry = carried
      drawn, order = _draw_page(problem, method, state, short)
      steps = state.step + jnp.arange(short, dtype=jnp.int32)
      page_rates = jax.vmap(lambda h: lazy.step_rates(rates(method, h)[0], steps,
                                                      carry.coordinates.dtype))(hyper)
      carry = lazy.multi_run_steps(problem, method, page_rates, carry, steps - start, drawn)
      return state._replace(step=state.step + short, order=order), carry

    state, carry = jax.lax.fori_loop(0, log_every // short, multi_page, (state, carry))
    params, memory = lazy.multi_end(problem, method, carry, log_every)
    out = state._replace(params=params, opt_state=memory)
    flags = state_b._replace(params=jax.tree.map(lambda _: True, params),
                             opt_state=jax.tree.map(lambda _: True, memory))
    return out, flags

  return block(problem, hyper, state)


def run_chunk(problem: Problem, method: Method, hyper: Hyperparameters, state: RunState, *,
              num_logs: int, log_every: int, record_params: bool = False
              ) -> tuple[RunState, LogPoint]:
  """``num_logs * log_every`` iterations; evaluates E every ``log_every`` of them (and keeps the
  reported iterate too with ``record_params``)."""
  optimizer, schedule = _optimizer(problem, method, hyper)
  step = make_step(problem, method, optimizer)
  is_lazy = lazy.supports(problem, method)

  # Steps run in pages of samples drawn ahead (see _draw_page); a page divides the log block
  # and, for shuffled epochs, is no longer than an epoch.
  bound = page_bound(problem, method)
  if _shuffles(problem, method):
    bound = min(bound, steps_per_epoch(problem.num_samples, method.batch_size))
  page = largest_divisor_at_most(log_every, bound)
  per_epoch = None
  if method.tol is not None:
    if not isinstance(problem, FiniteSum) or not method.draws_samples:
      raise ValueError("a stopping tolerance (tol) needs a finite sum and a stochastic rule")
    # Pages end at every epoch end, where the stopping test runs.
    per_epoch = steps_per_epoch(problem.num_samples, method.batch_size)
    page = largest_divisor_at_most(math.gcd(log_every, per_epoch), bound)

  def run_page(state):
    drawn, order = _draw_page(problem, method, state, page)
    carry = jax.lax.scan(lambda c, d: (step(c, d), None), (state.params, state.opt_state), drawn,
                         unroll=min(page, resolve_unroll(method)))[0]
    return state._replace(params=carry[0], opt_state=carry[1], step=state.step + page,
                          order=order)

  def stopping(page_fn, check):
    """``page_fn`` that idles once the run has stopped (converged, or early stopping), and tests
    convergence at epoch ends (pages never straddle one)."""
    if method.tol is None and not patience(problem):
      return page_fn

    def idle(carried):
      state = carried[0] if is_lazy else carried
      state = state._replace(step=state.step + page)
      return (state,) + tuple(carried[1:]) if is_lazy else state

    def wrapped(carried):
      state = carried[0] if is_lazy else carried
      carried = jax.lax.cond(state.stopped_at >= 0, idle, page_fn, carried)
      if method.tol is None:
        return carried
      state = carried[0] if is_lazy else carried
      at_end = (state.step % per_epoch == 0) & (state.stopped_at < 0)
      return jax.lax.cond(at_end, check, lambda c: c, carried)

    return wrapped

  def dense_check(state):
    return converged(problem, method, state, state.params)

  def lazy_block(problem, hyper, state):
    """A log block of one run on the lazy path (its arguments explicit: ``_lazy_block``)."""
    rate, _ = rates(method, hyper)

    def lazy_page(carried):
      state, carry, start = carried
      drawn, order = _draw_page(problem, method, state, page)
      steps = state.step + jnp.arange(page, dtype=jnp.int32)
      carry = lazy.run_steps(problem, method, rate, carry, steps, steps - start, drawn)
      return state._replace(step=state.step + page, order=order), carry, start

    def lazy_check(carried):
      state, carry, start = carried
      params, carry = lazy.current(problem, method, carry, state.step - start)
      return converged(problem, method, state, params), carry, start

    carry = lazy.begin(problem, method, state.params, state.opt_state, log_every)
    paged = stopping(lazy_page, lazy_check)
    state, carry, _ = jax.lax.fori_loop(0, log_every // page, lambda _, c: paged(c),
                                        (state, carry, state.step))
    params, opt_state = lazy.end(problem, method, carry, log_every)
    return state._replace(params=params, opt_state=opt_state)

  def log_block(state, _):
    if is_lazy:
      state = _lazy_block(lazy_block, problem, method, hyper, state, page=page,
                          log_every=log_every)
    elif method.draws_samples:
      paged = stopping(run_page, dense_check)
      state = jax.lax.fori_loop(0, log_every // page, lambda _, s: paged(s), state)
    else:
      carry = jax.lax.fori_loop(0, log_every, lambda _, c: step(c), (state.params, state.opt_state))
      state = state._replace(params=carry[0], opt_state=carry[1], step=state.step + log_every)
    return _log(problem, method, schedule, state, log_every, record_params)

  state, points = jax.lax.scan(log_block, state, None, length=num_logs)
  return _on_mesh(problem, method, state), points  # the state as it came in: chunks never recompile


run_chunk_jit = jax.jit(run_chunk,
                        static_argnames=("method", "num_logs", "log_every", "record_params"))


@functools.partial(jax.jit, static_argnames=("method", "record_params"))
def initial_log_point(problem: Problem, method: Method, hyper: Hyperparameters, state: RunState,
                      record_params: bool = False) -> LogPoint:
  """The log point of ``state`` before a run's first step."""
  _, schedule = _optimizer(problem, method, hyper)
  return log_point(problem, schedule, state, record_params)


@functools.partial(jax.jit, static_argnames=("method", "num_steps", "log_every", "record_params"))
def run(problem: Problem, method: Method, hyper: Hyperparameters, key: jax.Array,
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


@functools.partial(jax.jit, static_argnames=("method", "log_every", "record_params"))
def run_on_indices(problem: FiniteSum, method: Method, hyper: Hyperparameters, indices: jax.Array,
                   params: optax.Params | None = None, memory_at: optax.Params | None = None, *,
                   log_every: int = 1, record_params: bool = True) -> tuple[RunState, LogPoint]:
  """Steps through given samples: step t uses ``indices[t]`` (int, (T,) or (T, batch_size)).

  The sibling of ``run`` for comparing with a reference implementation (scikit-learn,
  lightning, a NumPy transcription) on the same sample sequence. ``params`` is the start;
  ``memory_at`` pre-fills a SAG/SAGA memory with the gradients at those params (see
  ``init_state``). Returns the final state and a ``LogPoint`` every ``log_every`` steps (T must
  be a multiple), with the reported iterate by default.
  """
  if not isinstance(problem, FiniteSum):
    raise TypeError("run_on_indices needs a FiniteSum (samples are chosen by index)")
  indices = jnp.asarray(indices, jnp.int32).reshape(len(indices), -1)
  num_steps = indices.shape[0]
  if indices.shape[1] != method.batch_size or num_steps % log_every:
    raise ValueError(f"indices of shape {indices.shape} do not fit batch_size "
                     f"{method.batch_size} and log_every {log_every}")
  state = init_state(problem, method, hyper, jax.random.PRNGKey(0), params, memory_at=memory_at)
  optimizer, schedule = _optimizer(problem, method, hyper)
  step = make_step(problem, method, optimizer)
  is_lazy = lazy.supports(problem, method)
  rate, _ = rates(method, hyper)

  def log_block(state, block_b):
    steps = state.step + jnp.arange(log_every, dtype=jnp.int32)
    drawn = (block_b, _batches(problem, block_b, state.key, steps))
    if is_lazy:  # in pages, as run_chunk's, so that the scale's rescales come at the same steps
      carry = lazy.begin(problem, method, state.params, state.opt_state, log_every)
      page = largest_divisor_at_most(log_every, page_bound(problem, method))
      paged = jax.tree.map(lambda a: a.reshape((log_every // page, page) + a.shape[1:]),
                           (steps, steps - state.step, drawn))
      carry = jax.lax.scan(lambda c, x: (lazy.run_steps(problem, method, rate, c, *x), None),
                           carry, paged)[0]
      params, opt_state = lazy.end(problem, method, carry, log_every)
    else:
      params, opt_state = jax.lax.scan(lambda c, d: (step(c, d), None),
                                       (state.params, state.opt_state), drawn)[0]
    state = state._replace(params=params, opt_state=opt_state, step=state.step + log_every)
    return _log(problem, method, schedule, state, log_every, record_params)

  state, points = jax.lax.scan(log_block, state,
                               indices.reshape(-1, log_every, method.batch_size))
  return _on_mesh(problem, method, state), points


def epochs(problem: Problem, method: Method, steps):
  """Passes over the data after ``steps`` (``epochs_done``); None for an expectation."""
  num_samples = num_samples_of(problem)
  return None if num_samples is None else epochs_done(method, num_samples, steps)


@jax.jit
def _finite(tree) -> jax.Array:
  """Whether every leaf of ``tree`` is finite (one program, not one per leaf)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
                           + [jnp.asarray(True)]))


def failure(rows: list[dict], state: RunState, limit: float) -> Failure | None:
  """The first log point whose objective is not finite or above ``limit``, or parameters that
  are not finite at the chunk's end."""
  bad = [r for r in rows if not math.isfinite(r["objective"]) or r["objective"] > limit]
  params_ok = bool(_finite(state.params))
  if not bad and params_ok:
    return None
  if not bad:
    what = "the parameters are not finite"
  elif math.isfinite(bad[0]["objective"]):
    what = (f"the objective reached {bad[0]['objective']:.4g}, over {BLOWUP_FACTOR:g} times its "
            "start")
  else:
    what = "the objective is not finite"
  return Failure(rows.index(bad[0]) if bad else len(rows),
                 bad[0]["step"] if bad else rows[-1]["step"], what)


def final_facts(problem: Problem, method: Method, state: RunState) -> dict[str, Any]:
  """With a stopping tolerance: whether the run converged, at which step and epoch. With a
  selected iterate (``selects``): the metric, the step it was taken at and its value there."""
  facts: dict[str, Any] = {}
  if isinstance(state.best, Best):
    step = int(state.best.step)
    facts.update(selected_by=selects(problem), selected_step=step if step >= 0 else None,
                 selected_value=float(state.best.value) if step >= 0 else None)
    if patience(problem):
      stopped = int(state.stopped_at)
      facts.update(patience=patience(problem), stopped_early=stopped >= 0,
                   stopped_step=stopped if stopped >= 0 else None)
  if method.tol is None:
    return facts
  stopped_at = int(state.stopped_at)
  converged = stopped_at >= 0
  return dict(facts, tol=method.tol, converged=converged,
              converged_step=stopped_at if converged else None,
              converged_epoch=(float(epochs_done(method, problem.num_samples, stopped_at))
                               if converged else None))


# This module is the engine (``engine.Engine``) of its problem kinds.
register_engine((FiniteSum, Expectation), sys.modules[__name__])
