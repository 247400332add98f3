"""Two-player games (17.4.3: GANs) on the device, each player stepped by a registered rule.

min_theta max_xi V(theta, xi): the generator (player 0, theta) minimizes its loss and the
discriminator (player 1, xi) minimizes its own (for a zero-sum game, -V). A ``GameMethod`` names
each player's rule (any rule of the registry that takes minibatch gradients: sgd, sga, adam, or a
user's own) with its schedule and options, and the scheme that orders their steps:

* ``simultaneous``: both players step from the gradients at (theta_t, xi_t);
* ``alternating``: k discriminator steps (``discriminator_steps``), each on a fresh minibatch,
  then one generator step against the updated discriminator (the usual GAN loop);
* ``extragradient``: both players step from (theta_t, xi_t) to an extrapolated point, and then
  from (theta_t, xi_t) again along the gradients at the extrapolated point (Korpelevich; Gidel et
  al. 2019 for GANs); the extrapolation leaves the rules' states untouched;
* ``optimistic``: simultaneous steps of 2 u_t - u_{t-1}, u_t the rule's update (optimistic
  gradient descent-ascent for sgd, optimistic Adam for adam: Daskalakis et al. 2018);
* ``svre``: extragradient on variance-reduced gradients (SVRE, Chavdarova, Gidel, Fleuret,
  Lacoste-Julien 2019), for a game that is a finite sum (``kinds.FiniteGame``). As SVRG does for
  one player, a snapshot w~ of both players and the full gradients mu at it are taken every
  ``svre_frequency`` steps (``optim.svre_frequency``; default one epoch, n // batch_size), and
  each minibatch gradient g_I(w) becomes g_I(w) - g_I(w~) + mu, at the extrapolation and at the
  update alike. Per-sample gradients of networks are too large to keep (SVRG's gradient memory
  in ``svrg.py`` holds n of them), so g_I(w~) is recomputed: four minibatch gradients a step and
  n per snapshot. With sgd for both players this is the paper's algorithm; other rules take the
  estimate as their gradient.

The schemes are a registry (``schemes.py``): each is a ``SchemeSpec``, registered in this module
after its step, with its options and whether it needs a finite game; a user's scheme registers
the same way.

One step of the game is one generator update. A run is a pure function of (problem, method,
hyperparameters, key), in chunks of ``lax.scan`` as for the single-player driver (``driver.py``),
so seeds and both players' learning rates ``vmap`` into one program, and the runner resumes it
from checkpoints. The problem is a ``kinds.Game``; this module is its engine
(``engine.Engine``: ``init_state``, ``run_chunk_jit``, ``initial_log_point``, ``run``,
``reported_params``, ``final_params``, ``epochs``, ``failure``, ``final_facts``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepfound.optim import driver, schedules, sharding
from deepfound.optim.engine import BLOWUP_FACTOR, Failure, LogPoint, register_engine
from deepfound.optim.registry import snapshot_period
from deepfound.optim.rules.sga import averaged_params, exponential_average
from deepfound.optim.schemes import SCHEMES, SchemeSpec, get_scheme, register_scheme
from deepfound.problems.kinds import FiniteGame, Game
from deepfound.registry import Option, positive

FULL_GRADIENT_CHUNK = 1024  # samples per batch when svre sums the full gradients
PLAYERS = ("generator", "discriminator")


@dataclasses.dataclass(frozen=True, init=False)
class GameMethod:
  """The static part of a game run: each player's rule (a ``driver.Method``), the scheme (a
  registered ``schemes.SchemeSpec``) with its options, and the minibatch size.

  ``GameMethod(sgd, sgd, scheme="alternating", discriminator_steps=5)``: keyword arguments
  beyond the shared ones are the scheme's options, defaults filled in. ``with_mesh(mesh)``
  shards every minibatch of both players over a mesh (``sharding.py``).
  """

  generator: driver.Method
  discriminator: driver.Method
  scheme: str
  batch_size: int
  options: tuple[tuple[str, Any], ...]  # the scheme's options, sorted by name
  mesh: jax.sharding.Mesh | None  # minibatches sharded over its "data" axis; None: one device

  def __init__(self, generator: driver.Method, discriminator: driver.Method,
               scheme: str = "simultaneous", batch_size: int = 64, **options: Any):
    if scheme not in SCHEMES:
      raise ValueError(f"scheme must be one of {', '.join(SCHEMES.names())}, got {scheme!r}")
    for player, method in zip(PLAYERS, (generator, discriminator), strict=True):
      spec = method.spec
      if spec.needs_finite_sum or spec.oracle != "minibatch":
        raise ValueError(f"the {player}'s rule {method.name} needs a finite sum or its own "
                         "gradient oracle; a game draws fresh samples every step: use a rule "
                         "taking minibatch gradients (sgd, sga, adam)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    resolved = get_scheme(scheme).resolve_options(options)
    for field, value in (("generator", generator), ("discriminator", discriminator),
                         ("scheme", scheme), ("batch_size", batch_size),
                         ("options", tuple(sorted(resolved.items()))), ("mesh", None)):
      object.__setattr__(self, field, value)

  def with_mesh(self, mesh: jax.sharding.Mesh | None) -> GameMethod:
    """This method with both players' minibatches sharded over ``mesh`` (None: one device)."""
    return sharding.with_mesh(self, mesh)

  @property
  def players(self) -> tuple[driver.Method, driver.Method]:
    return (self.generator, self.discriminator)

  @property
  def spec(self) -> SchemeSpec:
    return get_scheme(self.scheme)

  def option(self, name: str) -> Any:
    """The value of the scheme's option ``name``."""
    return dict(self.options)[name]

  @property
  def label(self) -> str:
    """How progress lines and summaries name the method: "<generator rule>/<discriminator rule>"."""
    return f"{self.generator.name}/{self.discriminator.name}"


class GameHyper(NamedTuple):
  """Both players' numeric settings (traced: vmap over either)."""

  generator: driver.Hyperparameters
  discriminator: driver.Hyperparameters


class Snapshot(NamedTuple):
  """svre: the snapshot w~ of both players, the full gradients mu at it, and the steps taken
  since the run began (a snapshot is taken when ``count % period == 0``)."""

  params: tuple[optax.Params, optax.Params]
  mean: tuple[optax.Updates, optax.Updates]
  count: jax.Array  # int32 ()


class GameState(NamedTuple):
  params: tuple[optax.Params, optax.Params]  # (generator, discriminator)
  opt_state: tuple[optax.OptState, optax.OptState]
  step: jax.Array  # int32 (): generator updates done
  key: jax.Array  # the run's key; step t draws from fold_in(key, t)
  stopped_at: jax.Array  # always -1 (games have no stopping test), as in driver.RunState
  # int32 (2,): the first step after which each player's parameters were not finite (-1: never),
  # so that a diverged run names the player that broke first.
  broken_at: jax.Array
  snapshot: Snapshot | tuple = ()  # svre's Snapshot; () for the other schemes


class OptimisticState(NamedTuple):
  inner: optax.OptState
  previous: optax.Updates  # u_{t-1}


def optimistic(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """Makes a rule optimistic: its update u_t becomes 2 u_t - u_{t-1} (u_{-1} = 0).

  With ``sgd`` this is optimistic gradient descent: x <- x - 2 tau g_t + tau g_{t-1}; with
  ``adam`` it is optimistic Adam (Daskalakis, Ilyas, Syrgkanis, Zeng 2018).
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return OptimisticState(inner.init(params), optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None, **extra_args):
    current, inner_state = inner.update(updates, state.inner, params, **extra_args)
    out = jax.tree.map(lambda u, v: 2 * u - v, current, state.previous)
    return out, OptimisticState(inner_state, current)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def player_optimizer(method: driver.Method, hyper: driver.Hyperparameters, scheme: str):
  """(transformation, schedule) of one player, its rule wrapped as the scheme asks."""
  rate, schedule = schedules.rate_and_schedule(method.schedule, hyper.learning_rate, hyper.l0,
                                               hyper.strong_convexity)
  transformation = method.spec.build(method.context(rate, None))
  wrap = get_scheme(scheme).wrap_rule
  transformation = transformation if wrap is None else wrap(transformation)
  if method.ema is not None:  # outermost: it averages the iterates the scheme makes
    transformation = optax.chain(transformation, exponential_average(method.ema))
  return transformation, schedule


def gradients(problem: Game, params, batch):
  """Both players' gradients, each of its own loss, and the two losses:
  ((g_generator, g_discriminator), (loss_generator, loss_discriminator))."""
  generator, discriminator = params
  loss_g, grad_g = jax.value_and_grad(
      lambda g: problem.losses((g, discriminator), batch)[0])(generator)
  loss_d, grad_d = jax.value_and_grad(
      lambda d: problem.losses((generator, d), batch)[1])(discriminator)
  return (grad_g, grad_d), (loss_g, loss_d)


def full_gradients(problem: FiniteGame, params, chunk: int = FULL_GRADIENT_CHUNK):
  """Both players' gradients of their losses averaged over all ``problem.num_samples`` samples,
  summed in batches of ``chunk`` (a ``lax.scan``, so memory stays that of one batch)."""
  n = problem.num_samples
  chunk = min(chunk, n)
  full, rest = divmod(n, chunk)

  def weighted(start, size):
    grads, _ = gradients(problem, params, problem.sample_batch(start + jnp.arange(size)))
    return jax.tree.map(lambda g: g * (size / n), grads)

  def body(total, start):
    return jax.tree.map(jnp.add, total, weighted(start, chunk)), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, _ = jax.lax.scan(body, zeros, jnp.arange(full) * chunk)
  if rest:
    total = jax.tree.map(jnp.add, total, weighted(full * chunk, rest))
  return tuple(total)


def init_snapshot(params) -> Snapshot:
  """A snapshot that the first svre step replaces (count 0)."""
  params = tuple(params)
  return Snapshot(params, tuple(optax.tree.zeros_like(p) for p in params),
                  jnp.zeros((), jnp.int32))


def variance_reduced_gradients(problem: FiniteGame, params, snapshot: Snapshot, indices):
  """g_I(w) - g_I(w~) + mu for both players, on the samples ``indices``."""
  batch = problem.sample_batch(indices)
  now, _ = gradients(problem, params, batch)
  then, _ = gradients(problem, snapshot.params, batch)
  return tuple(jax.tree.map(lambda a, b, m: a - b + m, *trees)
               for trees in zip(now, then, snapshot.mean, strict=True))


def _generator_gradient(problem: Game, params, batch):
  return jax.grad(lambda g: problem.losses((g, params[1]), batch)[0])(params[0])


def _discriminator_gradient(problem: Game, params, batch):
  return jax.grad(lambda d: problem.losses((params[0], d), batch)[1])(params[1])


def _move(optimizer, grad, state, params):
  updates, state = optimizer.update(grad, state, params)
  return optax.apply_updates(params, updates), state


def make_step(problem: Game, method: GameMethod, optimizers):
  """One game step of ``method``'s scheme: carry, key of the step -> carry.

  The carry is (params, opt_states), and (params, opt_states, snapshot) for a scheme with a
  snapshot (svre: from ``init_snapshot``; it takes a new one when its count is a multiple of the
  period, inside ``lax.cond``: keep the count unbatched when vmapping, as ``run`` does, or every
  run pays the full gradients)."""
  spec = method.spec
  if spec.finite_game and not isinstance(problem, FiniteGame):
    raise TypeError(f"the {spec.name} scheme needs a finite-sum game (kinds.FiniteGame: "
                    f"num_samples, sample_batch); {type(problem).__name__} draws fresh samples")
  return spec.make_step(problem, method, optimizers)


def _draws(problem: Game, key, size: int, mesh: jax.sharding.Mesh | None = None):
  """j -> the j-th fresh minibatch of a step, sharded over ``mesh``."""
  return lambda j: sharding.shard_batch(problem.draw(jax.random.fold_in(key, j), size), mesh, size)


def _simultaneous_step(problem: Game, method: GameMethod, optimizers):
  """Both players step from the gradients at (theta_t, xi_t) (optimistic: the same step with
  optimistic rules)."""
  opt_g, opt_d = optimizers

  def step(carry, key):
    (theta, xi), (state_g, state_d) = carry
    batch = _draws(problem, key, method.batch_size, method.mesh)(0)
    (grad_g, grad_d), _ = gradients(problem, (theta, xi), batch)
    theta, state_g = _move(opt_g, grad_g, state_g, theta)
    xi, state_d = _move(opt_d, grad_d, state_d, xi)
    return (theta, problem.project(xi)), (state_g, state_d)

  return step


def _alternating_step(problem: Game, method: GameMethod, optimizers):
  """k discriminator steps, each on a fresh minibatch, then one generator step."""
  opt_g, opt_d = optimizers
  k = method.option("discriminator_steps")

  def step(carry, key):
    (theta, xi), (state_g, state_d) = carry
    draw = _draws(problem, key, method.batch_size, method.mesh)
    for j in range(k):
      grad_d = _discriminator_gradient(problem, (theta, xi), draw(j))
      xi, state_d = _move(opt_d, grad_d, state_d, xi)
      xi = problem.project(xi)
    grad_g = _generator_gradient(problem, (theta, xi), draw(k))
    theta, state_g = _move(opt_g, grad_g, state_g, theta)
    return (theta, xi), (state_g, state_d)

  return step


def _extragradient_step(problem: Game, method: GameMethod, optimizers):
  def step(carry, key):
    draw = _draws(problem, key, method.batch_size, method.mesh)
    return _extragradient(problem, optimizers, *carry,
                          lambda point, j: gradients(problem, point, draw(j))[0])

  return step


def _extragradient(problem: Game, optimizers, params, states, grads_at):
  """Both players step from ``params`` to an extrapolated point (the rules' states left alone),
  then from ``params`` again along the gradients there; ``grads_at(point, j)`` gives both
  players' gradients at ``point`` on the j-th minibatch of the step (0: extrapolation, 1: update)."""
  (opt_g, opt_d), (theta, xi), (state_g, state_d) = optimizers, params, states
  grad_g, grad_d = grads_at((theta, xi), 0)
  theta_half, _ = _move(opt_g, grad_g, state_g, theta)
  xi_half, _ = _move(opt_d, grad_d, state_d, xi)
  grad_g, grad_d = grads_at((theta_half, problem.project(xi_half)), 1)
  theta, state_g = _move(opt_g, grad_g, state_g, theta)
  xi, state_d = _move(opt_d, grad_d, state_d, xi)
  return (theta, problem.project(xi)), (state_g, state_d)


def svre_period(problem: FiniteGame, method: GameMethod) -> int:
  """svre: the steps between two snapshots (``svre_frequency``, else one epoch)."""
  return snapshot_period(problem.num_samples, method.batch_size, method.option("svre_frequency"))


def _svre_step(problem: FiniteGame, method: GameMethod, optimizers):
  n, size, period = problem.num_samples, method.batch_size, svre_period(problem, method)

  def step(carry, key):
    (theta, xi), (state_g, state_d), snapshot = carry
    snapshot = jax.lax.cond(
        snapshot.count % period == 0,
        lambda: Snapshot((theta, xi), full_gradients(problem, (theta, xi)), snapshot.count),
        lambda: snapshot)
    draw = lambda j: sharding.shard_batch(  # noqa: E731
        jax.random.randint(jax.random.fold_in(key, j), (size,), 0, n), method.mesh, size)
    params, states = _extragradient(
        problem, optimizers, (theta, xi), (state_g, state_d),
        lambda point, j: variance_reduced_gradients(problem, point, snapshot, draw(j)))
    return params, states, snapshot._replace(count=snapshot.count + 1)

  return step


register_scheme(SchemeSpec(
    "simultaneous", "both players step from the gradients at the same point",
    _simultaneous_step))
register_scheme(SchemeSpec(
    "alternating", "k discriminator steps on fresh minibatches, then one generator step",
    _alternating_step,
    options=(Option("discriminator_steps", int, 1,
                    "alternating: discriminator steps per generator step", positive),)))
register_scheme(SchemeSpec(
    "extragradient", "a step to an extrapolated point, then from the start along its gradients",
    _extragradient_step))
register_scheme(SchemeSpec(
    "optimistic", "simultaneous steps of 2 u_t - u_(t-1) (optimistic GDA / Adam)",
    _simultaneous_step, wrap_rule=optimistic))
register_scheme(SchemeSpec(
    "svre", "extragradient on variance-reduced gradients (a finite-sum game)",
    _svre_step, finite_game=True, init_snapshot=init_snapshot,
    options=(Option("svre_frequency", int, None,
                    "svre: steps between snapshots (None: one epoch, n // batch_size)",
                    positive),)))


def _optimizers(method: GameMethod, hyper: GameHyper):
  pairs = [player_optimizer(m, h, method.scheme) for m, h in zip(method.players, hyper, strict=True)]
  return tuple(p[0] for p in pairs), pairs[0][1]


def init_state(problem: Game, method: GameMethod, hyper: GameHyper, key: jax.Array,
               params=None) -> GameState:
  params = problem.init_params() if params is None else params
  (opt_g, opt_d), _ = _optimizers(method, hyper)
  opt_state = (opt_g.init(params[0]), opt_d.init(params[1]))
  init = method.spec.init_snapshot
  snapshot = () if init is None else init(params)
  return _on_mesh(method, GameState(tuple(params), opt_state, jnp.zeros((), jnp.int32), key,
                                    jnp.full((), -1, jnp.int32), jnp.full((2,), -1, jnp.int32),
                                    snapshot))


def _on_mesh(method: GameMethod, state: GameState) -> GameState:
  """``state`` replicated on ``method.mesh`` (a game keeps no per-sample memory); unchanged
  without a mesh."""
  if method.mesh is None:
    return state
  return sharding.constrain(state, sharding.replicated(method.mesh))


def _finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def log_point(problem: Game, schedule, state: GameState, record_params: bool = False
              ) -> LogPoint:
  """The payoff V on the problem's evaluation batch as ``objective``, both players' losses and
  gradient norms there, and the problem's metrics, all at the reported pair of iterates
  (``reported_params``)."""
  reported = reported_params(state)
  (grad_g, grad_d), (loss_g, loss_d) = gradients(problem, reported, problem.evaluation_batch())
  extras = dict(generator_loss=loss_g, discriminator_loss=loss_d,
                generator_grad_norm=optax.tree.norm(grad_g),
                discriminator_grad_norm=optax.tree.norm(grad_d), **problem.metrics(reported))
  return LogPoint(state.step, problem.objective(reported), schedule(state.step),
                  reported if record_params else None, extras)


def run_chunk(problem: Game, method: GameMethod, hyper: GameHyper, state: GameState, *,
              num_logs: int, log_every: int, record_params: bool = False):
  """``num_logs * log_every`` game steps, a log point every ``log_every``."""
  optimizers, schedule = _optimizers(method, hyper)
  step = make_step(problem, method, optimizers)

  snapshots = method.spec.init_snapshot is not None

  def body(carry, x):
    t, key = x
    players, broken = carry
    players = step(players, key)
    finite = jnp.stack([_finite(players[0][0]), _finite(players[0][1])])
    return (players, jnp.where((broken < 0) & ~finite, t + 1, broken)), None

  def log_block(state, _):
    steps = state.step + jnp.arange(log_every, dtype=jnp.int32)
    keys = jax.vmap(lambda t: jax.random.fold_in(state.key, t))(steps)
    players = (state.params, state.opt_state) + ((state.snapshot,) if snapshots else ())
    (players, broken), _ = jax.lax.scan(body, (players, state.broken_at), (steps, keys))
    state = state._replace(params=players[0], opt_state=players[1], step=state.step + log_every,
                           broken_at=broken, snapshot=players[2] if snapshots else ())
    state = _on_mesh(method, state)
    return state, log_point(problem, schedule, state, record_params)

  state, points = jax.lax.scan(log_block, state, None, length=num_logs)
  return _on_mesh(method, state), points  # the state as it came in: chunks never recompile


run_chunk_jit = jax.jit(run_chunk,
                        static_argnames=("method", "num_logs", "log_every", "record_params"))


@functools.partial(jax.jit, static_argnames=("method", "record_params"))
def initial_log_point(problem: Game, method: GameMethod, hyper: GameHyper, state: GameState,
                      record_params: bool = False) -> LogPoint:
  _, schedule = _optimizers(method, hyper)
  return log_point(problem, schedule, state, record_params)


@functools.partial(jax.jit, static_argnames=("method", "num_steps", "log_every", "record_params"))
def run(problem: Game, method: GameMethod, hyper: GameHyper, key: jax.Array, params=None, *,
        num_steps: int, log_every: int, record_params: bool = False):
  """A whole game in one program (what a sweep vmaps over seeds and both players' rates)."""
  if num_steps % log_every:
    raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")
  state = init_state(problem, method, hyper, key, params)
  return run_chunk(problem, method, hyper, state, num_logs=num_steps // log_every,
                   log_every=log_every, record_params=record_params)


def reported_params(state: GameState) -> Any:
  """Each player's moving average of its iterates where it keeps one (``Method.ema``,
  ``optim.<player>.ema``; a discriminator's average is of its iterates before the problem's
  projection), else its last iterate. A player on ``sga`` reports its last iterate too: a scheme
  that wraps the rule (optimistic) would leave sga's own average over other points than the
  iterates."""
  return tuple(averaged_params(opt_state, params, cesaro=False)
               for opt_state, params in zip(state.opt_state, state.params, strict=True))


def final_params(state: GameState) -> Any:
  """Games select no iterate: the last one."""
  return reported_params(state)


def epochs(problem: Game, method: GameMethod, steps) -> None:
  """Games log no epochs (a step draws fresh latents)."""
  return None


def _finite_number(value) -> bool:
  return value is not None and math.isfinite(value)


def bad_point(row: dict[str, Any], limit: float) -> str | None:
  """What makes a game's log point (a metrics row: ``objective`` = V, the players' losses and
  gradient norms) diverged, or None: a loss, V or a gradient norm that is not finite, or a V
  whose size exceeds ``limit`` (the objective engine's blow-up rule, ``BLOWUP_FACTOR`` times
  max(|V(start)|, 1); on |V|, since a game's payoff may blow up either way)."""
  for player in PLAYERS:
    if not _finite_number(row.get(f"{player}_loss", 0.0)):
      return f"the {player}'s loss is not finite"
  if not _finite_number(row["objective"]):
    return "the payoff V is not finite"
  for player in PLAYERS:
    if not _finite_number(row.get(f"{player}_grad_norm", 0.0)):
      return f"the {player}'s gradient norm is not finite"
  if abs(row["objective"]) > limit:
    return (f"the payoff V reached {row['objective']:.4g}, over {BLOWUP_FACTOR:g} times its size "
            "at the start")
  return None


def failure(rows: list[dict], state: GameState, limit: float) -> Failure | None:
  """A game stops at the first log point that ``bad_point`` finds diverged (or at the chunk's
  end if parameters are not finite). ``what`` names the player whose parameters broke first, at
  the step they did, else what ``bad_point`` found."""
  first = next((k for k, row in enumerate(rows) if bad_point(row, limit)), None)
  broken_at = [int(t) for t in np.asarray(state.broken_at)]
  broken = sorted((t, player) for t, player in zip(broken_at, PLAYERS, strict=True) if t >= 0)
  if first is None and not broken:
    return None
  keep = len(rows) if first is None else first
  step = rows[-1 if first is None else first]["step"]
  if broken:
    step, player = broken[0]
    what = f"the {player}'s parameters are not finite"
  else:
    what = bad_point(rows[first], limit)
  return Failure(keep, step, what)


def final_facts(problem: Game, method: GameMethod, state: GameState) -> dict[str, Any]:
  return {}


# This module is the engine (``engine.Engine``) of its problem kinds.
register_engine(Game, sys.modules[__name__])
