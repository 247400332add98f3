"""Lazy ("just-in-time") SGD, SAG and SAGA on sparse rows: O(nnz of the row) per step.

On a sparse linear problem a step of SGD, SAG or SAGA at batch size 1 changes every coordinate,
but all coordinates outside the sampled row change in a predictable way:

* the L2 term shrinks every weight by c_t = 1 - tau_t l2;
* SAG and SAGA move every coordinate j along g_j / den, where g = sum_i G_i is the sum of the
  stored gradients and den is n (or, for SAG on its first pass, the samples seen so far); g_j
  changes only when a row holding feature j is visited;
* the L1 proximal step (SGD, SAGA) soft-thresholds every weight by tau_t l1.

As scikit-learn's and lightning's SAG do, the weights are stored as w = s v with a scalar scale s
(the product of the c_t): the shrinkage costs O(1) a step. In v the step of an untouched
coordinate is then v_j <- soft(v_j - q_t g_j, q_t lam) with q_t = tau_t / (s_{t+1} den) and
lam = den l1, the same for every coordinate. A coordinate records the step it was last brought
up to date; when its row is next sampled (and at every log point, epoch check and the end) the
missed steps are applied at once from the cumulative sums Q_k = sum_{t<k} q_t: v_j - (Q_k -
Q_last) g_j without L1, and with L1 a closed form of the thresholded walk (it moves toward zero,
stops there or crosses it once; the crossing step is found by a binary search in Q). The result
is the dense iteration's iterate, to rounding (the tests compare them in float64 step by step).

A rule's lazy form is a fact of its spec (``RuleSpec.lazy``, a ``registry.LazyForm``): whether it
keeps a gradient memory, SAG's or SAGA's direction, and the option that divides by the samples
seen so far; a new rule with one of these forms registers it and leaves this file alone.

The state between two log points is the rule's gradient memory (``LazyMemory``); within a log
block the driver carries a ``LazyCarry``. Writes into the large arrays are deferred by one step
(read, then write at the next step), which keeps XLA updating them in place, as in ``memory.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import optax

try:  # an experimental API: where a jax lacks it, the rebase's layout is left to XLA
  from jax.experimental.layout import Layout, with_layout_constraint
except ImportError:  # pragma: no cover
  Layout = with_layout_constraint = None

from deepfound.numerics import any_run, soft_threshold
from deepfound.optim import lazy_kernel
from deepfound.optim.registry import LazyForm
from deepfound.problems.kinds import Objective, SparseLinear

if TYPE_CHECKING:
  from deepfound.optim.driver import Method

# The scale s is reset to 1 (a "rebase": every weight brought up to date, O(p)) whenever it
# would otherwise fall below SCALE_FLOOR (the square root of the dtype's smallest normal number:
# v = w / s and the sums Q, which grow as 1 / s, keep that much headroom below overflow). The
# test runs once a page, on the product of the page's shrink factors 1 - tau_t l2: where s times
# that product would cross the floor, the page starts with a rebase; where the product alone
# crosses it (tau l2 near 1, or past it), the page runs a variant that tests before each step,
# and a step whose shrink would cross the floor folds its factor into v directly (exact for every
# factor: 0 when tau l2 = 1, which zeroes the old weights, and negative ones, which would flip
# the sign of s that the L1 thresholds take as positive). Under vmap (a sweep) each test is
# reduced over the runs (``numerics.any_run``), so that it stays a conditional, taken by all runs
# when one needs it (a rebase is exact for any run), never a select that pays O(p) every page.
# A rebase also comes every RESCALE_EVERY steps, whatever s: it restarts Q, whose rounding grows
# with its size, and bounds the array of cumulative sums (with L1) to RESCALE_EVERY + 1 entries:
# its binary searches stay in the cache however long the log block.
RESCALE_EVERY = 4096


def scale_floor(dtype) -> float:
  """The smallest scale s a lazy run lets the weights reach before a rebase."""
  return float(jnp.finfo(dtype).tiny) ** 0.5


class LazyMemory(NamedTuple):
  """What a lazy rule keeps between log blocks (its ``opt_state``)."""

  table: jax.Array  # (n, *slot) stored scales s_i (SAG, SAGA; NaN = unvisited with
  #                   average_over_seen); (0,) for SGD
  gradient_sum: jax.Array  # (p + 1, *slot): g = sum_i x_i s_i, the last row a padding slot;
  #                          (0,) for SGD
  intercept_sum: jax.Array  # (*slot,): sum_i s_i, the intercept's g
  num_seen: jax.Array  # int32 (): distinct samples visited (SAG's average_over_seen)


class LazyCarry(NamedTuple):
  """The state within a log block."""

  # (p + 1, width): per coordinate, v (the weights over the scale), g (SAG, SAGA) and Q at its
  # last update, packed side by side so that a step gathers and scatters one array (the last
  # row is the padding slot). ``_unpack`` names the parts.
  coordinates: jax.Array
  intercept: jax.Array  # (*slot,) the intercept (zero without one)
  scale: jax.Array  # () s, w = s v
  cumulative: jax.Array  # (R + 1,) Q at the steps since the last rebase (entry k - origin for
  #                        step k), +inf beyond the current step; R = min(block, RESCALE_EVERY);
  #                        with L1 only, else (0,)
  q_now: jax.Array  # () Q at the current step
  origin: jax.Array  # int32 () the step (within the block) of the last rebase
  table: jax.Array  # (n, *slot) stored scales (SAG, SAGA), as in LazyMemory
  intercept_sum: jax.Array
  num_seen: jax.Array
  pending: tuple  # the deferred writes: (columns (m,), packed rows (m, width), table index, row)


def form_of(method: Method) -> LazyForm:
  return method.spec.lazy


def _keeps_memory(method: Method) -> bool:
  return form_of(method).memory


def _over_seen(method: Method) -> bool:
  return form_of(method).over_seen(method.options)


def _slot(problem: SparseLinear) -> tuple[int, ...]:
  return (problem.num_classes,) if problem.loss == "multinomial" else ()


def init_memory(problem: SparseLinear, method: Method, params) -> LazyMemory:
  """The empty gradient memory of the lazy form of ``method``."""
  del params
  slot, dtype = _slot(problem), problem.dtype
  keeps = _keeps_memory(method)
  table = jnp.zeros((problem.num_samples if keeps else 0, *slot), dtype)
  if keeps and _over_seen(method):
    table = jnp.full_like(table, jnp.nan)
  gradient_sum = jnp.zeros(((problem.num_columns + 1) if keeps else 0, *slot), dtype)
  return LazyMemory(table, gradient_sum, jnp.zeros(slot, dtype), jnp.zeros((), jnp.int32))


def _pack(v, g, stamp):
  """(rows, *slot) v and g and (rows,) stamps as one (rows, width) array."""
  rows = v.shape[0]
  parts = [v.reshape(rows, -1)] + ([] if g is None else [g.reshape(rows, -1)])
  return jnp.concatenate(parts + [stamp.reshape(rows, 1)], axis=1)


def _unpack(packed, slot, keeps):
  """(v, g or None, stamp) of packed rows."""
  rows, size = packed.shape[0], math.prod(slot)
  v = packed[:, :size].reshape(rows, *slot)
  g = packed[:, size:2 * size].reshape(rows, *slot) if keeps else None
  return v, g, packed[:, -1]


def begin(problem: SparseLinear, method: Method, params, memory: LazyMemory, block_steps: int) -> LazyCarry:
  """The carry at the start of a log block of ``block_steps`` steps from ``params``."""
  p, dtype = problem.num_columns, problem.dtype
  coefficients = problem.coefficients(params)
  v = jnp.concatenate([coefficients, jnp.zeros((1,) + coefficients.shape[1:], dtype)], axis=0)
  keeps = _keeps_memory(method)
  coordinates = _pack(v, memory.gradient_sum if keeps else None, jnp.zeros((p + 1,), dtype))
  width = problem.indices.shape[1]
  pending = (jnp.full((width,), p, jnp.int32), jnp.zeros((width, coordinates.shape[1]), dtype),
             jnp.asarray(memory.table.shape[0], jnp.int32), jnp.zeros(_slot(problem), dtype))
  cumulative = jnp.zeros((0,), dtype)
  if problem.l1:
    cumulative = _fresh_sums(min(block_steps, RESCALE_EVERY) + 1, dtype)
  return LazyCarry(coordinates, problem.intercept(params), jnp.ones((), dtype), cumulative,
                   jnp.zeros((), dtype), jnp.zeros((), jnp.int32), memory.table,
                   memory.intercept_sum, memory.num_seen, pending)


def _fresh_sums(size: int, dtype) -> jax.Array:
  """Q of a rebase's step (0), and +inf for the steps to come."""
  return jnp.full((size,), jnp.inf, dtype).at[0].set(0.0)


def _threshold_walk(v, h, q_from, q_to, lam, cumulative, to_index):
  """v after the missed steps v <- soft(v - q_t h, q_t lam) for the steps between q_from and
  q_to (the cumulative sums Q at the last update and now; ``to_index`` is now's index in Q).

  With |h| <= lam the walk reaches zero and stays: soft(v - D h, D lam), D = Q_to - Q_from.
  Otherwise (say h > lam) it moves down by q (h + lam) while positive, takes one step that ends
  at min(0, .), and then moves down by q (h - lam); the crossing step is the first k with
  Q_{k+1} >= Q_from + v / (h + lam).
  """
  sign = jnp.where(h < 0, -1.0, 1.0).astype(v.dtype)
  vv, hh = v * sign, h * sign
  span = q_to - q_from
  small = soft_threshold(vv - span * hh, span * lam)
  target = q_from + jnp.where(vv > 0, vv, 0.0) / jnp.maximum(hh + lam, jnp.finfo(v.dtype).tiny)
  after = jnp.searchsorted(cumulative, target.reshape(-1), side="left").reshape(target.shape)
  crossed = after <= to_index
  after = jnp.clip(after, 1, cumulative.shape[0] - 1)
  q_before, q_after = cumulative[after - 1], cumulative[after]
  q_after = jnp.where(crossed, q_after, q_to)
  q_before = jnp.where(crossed, q_before, q_from)
  at_cross = vv - (q_before - q_from) * (hh + lam)
  step_q = q_after - q_before
  landed = jnp.minimum(0.0, at_cross - step_q * hh + step_q * lam)
  through = landed - (q_to - q_after) * (hh - lam)
  large = jnp.where(vv <= 0, vv - span * (hh - lam),
                    jnp.where(crossed, through, vv - span * (hh + lam)))
  return sign * jnp.where(hh <= lam, small, large)


def _catch_up(problem: SparseLinear, v, h, q_from, q_to, lam, cumulative, to_index):
  """Applies the steps a coordinate missed since Q was ``q_from`` (its stamp); ``h`` is None for
  SGD (no gradient memory)."""
  expand = lambda a: a.reshape(a.shape + (1,) * (v.ndim - a.ndim))  # noqa: E731
  q_from = expand(q_from)
  if not problem.l1:
    return v if h is None else v - (q_to - q_from) * h
  if h is None:
    return soft_threshold(v, (q_to - q_from) * lam)
  return _threshold_walk(v, h, q_from, q_to, lam, cumulative, to_index)


def _flush(carry: LazyCarry, local_step) -> LazyCarry:
  columns, rows, table_index, table_row = carry.pending
  coordinates = carry.coordinates.at[columns].set(rows)
  table = carry.table
  if table.shape[0]:
    table = table.at[table_index].set(table_row, mode="drop")
  cumulative = carry.cumulative
  if cumulative.shape[0]:
    cumulative = jax.lax.dynamic_update_index_in_dim(cumulative, carry.q_now,
                                                     local_step - carry.origin, 0)
  return carry._replace(coordinates=coordinates, table=table, cumulative=cumulative)


def _denominator(method: Method, num_seen, num_samples: int, dtype):
  if _over_seen(method):
    return jnp.maximum(num_seen, 1).astype(dtype)
  return jnp.asarray(num_samples, dtype)


def _prox_weight(method: Method, problem: SparseLinear, denominator):
  """lam: the L1 threshold per unit of q: den l1 with a memory (q = tau / (s den): SAGA), l1
  without (q = tau / s: SGD)."""
  return problem.l1 * (denominator if _keeps_memory(method) else 1.0)


def step(problem: SparseLinear, method: Method, carry: LazyCarry, local_step, rate, shrink,
         drawn, fold=None) -> LazyCarry:
  """One step at learning rate ``rate`` on the sample ``drawn`` = (index (1,), batch of one row);
  the scale moves by ``shrink`` = 1 - rate l2. Where ``fold`` holds (after a rebase), the factor
  goes into every v instead, once the row's gradient is taken at the old weights."""
  index, batch = drawn
  carry = _flush(carry, local_step)
  packed = carry.coordinates[batch[0][0]]
  old = carry.table[index[0]] if _keeps_memory(method) else None
  if fold is not None:
    carry = jax.lax.cond(fold, lambda c: _fold(problem, c, shrink), lambda c: c, carry)
  return _advance(problem, method, carry, packed, old, drawn, local_step, rate, shrink, fold)


def _advance(problem: SparseLinear, method: Method, carry: LazyCarry, packed, old, drawn,
             local_step, rate, shrink, fold=None) -> LazyCarry:
  """The arithmetic of a step on its gathered rows ``packed`` (m, width) and the sample's stored
  scale ``old`` (None without a memory): the carry's scalars and the deferred writes; it reads
  neither the coordinates nor the table (``step`` gathers them, ``multi_run_steps`` too, for
  every run at once)."""
  form, keeps, slot = form_of(method), _keeps_memory(method), _slot(problem)
  index, batch = drawn
  columns, values, target = batch[0][0], batch[1][0], batch[2][0]
  sample_weight = batch[3][0] if len(batch) > 3 else None
  i = index[0]
  n, dtype = problem.num_samples, packed.dtype
  den = _denominator(method, carry.num_seen, n, dtype)
  lam = _prox_weight(method, problem, den)

  v_rows, g_rows, stamps = _unpack(packed, slot, keeps)
  v_rows = _catch_up(problem, v_rows, g_rows, stamps, carry.q_now, lam, carry.cumulative,
                     local_step - carry.origin)

  outer = lambda a: values.reshape(values.shape + (1,) * a.ndim) * a  # noqa: E731
  w_rows = carry.scale * v_rows
  score = jnp.sum(outer(jnp.ones_like(carry.intercept)) * w_rows, axis=0) + carry.intercept
  new = problem.sample_scale(score[None], target[None],
                             None if sample_weight is None else sample_weight[None])[0]

  if fold is not None:
    v_rows = v_rows * jnp.where(fold, shrink, 1.0)
    shrink = jnp.where(fold, 1.0, shrink).astype(shrink.dtype)
  intercept_sum, num_seen = carry.intercept_sum, carry.num_seen
  if not keeps:
    direction, intercept_direction, g_new = outer(new), new, None
  else:
    if _over_seen(method):
      unvisited = jnp.isnan(old.reshape(-1)[0])
      old = jnp.where(jnp.isnan(old), 0.0, old)
      num_seen = num_seen + unvisited.astype(jnp.int32)
      den = jnp.maximum(num_seen, 1).astype(dtype)
    change = new - old
    g_new = g_rows + outer(change)
    if not form.unbiased:
      intercept_sum = intercept_sum + change
      direction, intercept_direction = g_new / den, intercept_sum / den
    else:
      direction = outer(change) + g_rows / den
      intercept_direction = change + intercept_sum / den
      intercept_sum = intercept_sum + change

  next_scale = carry.scale * shrink
  ratio = rate / next_scale
  v_rows = v_rows - ratio * direction
  if problem.l1:
    v_rows = soft_threshold(v_rows, ratio * problem.l1)
  intercept = carry.intercept
  if problem.fit_intercept:
    intercept = intercept - rate * intercept_direction
  q_now = carry.q_now + (ratio / den if keeps else ratio)
  rows = _pack(v_rows, g_new, jnp.broadcast_to(q_now, stamps.shape))
  return carry._replace(intercept=intercept, scale=next_scale, q_now=q_now,
                        intercept_sum=intercept_sum, num_seen=num_seen,
                        pending=(columns, rows, i, new))


def current(problem: SparseLinear, method: Method, carry: LazyCarry, local_step
            ) -> tuple[jax.Array, LazyCarry]:
  """All coordinates brought up to date at ``local_step``: (params, carry with the writes
  flushed)."""
  carry = _flush(carry, local_step)
  keeps = _keeps_memory(method)
  lam = _prox_weight(method, problem, _denominator(method, carry.num_seen, problem.num_samples,
                                                   carry.coordinates.dtype))
  v, g, stamps = _unpack(carry.coordinates, _slot(problem), keeps)
  v = _catch_up(problem, v, g, stamps, carry.q_now, lam, carry.cumulative,
                jnp.asarray(local_step - carry.origin, jnp.int32))
  w = (carry.scale * v)[:-1]
  if problem.fit_intercept:
    w = jnp.concatenate([w, carry.intercept[None]], axis=0)
  return w, carry


def end(problem: SparseLinear, method: Method, carry: LazyCarry, local_step) -> tuple[jax.Array, LazyMemory]:
  """(params, memory) at the end of a log block."""
  params, carry = current(problem, method, carry, local_step)
  keeps = _keeps_memory(method)
  _, g, _ = _unpack(carry.coordinates, _slot(problem), keeps)
  gradient_sum = g if keeps else jnp.zeros((0, *_slot(problem)), carry.coordinates.dtype)
  return params, LazyMemory(carry.table, gradient_sum, carry.intercept_sum, carry.num_seen)


def rebase(problem: SparseLinear, method: Method, carry: LazyCarry, local_step) -> LazyCarry:
  """Brings every coordinate up to date and resets the scale to 1 and Q to 0. Q restarts too:
  its increments tau / (s den) shrink back with s, and added to the large Q of a small s they
  would be lost to rounding."""
  params, carry = current(problem, method, carry, local_step)
  coefficients = problem.coefficients(params)
  v = jnp.concatenate([coefficients, jnp.zeros((1,) + coefficients.shape[1:], coefficients.dtype)])
  _, g, stamps = _unpack(carry.coordinates, _slot(problem), _keeps_memory(method))
  coordinates = _pack(v, g, jnp.zeros_like(stamps))
  columns, rows, _, table_row = carry.pending
  pending = (jnp.full_like(columns, problem.num_columns), jnp.zeros_like(rows),
             jnp.asarray(carry.table.shape[0], jnp.int32), table_row)
  cumulative = carry.cumulative
  if cumulative.shape[0]:
    cumulative = _fresh_sums(cumulative.shape[0], cumulative.dtype)
  return carry._replace(coordinates=coordinates, scale=jnp.ones_like(carry.scale),
                        q_now=jnp.zeros_like(carry.q_now), cumulative=cumulative,
                        origin=jnp.asarray(local_step, jnp.int32), pending=pending)


def _fold(problem: SparseLinear, carry: LazyCarry, shrink) -> LazyCarry:
  """Multiplies every weight by ``shrink`` in v itself (after a rebase: s = 1, all up to date)."""
  size = math.prod(_slot(problem))
  coordinates = carry.coordinates.at[:, :size].multiply(shrink)
  return carry._replace(coordinates=coordinates)


def step_rates(learning_rate: optax.ScalarOrSchedule, global_steps, dtype) -> jax.Array:
  """The rate of each of ``global_steps`` (a number or a schedule), in ``dtype``."""
  if callable(learning_rate):
    return jax.vmap(learning_rate)(global_steps).astype(dtype)
  return jnp.broadcast_to(jnp.asarray(learning_rate, dtype), global_steps.shape)


def run_steps(problem: SparseLinear, method: Method, learning_rate: optax.ScalarOrSchedule,
              carry: LazyCarry, global_steps, local_steps, drawn) -> LazyCarry:
  """``step`` over a page of samples (pages divide the log block: at most ``driver.PAGE_STEPS``
  steps, or ``driver.KERNEL_PAGE_STEPS`` where the kernel runs them), after a rebase where the
  page needs one (see ``RESCALE_EVERY``): the tests run per page, not per step, since a
  conditional in the step body costs more than the step. Only a page whose own shrink factors
  take s below the floor tests before each step. Where the compiled kernel runs the page
  (``kernel_runs``), it tests every step itself, at no cost."""
  dtype = carry.coordinates.dtype
  rates = step_rates(learning_rate, global_steps, dtype)
  shrinks = 1.0 - rates * jnp.asarray(problem.l2, dtype)
  floor = scale_floor(dtype)
  page, start = local_steps.shape[0], local_steps[0]
  span = carry.cumulative.shape[0] - 1 if carry.cumulative.shape[0] else RESCALE_EVERY
  # Where a factor is <= 0 (tau l2 >= 1) the page folds it: s stays > 0, as the L1 steps need.
  product = jnp.prod(jnp.maximum(shrinks, 0.0))  # underflows to 0 far below the floor
  strong = any_run(product < floor)
  due = any_run((start - carry.origin + page > span) | (carry.scale * product < floor))
  carry = jax.lax.cond(due, lambda c: rebase(problem, method, c, start), lambda c: c, carry)

  def at(i):
    """Step i's (local step, rate, shrink, draw)."""
    return local_steps[i], rates[i], shrinks[i], jax.tree.map(lambda a: a[i], drawn)

  def body(i, c):
    k, rate, shrink, d = at(i)
    return step(problem, method, c, k, rate, shrink, d)

  def guarded(i, c):
    k, rate, shrink, d = at(i)
    fold = any_run(c.scale * shrink < floor)
    c = jax.lax.cond(fold, lambda c: rebase(problem, method, c, k), lambda c: c, c)
    return step(problem, method, c, k, rate, shrink, d, fold)

  # Two loops, one of which runs no step, rather than a lax.cond between two scans: XLA's copy
  # insertion with region analysis (_xla_flags.py) copies the coordinates every step of a loop
  # inside a conditional (8.5 against 84 us a step of L1 SAGA on rcv1-shaped data).
  def loops(c):
    c = jax.lax.fori_loop(0, jnp.where(strong, page, 0), guarded, c)
    return jax.lax.fori_loop(0, jnp.where(strong, 0, page), body, c)

  if not kernel_runs(problem):
    return loops(carry)
  # The page in one XLA:CPU call (lazy_kernel.cc), the guarded steps included (it tests each
  # step as ``guarded`` does), where the program is lowered for the CPU; the loops elsewhere.
  return jax.lax.platform_dependent(
      carry, cpu=lambda c: lazy_kernel.run_page(problem, form_of(method), _over_seen(method), c,
                                                page, local_steps, rates, shrinks, drawn, floor),
      default=loops)


# ----------------------------------------------------------------------------------------------
# Many runs that draw the same rows (a sweep over rates): one gather and one scatter a step.
#
# Under ``vmap`` the per-run arrays get the runs as their leading axis, so a step's m rows are
# m x runs blocks far apart in memory (a run's copy of the coordinates after another's), and on
# rcv1-shaped data a vmapped step of 64 runs cost about as much as 64 single steps. The
# multi-run carry stores the coordinates (p + 1, runs, width) and the table (n, runs): a row of
# every run is one contiguous block. ``driver`` uses it for a vmapped log block whose draws all
# runs share; the arithmetic is ``_advance``, vmapped over the runs, so the result is that of
# the runs one by one.


def _multi_axes(method: Method, coordinates=1, table=1) -> LazyCarry:
  """The runs axis of each leaf of a multi-run carry (for ``vmap``'s in_axes and out_axes):
  ``coordinates`` and ``table`` as given (None: a leaf left out), 0 for every other leaf."""
  return LazyCarry(coordinates=coordinates, intercept=0, scale=0, cumulative=0, q_now=0,
                   origin=0, table=table if _keeps_memory(method) else 0,  # SGD: (runs, 0)
                   intercept_sum=0, num_seen=0, pending=(None, coordinates, None, 0))


def _row_major(x):
  """``x`` in the default (row-major) layout."""
  if with_layout_constraint is None:  # pragma: no cover
    return x
  return with_layout_constraint(x, Layout(major_to_minor=tuple(range(x.ndim))))


def multi_begin(problem: SparseLinear, method: Method, params, memory: LazyMemory,
                block_steps: int) -> LazyCarry:
  """``begin`` of every run (``params`` and ``memory`` with the runs as leading axis)."""
  return jax.vmap(lambda p, m: begin(problem, method, p, m, block_steps),
                  out_axes=_multi_axes(method))(params, memory)


def multi_end(problem: SparseLinear, method: Method, carry: LazyCarry, local_step
              ) -> tuple[jax.Array, LazyMemory]:
  """``end`` of every run: (params, memory) with the runs as leading axis."""
  return jax.vmap(lambda c: end(problem, method, c, local_step),
                  in_axes=(_multi_axes(method),))(carry)


# A step of many runs spends most of its time on the (m, runs, width) block of the sampled row,
# m the longest row's non-zeros: on rows of skewed lengths most of it padding. The multi-run
# step therefore works on the row's first w entries, w the smallest of MULTI_BUCKETS widths
# (m / B, 2 m / B, ..., m) that holds the row's last stored column, chosen by ``lax.switch``:
# the gather and the arithmetic of a step (the scatter of its rows at the next step drops the
# entries past that width).
# The result is the same (padding entries point at the spare coordinate p with value 0).
MULTI_BUCKETS = 8


def _bucket_widths(width: int, buckets: int | None = None) -> tuple[int, ...]:
  """The widths a multi-run step may work on, for rows padded to ``width`` entries
  (``MULTI_BUCKETS`` of them unless ``buckets`` says)."""
  buckets = buckets or MULTI_BUCKETS
  return tuple(sorted({max(1, -(-width * (b + 1) // buckets)) for b in range(buckets)}))


def _bucket(columns, num_columns: int, widths: tuple[int, ...]):
  """The index in ``widths`` of the smallest width holding every stored entry of ``columns``
  (padding: ``num_columns``), wherever the padding lies."""
  extent = jnp.max(jnp.where(columns < num_columns,
                             jnp.arange(1, columns.shape[0] + 1, dtype=jnp.int32), 0))
  # (not jnp.searchsorted: its default is a while loop, a few kernels more a step)
  return jnp.sum(extent > jnp.asarray(widths[:-1], jnp.int32)).astype(jnp.int32)


def _multi_step(problem: SparseLinear, method: Method, carry: LazyCarry, local_step, rate, shrink,
                drawn, fold=None) -> LazyCarry:
  """``step`` of every run on the same drawn row (``rate`` and ``shrink`` per run), on the
  row's first entries only (``_bucket_widths``)."""
  keeps, size = _keeps_memory(method), math.prod(_slot(problem))
  index, batch = drawn
  full = batch[0].shape[-1]
  widths = _bucket_widths(full)
  columns, rows, table_index, table_row = carry.pending
  # The previous step's rows; the entries past its width point past the spare coordinate p and
  # are dropped (a scatter in a conditional would copy the coordinates).
  coordinates = carry.coordinates.at[columns].set(rows, mode="drop")
  table = carry.table
  if keeps:
    table = table.at[table_index].set(table_row, mode="drop")
  cumulative = carry.cumulative
  if cumulative.shape[-1]:
    cumulative = jax.vmap(lambda c, q, o: jax.lax.dynamic_update_index_in_dim(
        c, q, local_step - o, 0))(cumulative, carry.q_now, carry.origin)
  old = table[index[0]] if keeps else None
  small = carry._replace(coordinates=None, table=None, cumulative=cumulative)
  axes = _multi_axes(method, coordinates=None, table=None)

  def advance(w, small, coordinates):
    part = (index, (batch[0][:, :w], batch[1][:, :w]) + tuple(batch[2:]))
    packed = coordinates[part[1][0][0]]
    advanced = jax.vmap(
        lambda c, k, o, r, f: _advance(problem, method, c, k, o, part, local_step, r, f, fold),
        in_axes=(axes, 1, 0 if keeps else None, 0, 0),
        out_axes=axes._replace(pending=(None, 1, None, 0)))(small, packed, old, rate, shrink)
    _, new_rows, i, new = advanced.pending
    padded = jnp.zeros((full,) + new_rows.shape[1:], new_rows.dtype).at[:w].set(new_rows)
    written = jnp.where(jnp.arange(full) < w, batch[0][0], problem.num_columns + 1)
    return advanced._replace(pending=(written, padded, i, new))

  advanced = jax.lax.switch(_bucket(batch[0][0], problem.num_columns, widths),
                            [lambda c, x, w=w: advance(w, c, x) for w in widths], small,
                            coordinates)
  if fold is not None:  # after the row is read at the old weights (``step``)
    coordinates = jax.lax.cond(
        fold, lambda c: c.at[:, :, :size].multiply(shrink[None, :, None].astype(c.dtype)),
        lambda c: c, coordinates)
  return advanced._replace(coordinates=coordinates, table=table)


def multi_run_steps(problem: SparseLinear, method: Method, rates, carry: LazyCarry, local_steps,
                    drawn) -> LazyCarry:
  """``run_steps`` of every run on the same page of drawn rows: ``rates`` (runs, page), a
  multi-run carry (``multi_begin``). The rebase tests are taken over all runs, as under vmap."""
  dtype = carry.coordinates.dtype
  rates = rates.astype(dtype)
  shrinks = 1.0 - rates * jnp.asarray(problem.l2, dtype)
  floor = scale_floor(dtype)
  page, start = local_steps.shape[0], local_steps[0]
  span = carry.cumulative.shape[-1] - 1 if carry.cumulative.shape[-1] else RESCALE_EVERY
  product = jnp.prod(jnp.maximum(shrinks, 0.0), axis=1)
  strong = jnp.any(product < floor)
  due = jnp.any((start - carry.origin + page > span) | (carry.scale * product < floor))
  axes = _multi_axes(method)

  def rebased(c, k):
    c = jax.vmap(lambda one: rebase(problem, method, one, k), in_axes=(axes,), out_axes=axes)(c)
    # The vmapped rebase moves the runs axis ahead and back: without this, XLA lays out the
    # conditional's result runs-major and transposes it back every page (80 us a step).
    return c._replace(coordinates=_row_major(c.coordinates), table=_row_major(c.table))
  carry = jax.lax.cond(due, lambda c: rebased(c, start), lambda c: c, carry)

  def body(i, c):
    d = jax.tree.map(lambda a: a[i], drawn)
    return _multi_step(problem, method, c, local_steps[i], rates[:, i], shrinks[:, i], d)

  def guarded(i, c):
    d = jax.tree.map(lambda a: a[i], drawn)
    k, shrink = local_steps[i], shrinks[:, i]
    fold = jnp.any(c.scale * shrink < floor)
    c = jax.lax.cond(fold, lambda c: rebased(c, k), lambda c: c, c)
    return _multi_step(problem, method, c, k, rates[:, i], shrink, d, fold)

  carry = jax.lax.fori_loop(0, jnp.where(strong, page, 0), guarded, carry)
  return jax.lax.fori_loop(0, jnp.where(strong, 0, page), body, carry)


def kernel_runs(problem: SparseLinear) -> bool:
  """Whether ``run_steps`` hands a page's plain steps to the compiled kernel (``lazy_kernel``)
  on the CPU: it is built and enabled, covers ``problem``, and the CPU is the default backend."""
  return (lazy_kernel.available() and lazy_kernel.supports(problem)
          and jax.default_backend() == "cpu")


def rebase_period(learning_rate: float, l2: float, dtype) -> float:
  """About how many steps at a constant ``learning_rate`` pass between two rebases."""
  shrink = abs(1.0 - learning_rate * l2)
  if shrink >= 1.0:
    return float(RESCALE_EVERY)
  if shrink == 0.0:
    return 1.0
  return min(float(RESCALE_EVERY), max(1.0, math.log(scale_floor(dtype)) / math.log(shrink)))


def frequent_rebase_warning(learning_rate: float, l2: float, dtype) -> tuple[str, ...]:
  """A warning where the weights' shrinkage makes the lazy path rebase (O(p)) more often than
  once in 256 steps: exact still, but closer to a dense step's cost."""
  period = rebase_period(learning_rate, l2, dtype)
  if period >= 256:
    return ()
  return (f"optim.learning_rate * problem.l2 = {learning_rate * l2:.4g}: the lazy sparse updates "
          f"bring every weight up to date (O(p)) every {period:.0f} steps; a lower rate keeps "
          "them O(nnz)",)


def supports(problem: Objective, method: Method) -> bool:
  """Whether ``method`` runs lazily on ``problem``: a sparse linear problem, a rule with a lazy
  form, one sample a step, and no average of the iterates (``Method.ema`` moves every weight
  every step: O(p))."""
  return (isinstance(problem, SparseLinear) and method.spec.lazy is not None
          and method.batch_size == 1 and getattr(method, "ema", None) is None)

