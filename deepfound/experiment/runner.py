"""config -> setup (data, problem, rule) -> on-device run in chunks, with metrics, checkpoints
and progress; the same call resumes an interrupted run.

A run started on several processes (``jax.distributed.initialize``) runs the same program on
every one, each calling orbax's save and restore; process 0 alone holds the workdir's lock,
writes config.json, metrics.jsonl, summary.json and params.npz, and prints progress, and the
others get its results and its refusals (``distributed.on_main``). With one process this is
the process that does everything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time

import jax
import ml_collections

from deepfound import distributed
from deepfound.errors import ConfigError
from deepfound.experiment import outputs
from deepfound.experiment.build import Setup, build, host_arrays, on_mesh
from deepfound.experiment.checkpoint import Checkpointer
from deepfound.experiment.config import RESUMABLE_KEYS, precision_scope, stored_config, validate
from deepfound.experiment.lock import WorkdirLock
from deepfound.experiment.progress import Progress
from deepfound.optim.engine import BLOWUP_FACTOR, engine_for
from deepfound.problems.kinds import HasFinalMetrics


class DivergenceError(RuntimeError):
  """The objective or the parameters became NaN or infinite, or the objective blew up."""


def run_experiment(config: ml_collections.ConfigDict, workdir: str, progress: bool = True,
                   given=()) -> dict:
  """Runs (or resumes) the experiment of ``config`` in ``workdir`` and returns its summary.

  The config is validated, the data loaded and the problem built (``build.build``: the model's
  builder, then its problem kind's ``KindSpec.build``); the problem's engine
  (``optim.engine.engine_for``) then runs it in compiled chunks of ``checkpoint_every`` steps,
  writing a metrics line every ``log_every`` steps and a checkpoint after every chunk. The same
  call on the same workdir resumes from the latest checkpoint (or extends a finished run to a
  larger ``num_steps``); a run diverges when its engine's check fails (for one rule: E not
  finite, or above 1000 max(|E(start)|, 1), or parameters not finite).

  Args:
    config: an experiment config (``base_config`` with a config file's and flags' changes).
    workdir: the run's directory: config.json, metrics.jsonl, checkpoints/, summary.json and
      params.npz are written there; a workdir holding another config's run is refused.
    progress: print a progress line per chunk on stderr.
    given: the keys set explicitly (the command line's overrides): refused where the run ignores
      them, even at their defaults (``config.validate``).

  Returns:
    The summary (what summary.json holds): the last metrics line, status "complete", the
    run's facts (steps per second, compile seconds, backend, E*, L) and the engine's final facts.

  Raises:
    ConfigError, DataError: a bad key or data file, before anything is written.
    DivergenceError: the run diverged (after writing the metrics up to the first bad point and a
      "diverged" summary).
  """
  validate(config, given)
  outputs.check_workdir(workdir)
  with precision_scope(config.precision):
    setup = on_mesh(config, build(config))
    if not Checkpointer.saved_steps(workdir):
      _check_start(config, setup)
    files = outputs.RunFiles(workdir)
    if not outputs.writable(workdir):  # a finished run on a read-only mount is still finished
      return _finished_read_only(config, setup, files)
    with contextlib.ExitStack() as held:

      def claim():  # process 0's: the workdir's lock, held until the run ends
        held.enter_context(WorkdirLock(workdir))

      distributed.on_main(claim)
      finished = distributed.on_main(lambda: _open_workdir(config, setup, files))
      if finished is not None:
        return finished
      return _train(config, setup, files, progress)


def _differing_keys(old, new, prefix: str = "") -> list[str]:
  if not (isinstance(old, dict) and isinstance(new, dict)):
    return [] if old == new else [prefix.rstrip(".") or "config"]
  return [key for name in sorted(set(old) | set(new))
          for key in _differing_keys(old.get(name), new.get(name), f"{prefix}{name}.")]


def _stored_run(config, setup: Setup, files: outputs.RunFiles) -> dict | None:
  """Checks, reading only, that the workdir holds this config's run (a larger num_steps extends
  it) on the same data, or no run; returns the summary of a run that is already complete."""
  for warning in setup.warnings if distributed.is_main() else ():
    print(f"warning: {warning}", file=sys.stderr)
  config_json = json.loads(config.to_json())
  if os.path.exists(files.config):
    stored = outputs.read_json(files.config)
    old = stored.get("config")
    if isinstance(old, dict):  # keys added since that run was made count at their defaults
      old = json.loads(stored_config(old).to_json())
    differing = [k for k in _differing_keys(old, config_json) if k not in RESUMABLE_KEYS]
    if differing:
      raise ConfigError(f"{files.workdir} holds a run with a different config ({', '.join(differing)} "
                        "differ); use another --workdir (only num_steps may change, to extend a "
                        "run, and mesh.data, the devices it runs on)")
    if stored.get("data", setup.fingerprint) != setup.fingerprint:
      raise ConfigError(f"the data changed since the run in {files.workdir} started (data.name="
                        f"{config.data.name}, fingerprint {setup.fingerprint['sha256'][:12]} against "
                        f"{stored['data']['sha256'][:12]}); use another --workdir")
  if os.path.exists(files.summary):
    summary = outputs.read_json(files.summary)
    if summary.get("status") == "complete" and (summary.get("step") == config.num_steps
                                                 or summary.get("converged")):
      return summary
  return None


def _finished_read_only(config, setup: Setup, files: outputs.RunFiles) -> dict:
  """The summary of this config's complete run in a workdir that cannot be written (no lock is
  taken: nothing can write there); any other run there cannot go on, which is refused."""
  finished = _stored_run(config, setup, files)
  if finished is None:
    raise ConfigError(f"--workdir {files.workdir} is not writable, and the run asked for is not "
                      "finished there; make it writable or use another --workdir")
  return finished


def _open_workdir(config, setup: Setup, files: outputs.RunFiles) -> dict | None:
  """Writes config.json, or checks that the workdir holds this config's run on the same data (a
  larger num_steps extends it); returns the summary of a run that is already complete."""
  finished = _stored_run(config, setup, files)
  if finished is not None:
    return finished
  config_json = json.loads(config.to_json())
  done = Checkpointer.saved_steps(files.workdir)
  if done and max(done) > config.num_steps:
    raise ConfigError(f"num_steps = {config.num_steps} is below the {max(done)} steps this run has "
                      "done; a run can be extended, not shortened")
  if done and not files.metric_lines():
    raise ConfigError(f"{files.metrics} is missing or empty while {files.workdir} has checkpoints; "
                      f"delete {files.workdir} to start this run over")
  if os.path.exists(files.summary):
    os.remove(files.summary)  # a summary is written again when this (longer) run ends
  outputs.write_json(files.config, dict(config=config_json, resolved=setup.resolved,
                                        constants=setup.constants, data=setup.fingerprint))
  return None


def engine(setup: Setup):
  """The engine that runs the setup's problem (``optim.engine.engine_for``)."""
  return engine_for(setup.problem)


class _Chunks:
  """The compiled chunk programs of a run: every chunk but a shorter last one shares one
  program, so a run compiles at most twice and never retraces."""

  def __init__(self, setup: Setup, log_every: int):
    self._setup, self._log_every = setup, log_every
    self._compiled, self.compile_s = {}, 0.0

  def __call__(self, num_logs: int, state):
    if num_logs not in self._compiled:
      tic = time.perf_counter()
      self._compiled[num_logs] = engine(self._setup).run_chunk_jit.lower(
          self._setup.problem, self._setup.method, self._setup.hyper, state, num_logs=num_logs,
          log_every=self._log_every).compile()
      self.compile_s += time.perf_counter() - tic
    return self._compiled[num_logs]


def _initial_point(config, setup: Setup):
  runs = engine(setup)
  state = runs.init_state(setup.problem, setup.method, setup.hyper, jax.random.PRNGKey(config.seed))
  return state, jax.device_get(runs.initial_log_point(setup.problem, setup.method, setup.hyper,
                                                      state))


def _check_start(config, setup: Setup) -> None:
  """Refuses, before anything is written, a run whose objective at the start is not finite (a
  scale of the config that the precision cannot hold, data that overflow it)."""
  objective = float(_initial_point(config, setup)[1].objective)
  if not math.isfinite(objective):
    raise ConfigError(f"the objective at the start is {objective} in {config.precision}: a "
                      "config scale (problem.*, model.*) or the data overflow the precision")


def _start(config, setup: Setup, files: outputs.RunFiles, checkpointer: Checkpointer):
  """(state, start step, seconds already run): from the latest checkpoint, or step 0 with its
  metrics line written."""
  start_step = checkpointer.latest_step()
  if start_step is not None:
    runs = engine(setup)
    state = runs.init_state(setup.problem, setup.method, setup.hyper,
                            jax.random.PRNGKey(config.seed))
    kept = distributed.on_main(lambda: files.truncate_metrics(start_step))
    return checkpointer.restore(start_step, state), start_step, (kept[-1]["elapsed_s"] if kept else 0.0)
  state, first = _initial_point(config, setup)
  distributed.on_main(lambda: files.write_metrics(_rows(setup, jax.tree.map(lambda a: a[None], first),
                                                        0.0, 0.0)))
  return state, 0, 0.0


def _rows(setup: Setup, points, first_elapsed: float, seconds: float) -> list[dict]:
  runs = engine(setup)
  epochs = lambda step: runs.epochs(setup.problem, setup.method, step)  # noqa: E731
  return outputs.metric_rows(points, first_elapsed, seconds, epochs, setup.constants["optimum"])


def _train(config, setup: Setup, files: outputs.RunFiles, progress: bool) -> dict:
  with Checkpointer(files.workdir) as checkpointer:  # closed on every way out, before the exit
    state, start_step, elapsed_before = _start(config, setup, files, checkpointer)
    limit = distributed.on_main(
        lambda: BLOWUP_FACTOR * max(abs(files.metric_lines()[0]["objective"]), 1.0))
    logs_per_chunk = min(config.num_steps // config.log_every,
                         max(1, config.checkpoint_every // config.log_every))
    chunks = _Chunks(setup, config.log_every)
    chunks(min(logs_per_chunk, (config.num_steps - start_step) // config.log_every or 1), state)
    bar = Progress(setup.label, config.num_steps, start_step, enabled=progress and distributed.is_main())
    run_seconds, step = 0.0, start_step
    while step < config.num_steps:
      program = chunks(min(logs_per_chunk, (config.num_steps - step) // config.log_every), state)
      tic = time.perf_counter()
      state, points = program(setup.problem, setup.hyper, state)
      points = jax.device_get(points)  # waits for the chunk, so the timing covers it
      seconds = time.perf_counter() - tic
      run_seconds += seconds
      rows = _rows(setup, points, elapsed_before + run_seconds - seconds, seconds)
      _stop_if_diverged(rows, state, setup, files, chunks.compile_s, limit)
      stopped_at = int(state.stopped_at)
      if stopped_at >= 0:  # converged (optim.tol) or stopped early: the rows up to the first after it
        rows = rows[:next(k for k, r in enumerate(rows) if r["step"] >= stopped_at) + 1]
      distributed.on_main(lambda rows=rows: files.append_metrics(rows))
      step = int(state.step)
      checkpointer.save(step, state)
      bar.update(step, rows[-1]["objective"], rows[-1]["suboptimality"])
      if stopped_at >= 0:
        break
  timing = dict(steps_run=step - start_step, run_seconds=run_seconds,
                compile_s=chunks.compile_s, start_step=start_step,
                chunk_steps=logs_per_chunk * config.log_every)
  return _finish(setup, files, state, timing)


def _run_facts(setup: Setup, compile_s: float) -> dict:
  return dict(backend=jax.default_backend(), device_count=jax.device_count(),
              data_devices=setup.data_devices, process_count=jax.process_count(),
              compile_s=compile_s, optimum=setup.constants["optimum"],
              lipschitz=setup.constants["lipschitz"])


def _stop_if_diverged(rows, state, setup: Setup, files: outputs.RunFiles, compile_s: float,
                      limit: float) -> None:
  """Writes the rows before the first bad one and a "diverged" summary, then raises, if the
  engine's divergence check (``Engine.failure``) finds the chunk diverged."""
  failure = engine(setup).failure(rows, state, limit)
  if failure is None:
    return
  message = f"diverged: {failure.what} at step {failure.step} {setup.divergence_note}".rstrip()

  def write():
    files.append_metrics(rows[:failure.keep])
    last = files.metric_lines()
    outputs.write_json(files.summary, dict(last[-1] if last else {}, status="diverged",
                                           message=message, **_run_facts(setup, compile_s)))

  distributed.on_main(write)
  raise DivergenceError(message)


def _finish(setup: Setup, files: outputs.RunFiles, state, timing: dict) -> dict:
  """summary.json and params.npz of a complete run (written by process 0; every process
  computes them and returns the summary)."""
  summary = dict(
      distributed.on_main(lambda: files.metric_lines()[-1]),
      status="complete",
      steps_per_second=(timing["steps_run"] / timing["run_seconds"]
                        if timing["run_seconds"] > 0 else None),
      **_run_facts(setup, timing["compile_s"]),
      max_sample_lipschitz=setup.constants["max_sample_lipschitz"],
      learning_rate_used=setup.resolved["learning_rate"],
      resumed_from_step=timing["start_step"] or None,
      method=setup.label,
      chunk_steps=timing["chunk_steps"],
      gradient_memory_mb=setup.gradient_memory_mb,
  )
  summary.update(engine(setup).final_facts(setup.problem, setup.method, state))
  if isinstance(setup.problem, HasFinalMetrics):
    reported = engine(setup).final_params(state)
    final = jax.device_get(jax.jit(lambda problem, p: problem.final_metrics(p))(setup.problem,
                                                                                 reported))
    summary.update({name: float(value) for name, value in final.items()})
  arrays = {"params" + k: v for k, v in host_arrays(state.params).items()}
  arrays.update({"reported" + k: v
                 for k, v in host_arrays(engine(setup).final_params(state)).items()})

  def write():
    outputs.write_npz(files.params, arrays)
    outputs.write_json(files.summary, summary)

  distributed.on_main(write)
  return summary
