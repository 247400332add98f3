"""Many processes, one program: ``jax.distributed`` for the scripts, and the few collectives that
a sweep or a run needs on top of it.

``scripts/train.py`` and ``scripts/sweep.py`` define the flags (``define_flags``) and call
``initialize_from_flags`` right after parsing them, before any JAX computation:

- ``--distributed``: ``jax.distributed.initialize()`` with JAX's cluster auto-detection (SLURM,
  Open MPI, a Cloud TPU pod, or ``JAX_COORDINATOR_ADDRESS`` and its kin);
- ``--coordinator_address=host:port --num_processes=N --process_id=i``: explicit, for any other
  launcher; giving any of the three implies ``--distributed``, and all three go together;
- ``--distributed_timeout``: seconds to wait for every process to join (default 60).

Without them nothing changes: one process, its local devices. After ``initialize``,
``jax.devices()`` lists every process's devices, so a mesh over them spans the hosts; arrays
on it are global (each process holds its devices' shards), which ``put`` builds from host
values that every process has, and ``gather`` brings back to every host. ``on_main`` runs what
must happen once (taking the workdir's lock, writing the outputs) on process 0 and hands its
result, or its refusal, to every process.

Every function here but ``initialize`` is a no-op or a plain local call with one process. The
collective ones (``barrier``, ``gather`` of a global array, ``each_process``, ``on_main``) must
be called by every process, in the same order.

A process that dies or is killed leaves the others waiting in their next collective until
JAX's heartbeat gives up on it (100 s), and JAX then ends them with its own message; a launcher
should stop them all when one fails (``tests/scale/launch.py`` does).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from absl import flags
from jax.experimental import multihost_utils

from deepfound.errors import ConfigError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 60
# JAX's own deadline comes later than ours: past it, JAX's client ends the process with a fatal
# log and a stack trace (SIGABRT) instead of raising, so initialize gives up first.
_JAX_GRACE_S = 30
_EXPLICIT = ("coordinator_address", "num_processes", "process_id")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines ``--distributed``, ``--coordinator_address``, ``--num_processes``,
  ``--process_id`` and ``--distributed_timeout`` (see the module's docstring)."""
  flags.DEFINE_bool("distributed", False,
                    "Join a multi-process run through jax.distributed.initialize() with JAX's "
                    "cluster auto-detection (SLURM, Open MPI, TPU pod).", flag_values=flag_values)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0's coordinator (implies --distributed; with "
                      "--num_processes and --process_id).", flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, "Processes in the run (implies --distributed).",
                       flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, "This process's index, 0 to num_processes - 1 "
                       "(implies --distributed).", flag_values=flag_values)
  flags.DEFINE_integer("distributed_timeout", DEFAULT_TIMEOUT_S,
                       "Seconds to wait for every process to join.", flag_values=flag_values)


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
  """``initialize`` with the flags of ``define_flags``; returns whether the run is distributed
  (False, with nothing done, when none of them asks for it)."""
  explicit = {name: flag_values[name].value for name in _EXPLICIT}
  if not flag_values.distributed and all(v is None for v in explicit.values()):
    return False
  initialize(**explicit, timeout=flag_values.distributed_timeout)
  return True


def _check(coordinator_address: str | None, num_processes: int | None, process_id: int | None,
           timeout: float) -> None:
  """ConfigError in one line for flags that cannot work, before JAX is called."""
  given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
           "process_id": process_id}
  missing = [f"--{name}" for name, value in given.items() if value is None]
  if 0 < len(missing) < len(given):
    raise ConfigError("--coordinator_address, --num_processes and --process_id go together "
                      f"(or none of them, with --distributed for auto-detection): missing "
                      f"{' and '.join(missing)}")
  if not timeout > 0:
    raise ConfigError(f"--distributed_timeout must be > 0 seconds, got {timeout}")
  if missing:
    return
  if num_processes < 1:
    raise ConfigError(f"--num_processes must be >= 1, got {num_processes}")
  if not 0 <= process_id < num_processes:
    raise ConfigError(f"--process_id must be in [0, {num_processes}) for --num_processes="
                      f"{num_processes}, got {process_id}")
  host, _, port = coordinator_address.rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise ConfigError("--coordinator_address must be host:port with a port in 1-65535, got "
                      f"{coordinator_address!r}")


def _listening(address: str) -> bool:
  """Whether something accepts TCP connections at ``host:port``."""
  host, _, port = address.rpartition(":")
  try:
    with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
      return True
  except (OSError, ValueError):
    return False


def _timed_out(address: str | None, num_processes: int | None, process_id: int | None,
               timeout: float) -> str:
  """The line for an initialization that did not finish in time: who was missing, as far as
  this process can tell."""
  within = f"within {timeout:g} s (--distributed_timeout)"
  if address is None:
    return f"jax.distributed.initialize (cluster auto-detection) did not finish {within}"
  if process_id == 0:
    return (f"the coordinator at {address} (this process, 0 of {num_processes}) was not joined "
            f"by all {num_processes} processes {within}")
  if not _listening(address):
    return (f"could not reach the coordinator at {address} {within}: nothing accepts "
            "connections there (start process 0 there, or check --coordinator_address)")
  return (f"the coordinator at {address} answers, but not all {num_processes} processes joined "
          f"{within}")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
  """Joins this process to a multi-process JAX run: ``jax.distributed.initialize``, with JAX's
  cluster auto-detection where the three arguments are None. Call it before any JAX
  computation; calling it again once initialized does nothing.

  The arguments are checked first, and every failure is a ``ConfigError`` in one line that
  names the address and the timeout: bad arguments, a cluster that cannot be detected, or
  processes that did not all join within ``timeout`` seconds (a coordinator that nobody
  listens at included). JAX's connection runs in a worker thread that this one waits on for
  ``timeout`` seconds at most (JAX's own deadline, later, ends the process from C++ rather than
  raise); a caller that gets the ``ConfigError`` should leave the process with ``os._exit``
  (``deepfound.cli.run_main`` does), since that thread may still be waiting. Waiting there,
  this thread still takes Ctrl-C.

  CPU collectives across processes use gloo (``jax_cpu_collectives_implementation``, JAX's
  default, set here unless already chosen: it must be set before the backend starts).
  """
  _check(coordinator_address, num_processes, process_id, timeout)
  if jax.distributed.is_initialized():
    return
  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  done, outcome = threading.Event(), {}

  def connect():
    try:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes, process_id=process_id,
                                 initialization_timeout=int(timeout) + _JAX_GRACE_S)
    except Exception as e:  # noqa: BLE001 - handed to the waiting thread
      outcome["error"] = e
    finally:
      done.set()

  threading.Thread(target=connect, name="jax.distributed", daemon=True).start()
  deadline = time.monotonic() + timeout
  while not done.wait(0.1):  # short waits: Ctrl-C is raised here at once
    if time.monotonic() > deadline:
      from jax._src import distributed as state  # the address that auto-detection found

      address = coordinator_address or state.global_state.coordinator_address
      raise ConfigError(_timed_out(address, num_processes, process_id, timeout))
  if "error" in outcome:
    error = outcome["error"]
    line = _first_line(error)
    if coordinator_address is None and "coordinator_address should be defined" in line:
      raise ConfigError("--distributed: no cluster detected (SLURM, Open MPI, a TPU pod); give "
                        "--coordinator_address, --num_processes and --process_id") from error
    where = f" (coordinator {coordinator_address})" if coordinator_address else ""
    raise ConfigError(f"jax.distributed.initialize failed{where}: {line}") from error


def is_main() -> bool:
  """Whether this is process 0, the one that writes the outputs."""
  return jax.process_index() == 0


def process_count() -> int:
  """Processes in the run (1 unless ``initialize`` joined others)."""
  return jax.process_count()


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier called ``name``; nothing with one
  process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def put(tree: Any, sharding: Any) -> Any:
  """``tree`` placed on the devices of ``sharding`` (one sharding for every leaf, or a pytree of
  them like ``tree``), which may span other processes' devices: every process passes the same
  values (or arrays of its own), and each one builds the shards of its own devices from them, so
  no value crosses hosts. (``jax.device_put`` cannot move an array committed to one local device
  onto devices of other processes.)"""
  if isinstance(sharding, jax.sharding.Sharding):
    return jax.tree.map(lambda leaf: _put_leaf(leaf, sharding), tree)
  return jax.tree.map(_put_leaf, tree, sharding)


def _put_leaf(leaf, sharding: jax.sharding.Sharding):
  dtype = getattr(leaf, "dtype", None)
  if sharding.is_fully_addressable or (dtype is not None
                                       and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)):
    return jax.device_put(leaf, sharding)
  values = np.asarray(leaf)
  return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def gather(tree: Any) -> Any:
  """The host (NumPy) values of a pytree whose arrays may be global: read from this process's
  devices where they hold all of an array (one device, replicated, or one process), gathered
  from every process where it is sharded over several (``process_allgather``: a collective, so
  every process calls it), as ``jax.device_get`` gets local arrays."""

  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:
      return np.asarray(x.addressable_shards[0].data)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(one, tree)


def _jsonable(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  raise TypeError(f"{type(value).__name__} cannot be handed between processes")


def each_process(value: Any) -> list[Any]:
  """Every process's ``value`` (JSON-able), in process order; ``[value]`` with one process."""
  if jax.process_count() == 1:
    return [value]
  data = np.frombuffer(json.dumps(value, default=_jsonable).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.int32(data.size))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:data.size] = data
  table = np.asarray(multihost_utils.process_allgather(padded))  # (processes, longest)
  return [json.loads(bytes(row[:size])) for row, size in zip(table, sizes, strict=True)]


def on_main(fn: Callable[[], T]) -> T:
  """``fn()`` on process 0 only, its outcome handed to every process: each returns its result
  (process 0 ``fn``'s own, the others as JSON reads it back) or raises, process 0 ``fn``'s own
  exception and the others a ``ConfigError`` with its line, so that all stop alike. With one
  process, ``fn()``."""
  if jax.process_count() == 1:
    return fn()
  result, error, payload = None, None, None
  if is_main():
    try:
      result = fn()
      payload = dict(result=result, error=None)
      json.dumps(payload, default=_jsonable)  # a result the others cannot get fails here
    except Exception as e:  # noqa: BLE001 - handed to every process, then raised again
      error = e
      payload = dict(result=None, error=_first_line(e))
  outcome = each_process(payload)[0]
  if error is not None:
    raise error
  if outcome["error"] is not None:
    raise ConfigError(f"process 0: {outcome['error']}")
  return result if is_main() else outcome["result"]


def _first_line(error: BaseException) -> str:
  return next((s.strip() for s in str(error).splitlines() if s.strip()), type(error).__name__)
