"""Data parallelism of one run: its minibatches sharded over a 1-D mesh of devices.

A run on d > 1 devices (``mesh.data`` of a config) computes what the one-device run computes:
the engines (``driver.py``, ``game.py``) put a sharding constraint on each step's minibatch
(``shard_batch``: its batch axis split over the mesh's ``"data"`` axis), and XLA's SPMD
partitioner splits the per-sample work and sums the gradients with all-reduces. The parameters
and the optimizer state are replicated on every device, except the per-sample memory of the SAG
family (leaves of shape (n, ...) under a ``table`` field: ``memory.py``, ``svrg.py``), which is
sharded along the samples, so each device holds n / d rows (``state_shardings``). The data set
itself is replicated (``replicate``).

The mesh is static: a ``driver.Method`` or ``game.GameMethod`` carries it (``with_mesh``), so a
run on one device (no mesh) traces to the program it always had.

The mesh is made of global devices (``jax.devices()``), the same number from each process, so
that a run started on several hosts (``jax.distributed.initialize``) spans all of them; arrays
are placed from values every process holds alike (``distributed.put``), and read back with
``distributed.gather``, which gathers sharded arrays across processes.
"""

from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from deepfound import distributed

DATA_AXIS = "data"
MEMORY_FIELD = "table"  # the field of a rule's state that holds its per-sample memory


def data_mesh(num_devices: int) -> Mesh | None:
  """A 1-D mesh of ``num_devices`` global devices along ``DATA_AXIS``, or None for one device.

  With one process these are ``jax.devices()[:num_devices]``; with several, the first
  ``num_devices / process_count`` devices of each process (``num_devices`` must be a multiple of
  the number of processes), so that every process takes part.
  """
  if num_devices == 1:
    return None
  devices, processes = jax.devices(), jax.process_count()
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"a mesh of {num_devices} devices, but there are {len(devices)}")
  if processes == 1:
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))
  if num_devices % processes:
    raise ValueError(f"a mesh of {num_devices} devices does not split evenly over the "
                     f"{processes} processes")
  per_process = num_devices // processes
  chosen = [d for p in range(processes)
            for d in [d for d in devices if d.process_index == p][:per_process]]
  if len(chosen) != num_devices:
    raise ValueError(f"a mesh of {num_devices} devices needs {per_process} from each process; "
                     "some process has fewer")
  return Mesh(np.asarray(chosen), (DATA_AXIS,))


def with_mesh(method: Any, mesh: Mesh | None) -> Any:
  """A copy of a frozen method (``driver.Method``, ``game.GameMethod``) whose minibatches of
  ``method.batch_size`` are sharded over ``mesh`` (its ``mesh`` field); a batch that does not
  split over the mesh is refused."""
  if mesh is not None and method.batch_size % mesh_size(mesh):
    raise ValueError(f"batch_size {method.batch_size} does not split over a mesh of "
                     f"{mesh_size(mesh)} devices")
  method = copy.copy(method)
  object.__setattr__(method, "mesh", mesh)
  return method


def mesh_size(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(tree: Any, mesh: Mesh | None, batch_size: int, axis: int = 0) -> Any:
  """``tree`` (a minibatch, or a page of them) with the leaves whose axis ``axis`` holds the
  batch sharded along that axis over the mesh: b entries, or k b for k rows per sample (a GAN's
  packs, stored pack after pack); other leaves (a step's noise key) are left to the compiler.
  The identity without a mesh. A constraint only places values: what is computed is the same."""
  if mesh is None:
    return tree
  spec = P(*([None] * axis), DATA_AXIS)

  def constrain(leaf):
    if jnp.ndim(leaf) <= axis or jnp.shape(leaf)[axis] % batch_size or not jnp.shape(leaf)[axis]:
      return leaf
    return jax.lax.with_sharding_constraint(leaf, NamedSharding(mesh, spec))

  return jax.tree.map(constrain, tree)


def _is_memory(path) -> bool:
  return any(isinstance(key, jax.tree_util.GetAttrKey) and key.name == MEMORY_FIELD
             for key in path)


def state_shardings(state: Any, mesh: Mesh, num_samples: int | None) -> Any:
  """The sharding of each leaf of a run's state: along the samples for a per-sample memory
  (a leaf under a ``table`` field whose first axis has ``num_samples`` entries), replicated for
  everything else. Raises ``ValueError`` if such a memory's n does not divide over the mesh."""
  size = mesh_size(mesh)

  def sharding(path, leaf):
    if (num_samples is None or not _is_memory(path) or jnp.ndim(leaf) < 1
        or jnp.shape(leaf)[0] != num_samples):
      return replicated(mesh)
    if num_samples % size:
      raise ValueError(f"the per-sample memory of {num_samples} samples does not split over a "
                       f"mesh of {size} devices")
    return NamedSharding(mesh, P(DATA_AXIS))

  return jax.tree_util.tree_map_with_path(sharding, state)


def constrain(tree: Any, shardings: Any) -> Any:
  """``tree`` with the given shardings (a pytree like it, or one sharding for all leaves), as a
  constraint on traced values and placing concrete ones (``distributed.put``)."""
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree)):
    return jax.lax.with_sharding_constraint(tree, shardings)
  return distributed.put(tree, shardings)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
  """``tree`` (the problem's data, the hyperparameters) replicated on every device of the mesh;
  unchanged without a mesh."""
  return tree if mesh is None else distributed.put(tree, replicated(mesh))
