"""The lazy sparse step loop as one XLA:CPU custom call (``jax.ffi``), with lazy.py as fallback.

On the CPU a lazy SAG step written in JAX is some seventeen small XLA kernels inside a loop, and
their launches, not its O(nnz of the row) arithmetic, set its time (about 2 us a step against
scikit-learn's 0.5 to 0.8 us on rcv1-shaped data). ``lazy_kernel.cc`` runs a page of steps in
one call. It is built by ``pip install -e .`` (``setup.py``, against the FFI headers of the
jaxlib it builds with) where a C++17 compiler is found; where none is, or where the library does
not load, ``available()`` is False and ``lazy.run_steps`` runs its pure-JAX loop, which is also
the reference the tests compare the kernel to. It covers the scalar layout (binary logistic and
least squares) in float32 and float64, with or without a gradient memory, L1, an intercept and
sample weights; multinomial problems take the JAX loop.

``DEEPFOUND_LAZY_KERNEL=0`` in the environment turns the kernel off, and so does
``with lazy_kernel.enabled(False):`` around the programs to trace (the choice is made when a
program is traced, so the context clears JAX's caches on the way in and out).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.machinery
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

TARGET = "deepfound_lazy_page"
LIBRARY_STEM = "_lazy_kernel"  # the shared library's name before the extension suffix
LOSS_CODES = {"logistic": 0, "least_squares": 1}

ENABLED = os.environ.get("DEEPFOUND_LAZY_KERNEL", "1") != "0"


def library_path() -> Path | None:
  """The built library next to this file, if there is one."""
  here = Path(__file__).resolve().parent
  for suffix in importlib.machinery.EXTENSION_SUFFIXES:
    candidate = here / f"{LIBRARY_STEM}{suffix}"
    if candidate.is_file():
      return candidate
  return None


def source_digest() -> str | None:
  """The digest of ``lazy_kernel.cc`` next to this file (as setup.py builds it into the library),
  or None where the source is not installed."""
  source = Path(__file__).resolve().parent / "lazy_kernel.cc"
  return hashlib.sha256(source.read_bytes()).hexdigest()[:16] if source.is_file() else None


@functools.cache
def status() -> str:
  """"loaded", or why the kernel is not: no library, a library built from another source (a
  checkout changed since the install: rerun ``pip install -e .``), or one that does not load."""
  path = library_path()
  if path is None:
    return "no library (not built: `pip install -e .` with a C++17 compiler builds it)"
  try:
    library = ctypes.cdll.LoadLibrary(str(path))
    built_from = ctypes.cast(library.DeepfoundLazyKernelSource,
                             ctypes.CFUNCTYPE(ctypes.c_char_p))().decode()
    expected = source_digest()
    if expected is not None and built_from != expected:
      return (f"{path.name} was built from another lazy_kernel.cc ({built_from}, now {expected}): "
              "rerun `pip install -e .`")
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.DeepfoundLazyPage),
                                platform="cpu")
  except (OSError, AttributeError) as error:  # built for another jaxlib or platform
    return f"{path.name} does not load: {error}"
  return "loaded"


def _registered() -> bool:
  return status() == "loaded"


def available() -> bool:
  """Whether the kernel is built, loads, and is enabled (``ENABLED``)."""
  return ENABLED and _registered()


@contextlib.contextmanager
def enabled(flag: bool):
  """Traces the programs inside with the kernel on (where it is built) or off."""
  global ENABLED
  before = ENABLED
  ENABLED = bool(flag)
  jax.clear_caches()
  try:
    yield
  finally:
    ENABLED = before
    jax.clear_caches()


def supports(problem) -> bool:
  """Whether the kernel covers ``problem`` (a ``SparseLinear``): the scalar layout, float32 or
  float64."""
  return (problem.loss in LOSS_CODES
          and jnp.dtype(problem.dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)))


def run_page(problem, form, over_seen: bool, carry, count, local_steps, rates, shrinks, drawn,
             floor: float):
  """``count`` steps of the lazy loop from ``carry``, a ``lazy.LazyCarry`` whose deferred writes
  are flushed first; the result's deferred writes are empty, as after ``lazy.rebase``. A step
  whose shrink would take the scale below ``floor`` is the guarded step of ``lazy.run_steps``:
  a rebase, and the shrink folded into the weights. ``form`` is the rule's ``LazyForm``; the
  other operands are those of ``lazy.run_steps``' loop (the page's steps, rates, shrink factors
  and draws), of which the kernel takes the sample indices and reads their rows from
  ``problem``."""
  dtype = carry.coordinates.dtype
  columns, rows, table_index, _ = carry.pending
  coordinates = carry.coordinates.at[columns].set(rows)
  table = carry.table
  if table.shape[0]:
    table = table.at[table_index].set(carry.pending[3], mode="drop")
  index = drawn[0]  # the kernel reads the sampled rows from the data set itself
  page = local_steps.shape[0]
  weights = problem.weights if problem.weights is not None else jnp.zeros((0,), dtype)
  scalars = jnp.stack([carry.intercept, carry.scale, carry.q_now,
                       carry.intercept_sum]).astype(dtype)
  counters = jnp.stack([carry.origin, carry.num_seen, count]).astype(jnp.int32)
  shape = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)  # noqa: E731
  call = jax.ffi.ffi_call(
      TARGET,
      (shape(coordinates), shape(table), shape(carry.cumulative),
       jax.ShapeDtypeStruct((4,), dtype), jax.ShapeDtypeStruct((2,), jnp.int32)),
      vmap_method="sequential", input_output_aliases={0: 0, 1: 1, 2: 2})
  coordinates, table, cumulative, scalars, seen = call(
      coordinates, table, carry.cumulative, scalars, counters,
      local_steps.astype(jnp.int32), rates.astype(dtype), shrinks.astype(dtype),
      index.reshape(page).astype(jnp.int32), problem.indices.astype(jnp.int32),
      problem.values.astype(dtype), problem.targets.astype(dtype), weights.astype(dtype),
      loss=np.int64(LOSS_CODES[problem.loss]), keeps=np.int64(form.memory),
      unbiased=np.int64(form.unbiased), over_seen=np.int64(over_seen),
      fit_intercept=np.int64(problem.fit_intercept), num_columns=np.int64(problem.num_columns),
      num_samples=np.int64(problem.num_samples), l1=np.float64(problem.l1),
      floor=np.float64(floor))
  pending = (jnp.full_like(columns, problem.num_columns), jnp.zeros_like(rows),
             jnp.asarray(table.shape[0], jnp.int32), jnp.zeros_like(carry.pending[3]))
  return carry._replace(coordinates=coordinates, table=table, cumulative=cumulative,
                        intercept=scalars[0], scale=scalars[1], q_now=scalars[2],
                        intercept_sum=scalars[3], num_seen=seen[0], origin=seen[1],
                        pending=pending)
