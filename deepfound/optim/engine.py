"""What runs a problem kind on the device: the ``Engine`` protocol and the registry that gives
each problem kind (a protocol of ``deepfound.problems.kinds``) its engine.

An engine runs a problem as a pure function of (problem, method, hyperparameters, key), in
chunks of one compiled ``lax.scan``, so that the runner (``experiment/runner.py``) checkpoints and
resumes it and a sweep ``vmap``s it over hyperparameters and keys. Two engines are built in:

* ``deepfound.optim.driver``: one registered update rule on a ``FiniteSum``, a
  ``StochasticFiniteSum`` or an ``Expectation`` (17.1-17.4.2);
* ``deepfound.optim.game``: two players, each with its own rule, under a scheme, on a ``Game``
  (17.4.3).

The runner and the sweep see a problem's engine only through this protocol (``engine_for``), so a
new problem kind is a protocol, an engine that satisfies ``Engine`` and one ``register_engine``
call, from a user's own module too (``tests/test_extension.py`` registers one).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

# A run has diverged when its objective exceeds BLOWUP_FACTOR * max(|E(start)|, 1) (the
# ``limit`` of ``Engine.failure``): no stable step size takes a convex objective (or a network's
# loss) a thousand times above its start.
BLOWUP_FACTOR = 1000.0


class LogPoint(NamedTuple):
  """What a run reports every ``log_every`` steps (leaves get a leading axis in a chunk)."""

  step: jax.Array  # iterations done at this point
  objective: jax.Array  # the objective at the reported iterate (the payoff V for a game)
  learning_rate: jax.Array  # the schedule's value at this iteration count
  params: Any = None  # the reported iterate, when asked for (record_params=True)
  extras: Any = None  # the problem's own metrics (dict of scalars; may be empty)


@dataclasses.dataclass(frozen=True)
class Failure:
  """Where and how a run diverged: keep the first ``keep`` rows of the chunk's metrics, and
  report ``what`` (e.g. "the objective is not finite") at ``step``."""

  keep: int
  step: int
  what: str


class Engine(Protocol):
  """The functions the runner and the sweep call. ``method`` is the engine's static (hashable)
  description of the algorithm, ``hyper`` its traced numbers (a pytree: vmap over it), ``state``
  a pytree that the runner checkpoints. Every state has ``step`` (an int32 scalar) and
  ``stopped_at`` (int32, -1 while the run goes on; a run that stops early sets it)."""

  def init_state(self, problem, method, hyper, key: jax.Array, params=None) -> Any:
    """The state before the first step; ``params`` defaults to the problem's start."""

  def run_chunk_jit(self, problem, method, hyper, state, *, num_logs: int, log_every: int,
                    record_params: bool = False) -> tuple[Any, LogPoint]:
    """``num_logs * log_every`` steps from ``state`` as one jitted program (``method``,
    ``num_logs``, ``log_every`` and ``record_params`` static); a ``LogPoint`` per log block."""

  def initial_log_point(self, problem, method, hyper, state, record_params: bool = False
                        ) -> LogPoint:
    """The log point of ``state`` before the first step (jitted)."""

  def run(self, problem, method, hyper, key: jax.Array, params=None, *, num_steps: int,
          log_every: int, record_params: bool = False) -> tuple[Any, LogPoint]:
    """A whole run in one program: the pure function a sweep vmaps."""

  def reported_params(self, state) -> Any:
    """The iterate whose metrics are reported (an average, for averaging rules)."""

  def final_params(self, state) -> Any:
    """The iterate a finished run reports (its final metrics, its saved parameters): e.g. the
    best log point's by a validation metric; ``reported_params(state)`` where there is none."""

  def epochs(self, problem, method, steps) -> Any:
    """Passes over the data after ``steps`` (a number or NumPy array), or None where the
    problem has no finite n."""

  def failure(self, rows: list[dict], state, limit: float) -> Failure | None:
    """The divergence check of a chunk: its metric rows (host dicts) and its final state; a row
    whose objective exceeds ``limit`` counts as diverged where the engine applies that rule."""

  def final_facts(self, problem, method, state) -> dict[str, Any]:
    """Facts of a finished run for its summary (e.g. a stopping rule's outcome); may be empty."""


@runtime_checkable
class DataParallel(Protocol):
  """An engine's method that runs data-parallel: ``with_mesh(mesh)`` is the same method with
  each minibatch sharded over the mesh's ``"data"`` axis (``sharding.py``), its state placed by
  the engine's ``init_state`` and kept so by its chunks (``driver.Method``,
  ``game.GameMethod``); ``with_mesh(None)`` runs on one device."""

  def with_mesh(self, mesh: jax.sharding.Mesh | None) -> Any: ...


_ENGINES: list[tuple[type, Engine]] = []


def register_engine(kind: type | tuple[type, ...], engine: Engine) -> Engine:
  """Runs problems of ``kind`` (a runtime-checkable protocol, or a tuple of them) with
  ``engine``; call it at import time of the engine's module."""
  for one in kind if isinstance(kind, tuple) else (kind,):
    _ENGINES.append((one, engine))
  return engine


def _members(kind: type) -> int:
  return len(getattr(kind, "__protocol_attrs__", ()) or
             [name for name in dir(kind) if not name.startswith("_")])


def engine_for(problem) -> Engine:
  """The engine registered for ``problem``'s kind; ``TypeError`` if no registered kind fits.

  Protocols are structural, so a problem may satisfy several kinds (a finite sum that also has
  a ``sample`` method satisfies a small protocol that asks for ``sample`` only): the most
  specific kind that ``problem`` satisfies wins (the one with the most members), and among
  equally specific ones the one registered last.
  """
  matches = [(_members(kind), order, engine) for order, (kind, engine) in enumerate(_ENGINES)
             if isinstance(problem, kind)]
  if matches:
    return max(matches, key=lambda match: match[:2])[2]
  kinds = ", ".join(sorted({kind.__name__ for kind, _ in _ENGINES}))
  raise TypeError(f"no engine runs {type(problem).__name__}: it is none of the registered "
                  f"problem kinds ({kinds}; see deepfound.problems.kinds and "
                  "deepfound.optim.engine.register_engine)")
