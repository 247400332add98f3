"""Per-sample gradient memory shared by SAG, SAGA and SVRG.

The memory is a device array indexed by sample. Two layouts:

* ``"pytree"``: one full gradient per sample, leaves of shape ``(n, *param.shape)``. Works for any
  model (a Flax MLP's parameters included) and costs O(n p) memory.
* ``"scalar"``: for linear models, where grad E_i(b) = x_i (x) s_i for a per-sample scale s_i
  (a scalar for binary logistic and least squares, a vector of K logits for multinomial): store
  s_i only, shape ``(n, *param.shape[1:])``, O(n) memory instead of O(n p). Updates then need the
  sample's features ``x_i`` and scale ``s_i`` as extra arguments.

Writes are deferred by one step (``PendingWrite``). Inside a ``lax.scan`` a body that *reads*
``table[i]`` and then *writes* ``table[i]`` of a loop-carried array makes XLA copy the whole table
on every iteration (measured: ~35 us per step at n = 200,000 on CPU instead of ~0.02 us). We
instead flush the previous step's write first and read afterwards, which XLA does in place; the
result is the same iteration, and ``flushed_table`` gives the memory as the chapter defines it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepfound.numerics import batch_mean, batch_sum

LAYOUTS = ("pytree", "scalar")


class PendingWrite(NamedTuple):
  """A memory write deferred to the next update (see module docstring)."""

  index: jax.Array  # int32, shape (b,): the slots to write; n (out of range: no write) at init.
  entries: Any  # like one batch of table rows: leaves of shape (b, *row_shape).


def batch_indices(index: jax.typing.ArrayLike) -> jax.Array:
  """Returns ``index`` as an int32 vector of shape (b,) (a scalar index gives b = 1)."""
  return jnp.atleast_1d(jnp.asarray(index, dtype=jnp.int32))


def add_batch_axis(tree: Any, index: jax.typing.ArrayLike) -> Any:
  """Adds the leading batch axis to per-sample values when ``index`` is a scalar."""
  if jnp.ndim(index) == 0:
    return jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], tree)
  return tree


def first_occurrence(index_b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """For a batch of indices, where each one first occurs, and whether it is that occurrence.

  A minibatch drawn with replacement may hold a sample twice; the memory must count it once.
  O(b^2) in the batch size b, independent of n.
  """
  if index_b.shape[0] == 1:
    return jnp.zeros((1,), jnp.int32), jnp.ones((1,), bool)
  same = index_b[:, None] == index_b[None, :]
  first = jnp.argmax(same, axis=1).astype(jnp.int32)
  return first, first == jnp.arange(index_b.shape[0], dtype=jnp.int32)


class Layout:
  """How per-sample gradients are stored and turned back into gradients."""

  name: str

  def init_table(self, params: optax.Params, num_samples: int) -> Any:
    raise NotImplementedError

  def entries(self, sample_gradients: Any, sample_scale: jax.Array | None) -> Any:
    """What is stored for a batch, leaves of shape (b, *row_shape)."""
    raise NotImplementedError

  def total(self, entries: Any, sample_features: jax.Array | None) -> Any:
    """Sum over the batch of the gradients that ``entries`` stand for (shaped like params)."""
    raise NotImplementedError

  def unstored(self, sample_gradients: Any, sample_scale, sample_features) -> Any:
    """Batch mean of the part of the gradients that the memory does not hold (e.g. L2)."""
    raise NotImplementedError


class PytreeLayout(Layout):
  name = "pytree"

  def init_table(self, params, num_samples):
    return jax.tree.map(lambda p: jnp.zeros((num_samples, *jnp.shape(p)), jnp.result_type(p)), params)

  def entries(self, sample_gradients, sample_scale):
    del sample_scale
    return sample_gradients

  def total(self, entries, sample_features):
    del sample_features
    return jax.tree.map(batch_sum, entries)

  def unstored(self, sample_gradients, sample_scale, sample_features):
    return jax.tree.map(lambda g: jnp.zeros_like(g[0]), sample_gradients)


class ScalarLayout(Layout):
  name = "scalar"

  def init_table(self, params, num_samples):
    params = _single_array(params)
    return jnp.zeros((num_samples, *params.shape[1:]), params.dtype)

  def entries(self, sample_gradients, sample_scale):
    del sample_gradients
    if sample_scale is None:
      raise ValueError("the scalar memory layout needs the extra argument sample_scale")
    return jnp.asarray(sample_scale)

  def total(self, entries, sample_features):
    if sample_features is None:
      raise ValueError("the scalar memory layout needs the extra argument sample_features")
    # sum_k x_k (x) s_k: (b, p) x (b, *slot) -> (p, *slot). Written as a broadcast product and a
    # sum rather than a dot: XLA fuses it with its neighbours, where a tiny dot is its own kernel.
    return batch_sum(_outer(sample_features, entries.astype(sample_features.dtype)))

  def unstored(self, sample_gradients, sample_scale, sample_features):
    sample_gradients = _single_array(sample_gradients)
    stored = self.total(self.entries(None, sample_scale), sample_features)
    return batch_mean(sample_gradients) - stored / sample_gradients.shape[0]


def _outer(features_bp: jax.Array, scale_b: jax.Array) -> jax.Array:
  """Per-sample outer products x_k (x) s_k, shape (b, p, *slot)."""
  slot_ndim = scale_b.ndim - 1
  return (features_bp.reshape(features_bp.shape + (1,) * slot_ndim)
          * scale_b.reshape(scale_b.shape[:1] + (1,) + scale_b.shape[1:]))


def _single_array(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  if len(leaves) != 1:
    raise ValueError(
        "the scalar memory layout is for linear models whose parameters are one array; "
        f"got a pytree with {len(leaves)} leaves (use memory='pytree')"
    )
  return leaves[0]


def get_layout(name: str) -> Layout:
  if name == "pytree":
    return PytreeLayout()
  if name == "scalar":
    return ScalarLayout()
  raise ValueError(f"unknown memory layout {name!r}; expected one of {', '.join(LAYOUTS)}")


def empty_pending(table: Any, batch_size: int) -> PendingWrite:
  num_samples = jax.tree.leaves(table)[0].shape[0]
  return PendingWrite(
      index=jnp.full((batch_size,), num_samples, jnp.int32),
      entries=jax.tree.map(lambda t: jnp.zeros((batch_size, *t.shape[1:]), t.dtype), table),
  )


def flush(table: Any, pending: PendingWrite) -> Any:
  """Applies a deferred write; duplicates in ``pending.index`` carry identical entries, and the
  out-of-range index of an empty write is dropped."""
  return jax.tree.map(
      lambda t, e: t.at[pending.index].set(e.astype(t.dtype), mode="drop"), table, pending.entries
  )


def gather(table: Any, index_b: jax.Array) -> Any:
  return jax.tree.map(lambda t: t[index_b], table)


def memory_bytes(layout: str, params: optax.Params, num_samples: int) -> int:
  """Bytes the gradient table of ``layout`` takes for ``num_samples`` samples."""
  table = jax.eval_shape(lambda p: get_layout(layout).init_table(p, num_samples), params)
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(table))


class SampleBatch(NamedTuple):
  """The per-sample inputs of one update, with the batch axis made explicit."""

  index: jax.Array  # int32 (b,)
  entries: Any  # what the memory stores for them, leaves (b, *row_shape)
  features: jax.Array | None  # (b, p): x_k, needed by the scalar layout
  unstored: Any  # like params: batch mean of the gradient part the memory does not hold


def check_index(index, num_samples: int, batch_size: int | None) -> None:
  """Raises ``ValueError`` for an index that would corrupt the memory: not integers, not of
  shape (batch_size,) (or a scalar when batch_size is 1; any vector or scalar when batch_size
  is None), or outside [0, n). A traced index
  (inside ``jit``) cannot be looked at here: it must keep that contract, as the driver's do;
  ``checked_index`` checks one at run time under ``jax.experimental.checkify``."""
  if isinstance(index, jax.core.Tracer):
    return
  values = np.asarray(index)
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"index must hold integers, got dtype {values.dtype}")
  shapes = [(batch_size,)] + ([()] if batch_size == 1 else [])
  if batch_size is None and values.ndim > 1:
    raise ValueError(f"index must be a scalar or a vector, got shape {values.shape}")
  if batch_size is not None and values.shape not in shapes:
    raise ValueError(f"index must have shape ({batch_size},){' or ()' if batch_size == 1 else ''} "
                     f"for batch_size={batch_size}, got {values.shape}")
  if values.size and (values.min() < 0 or values.max() >= num_samples):
    raise ValueError(f"index must lie in [0, {num_samples}), got {values.tolist()}")


def checked_index(index: jax.Array, num_samples: int) -> jax.Array:
  """``index``, with a run-time check that it lies in [0, n), for code under ``jit``.

  The check is a ``checkify.check``: call this inside a function wrapped by
  ``jax.experimental.checkify.checkify`` (then ``err.throw()`` raises on a bad index)::

      def step(params, state, i):
        i = deepfound.optim.memory.checked_index(i, n)
        ...
      err, (params, state) = jax.jit(checkify.checkify(step))(params, state, i)
      err.throw()
  """
  from jax.experimental import checkify

  index = jnp.asarray(index)
  checkify.check(jnp.all((index >= 0) & (index < num_samples)),
                 "index {index} outside [0, {n})", index=index, n=jnp.asarray(num_samples))
  return index


def read_batch(layout: Layout, updates: Any, index, sample_scale=None, sample_features=None,
               regularizer_gradient=None) -> SampleBatch:
  """Parses the ``updates`` and extra arguments that SAG, SAGA and SVRG share.

  With the scalar layout, the part of grad E_i that is not x_i s_i (an L2 term, say) is
  ``regularizer_gradient`` when the caller knows it, else mean_k(h_k - x_k s_k). Passing it is
  also faster on CPU: the subtraction makes XLA copy the parameters in the loop body and give up
  on executing the body's kernels back to back (measured 0.6 vs 0.2 us per SAG step).
  """
  index_b = batch_indices(index)
  gradients_b = add_batch_axis(updates, index)
  for leaf in jax.tree.leaves(gradients_b):
    if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != index_b.shape[0]:
      raise ValueError(f"with an index of shape {jnp.shape(index)}, the per-sample gradients need a "
                       f"leading batch axis of size {index_b.shape[0]}; got a leaf of shape "
                       f"{jnp.shape(leaf)}")
  scale_b = None if sample_scale is None else add_batch_axis(sample_scale, index)
  features_b = None if sample_features is None else add_batch_axis(sample_features, index)
  if layout.name == "scalar" and regularizer_gradient is not None:
    unstored = regularizer_gradient
  else:
    unstored = layout.unstored(gradients_b, scale_b, features_b)
  return SampleBatch(index_b, layout.entries(gradients_b, scale_b), features_b, unstored)


def exchange(
    table: Any, pending: PendingWrite, index_b: jax.Array, entries_b: Any
) -> tuple[Any, Any, PendingWrite, jax.Array]:
  """Flushes the previous write, reads rows ``index_b``, and defers writing ``entries_b`` there.

  Returns ``(table, old_entries, pending, is_first)``. Rows repeated within the batch are written
  with the entries of their first occurrence, and ``is_first`` (bool, (b,)) marks the occurrences
  that count, so that a duplicated sample enters the memory once.
  """
  table = flush(table, pending)
  old_entries = gather(table, index_b)
  first, is_first = first_occurrence(index_b)
  if index_b.shape[0] > 1:
    entries_b = jax.tree.map(lambda e: e[first], entries_b)
  return table, old_entries, PendingWrite(index_b, entries_b), is_first


def masked_difference(new: Any, old: Any, mask_b: jax.Array) -> Any:
  """(new - old) on the rows where ``mask_b`` holds, zero elsewhere."""

  def diff(n, o):
    mask = mask_b.reshape((-1,) + (1,) * (n.ndim - 1)).astype(n.dtype)
    return (n - o.astype(n.dtype)) * mask

  return jax.tree.map(diff, new, old)


def unvisited_rows(rows: Any) -> jax.Array:
  """bool (b,): which gathered rows still hold the NaN of a never-written row."""
  leaf = jax.tree.leaves(rows)[0]
  return jnp.isnan(leaf.reshape(leaf.shape[0], -1)[:, 0])


def flushed_table(state: Any) -> Any:
  """The gradient memory G of a SAG/SAGA state, deferred write applied, as the chapter defines it
  (rows never visited read 0, also where ``average_over_seen`` marks them with NaN)."""
  table = flush(state.table, state.pending)
  if getattr(state, "num_seen", None) is not None:
    table = jax.tree.map(lambda t: jnp.where(jnp.isnan(t), 0.0, t), table)
  return table


def fill_memory(opt_state: Any, table: Any, gradient_sum: optax.Updates) -> Any:
  """``opt_state`` with every SAG/SAGA gradient memory in it pre-filled, as lightning starts.

  ``table`` holds every sample's stored gradient in the state's layout (e.g. the first output of
  a finite sum's ``snapshot(params, memory)``) and ``gradient_sum`` their sum (n times its
  second output). All samples then count as seen (for ``average_over_seen``). States of other
  rules pass through unchanged (SVRG takes its own snapshot at its first step).
  """

  def is_memory(node) -> bool:
    return isinstance(node, tuple) and {"table", "gradient_sum", "pending"} <= set(
        getattr(node, "_fields", ()))

  def fill(node):
    if not is_memory(node):
      return node
    batch_size = node.pending.index.shape[0]
    new_table = jax.tree.map(lambda old, t: jnp.asarray(t, old.dtype).reshape(old.shape),
                             node.table, table)
    fields = dict(table=new_table, pending=empty_pending(new_table, batch_size),
                  gradient_sum=jax.tree.map(lambda old, g: jnp.asarray(g, old.dtype),
                                            node.gradient_sum, gradient_sum))
    if getattr(node, "num_seen", None) is not None:
      fields["num_seen"] = jnp.asarray(jax.tree.leaves(new_table)[0].shape[0], jnp.int32)
    return node._replace(**fields)

  return jax.tree.map(fill, opt_state, is_leaf=is_memory)
