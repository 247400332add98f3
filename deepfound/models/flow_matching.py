"""Flow matching and denoising score matching: generative models learned by regression.

Both learn a time-dependent vector field f(y, t) on the data space with an MLP (``TimeMLP``) and
draw samples by integrating an ODE from a Gaussian; the log-likelihood follows from the
instantaneous change of variables, d/dt log p_t(y_t) = -div f(y_t, t) (Chen et al. 2018).

* Flow matching (Lipman et al. 2023; Liu et al. 2023, "rectified flow"): noise y0 ~ N(0, I) at
  t = 0, data y1 at t = 1, the linear path y_t = (1 - t) y0 + t y1 and the regression
  E ||v(y_t, t) - (y1 - y0)||^2 over t ~ U[0, 1] and the coupling of (y0, y1): independent
  (I-CFM) or a minibatch optimal-transport plan (OT-CFM, Tong et al. 2024). The minimizer for the
  independent coupling is the marginal velocity v*(y, t) = E[y1 - y0 | y_t = y].
* Denoising score matching (Song & Ermon 2019; Song et al. 2021): y_t = a(t) y + s(t) z with the
  VP schedule (a = exp(-(1/2) int beta), s^2 = 1 - a^2, beta linear in t) or the VE schedule
  (a = 1, s geometric from s_min to s_max); the network predicts the noise, eps(y_t, t) ~ z, the
  regression E ||eps(y_t, t) - z||^2 (the score loss weighted by s(t)^2), and the score is
  -eps / s. Samples: the probability-flow ODE dy = [f - g^2 score / 2] dt or the reverse SDE
  dy = [f - g^2 score] dt + g dw (Euler-Maruyama), both from t = 1 down to the schedule's start.

On a Gaussian mixture the exact targets are known: a mixture convolved with a Gaussian is a
mixture (``noised_mixture_score``, ``mixture_velocity``), which the ``score_error`` metrics use.

ODEs are solved by diffrax (Tsit5 with a PID step-size controller, or a fixed-step Euler or Heun
solver where the number of function evaluations must be fixed). All functions are pure in the
module passed in: call them on ``nnx.merge(graphdef, params)`` inside a transformation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from deepfound.models.networks import MLP

Field = Callable[[jax.Array, jax.Array], jax.Array]  # (y (..., d), t scalar) -> (..., d)
COUPLINGS = ("independent", "ot", "sinkhorn")
SCHEDULES = ("vp", "ve")
SOLVERS = ("tsit5", "heun", "euler")
STAGES = {"euler": 1, "heun": 2, "tsit5": 6}  # function evaluations per step (tsit5: 6 stages)


class TimeMLP(nnx.Module):
  """f(y, t): an MLP on [y, t, sin(pi 2^k t), cos(pi 2^k t) for k < num_frequencies]."""

  def __init__(self, dim: int, hidden: Sequence[int], activation: str = "silu",
               num_frequencies: int = 6, *, rngs: nnx.Rngs):
    self.num_frequencies = num_frequencies
    self.net = MLP([dim + 1 + 2 * num_frequencies, *hidden, dim], activation, rngs=rngs)

  def __call__(self, y: jax.Array, t: jax.Array) -> jax.Array:
    t = jnp.broadcast_to(jnp.asarray(t, y.dtype), y.shape[:-1])[..., None]
    angles = t * (math.pi * 2.0 ** jnp.arange(self.num_frequencies, dtype=y.dtype))
    return self.net(jnp.concatenate([y, t, jnp.sin(angles), jnp.cos(angles)], axis=-1))


# ---- flow matching -----------------------------------------------------------------------------


def couple(data: jax.Array, key: jax.Array, coupling: str, epsilon: float = 0.05) -> jax.Array:
  """Noise points y0 ~ N(0, I), one per row of ``data`` (b, d), paired with the data: drawn
  independently, or reordered by the minibatch's optimal assignment for the squared distance
  (``ot``: exact, optax's Hungarian algorithm, O(b^3)), or drawn row by row from ott-jax's
  entropic plan (``sinkhorn``: epsilon a fraction of the mean cost)."""
  noise = jax.random.normal(jax.random.fold_in(key, 0), data.shape, data.dtype)
  if coupling == "independent":
    return noise
  cost = jnp.sum(jnp.square(data[:, None, :] - noise[None, :, :]), axis=-1)
  if coupling == "ot":
    import optax

    rows, cols = optax.assignment.hungarian_algorithm(cost)
    return jnp.zeros_like(noise).at[rows].set(noise[cols])
  if coupling == "sinkhorn":
    from ott.geometry import geometry
    from ott.solvers import linear

    geom = geometry.Geometry(cost_matrix=jax.lax.stop_gradient(cost), epsilon=epsilon,
                             relative_epsilon="mean")
    plan = linear.solve(geom).matrix
    picks = jax.random.categorical(jax.random.fold_in(key, 1), jnp.log(plan + 1e-30), axis=-1)
    return noise[picks]
  raise ValueError(f"unknown coupling {coupling!r}; expected one of {', '.join(COUPLINGS)}")


def flow_matching_loss(velocity: Field, data: jax.Array, noise: jax.Array,
                       key: jax.Array) -> jax.Array:
  """||v(y_t, t) - (y1 - y0)||^2 for one pair (y1, y0) = (data, noise), t ~ U[0, 1) from key."""
  t = jax.random.uniform(key, (), data.dtype)
  y_t = (1 - t) * noise + t * data
  return jnp.sum(jnp.square(velocity(y_t, t) - (data - noise)))


def mixture_velocity(y: jax.Array, t: jax.Array, means: jax.Array, sd: float,
                     log_weights: jax.Array | None = None) -> jax.Array:
  """The exact marginal velocity E[y1 - y0 | y_t = y] of the linear path for y1 ~ sum_k w_k
  N(mu_k, sd^2 I) and y0 ~ N(0, I) independent, y (..., d): given component k, (y1 - y0, y_t) is
  Gaussian with y_t ~ N(t mu_k, v I), v = t^2 sd^2 + (1 - t)^2, and Cov(y1 - y0, y_t) =
  (t sd^2 - (1 - t)) I, so E[y1 - y0 | y_t, k] = mu_k + (t sd^2 - 1 + t) (y_t - t mu_k) / v, and
  the components weigh by their posterior responsibilities."""
  var = t**2 * sd**2 + (1 - t) ** 2
  centred = y[..., None, :] - t * means  # (..., K, d)
  logits = -jnp.sum(jnp.square(centred), -1) / (2 * var)
  if log_weights is not None:
    logits = logits + log_weights
  resp = jax.nn.softmax(logits, axis=-1)
  per_component = means + (t * sd**2 - (1 - t)) / var * centred
  return jnp.einsum("...k,...kd->...d", resp, per_component)


# ---- denoising score matching ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schedule:
  """y_t = a(t) y + s(t) z on t in [t_min, 1], the SDE dy = f(y, t) dt + g(t) dw that it solves
  (f = -beta y / 2, g^2 = beta for VP; f = 0, g^2 = d s^2/dt for VE) and the prior N(0, v I) at
  t = 1 that sampling starts from (v = 1 for VP; s_max^2 + 1 for VE on data of unit variance)."""

  kind: str  # "vp" or "ve"
  beta_min: float = 0.1
  beta_max: float = 20.0
  sigma_min: float = 1e-3
  sigma_max: float = 5.0

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f"unknown schedule {self.kind!r}; expected one of {', '.join(SCHEDULES)}")

  @property
  def t_min(self) -> float:
    return 1e-5 if self.kind == "vp" else 0.0

  @property
  def prior_variance(self) -> float:
    return 1.0 if self.kind == "vp" else self.sigma_max**2 + 1.0

  def mean_sd(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(a(t), s(t))."""
    if self.kind == "vp":
      log_a = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
      return jnp.exp(log_a), jnp.sqrt(-jnp.expm1(2 * log_a))
    return jnp.ones_like(t), self.sigma_min * (self.sigma_max / self.sigma_min) ** t

  def drift_diffusion(self, y: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(f(y, t), g(t)^2)."""
    if self.kind == "vp":
      beta = self.beta_min + t * (self.beta_max - self.beta_min)
      return -0.5 * beta * y, beta
    _, sd = self.mean_sd(t)
    return jnp.zeros_like(y), 2 * sd**2 * math.log(self.sigma_max / self.sigma_min)


def denoising_loss(noise_net: Field, schedule: Schedule, data: jax.Array,
                   key: jax.Array) -> jax.Array:
  """||eps(y_t, t) - z||^2 for one data point, t ~ U[t_min, 1) and z ~ N(0, I) from key."""
  t_key, z_key = jax.random.split(key)
  t = jax.random.uniform(t_key, (), data.dtype, schedule.t_min, 1.0)
  z = jax.random.normal(z_key, data.shape, data.dtype)
  a, s = schedule.mean_sd(t)
  return jnp.sum(jnp.square(noise_net(a * data + s * z, t) - z))


def score_from_noise(noise_net: Field, schedule: Schedule) -> Field:
  """The score -eps(y, t) / s(t) of the noise-predicting network."""
  return lambda y, t: -noise_net(y, t) / schedule.mean_sd(t)[1]


def probability_flow(score: Field, schedule: Schedule) -> Field:
  """The drift f - g^2 score / 2 of the probability-flow ODE (its marginals are the SDE's)."""
  def drift(y, t):
    f, g2 = schedule.drift_diffusion(y, t)
    return f - 0.5 * g2 * score(y, t)
  return drift


def noised_mixture_score(y: jax.Array, a: jax.Array, s: jax.Array, means: jax.Array, sd: float,
                         log_weights: jax.Array | None = None) -> jax.Array:
  """grad log p of a y + s z for y ~ sum_k w_k N(mu_k, sd^2 I), z ~ N(0, I): the mixture
  sum_k w_k N(a mu_k, (a^2 sd^2 + s^2) I), whose score is sum_k r_k (a mu_k - y) / v."""
  var = a**2 * sd**2 + s**2
  centred = y[..., None, :] - a * means
  logits = -jnp.sum(jnp.square(centred), -1) / (2 * var)
  if log_weights is not None:
    logits = logits + log_weights
  resp = jax.nn.softmax(logits, axis=-1)
  return -jnp.einsum("...k,...kd->...d", resp, centred) / var


def reverse_sde_sample(score: Field, schedule: Schedule, key: jax.Array, num: int, dim: int,
                       steps: int, dtype=jnp.float32) -> jax.Array:
  """``num`` draws by Euler-Maruyama on the reverse SDE dy = [f - g^2 score] dt + g dw from the
  prior at t = 1 to t_min in ``steps`` equal steps, the last step without noise."""
  prior_key, key = jax.random.split(key)
  y = jnp.sqrt(schedule.prior_variance) * jax.random.normal(prior_key, (num, dim), dtype)
  times = jnp.linspace(1.0, schedule.t_min, steps + 1, dtype=dtype)

  def step(y, inputs):
    i, t, t_next = inputs
    dt = t - t_next
    f, g2 = schedule.drift_diffusion(y, t)
    y = y - (f - g2 * score(y, t)) * dt
    noise = jax.random.normal(jax.random.fold_in(key, i), y.shape, y.dtype)
    return y + jnp.where(i < steps - 1, jnp.sqrt(g2 * dt), 0.0) * noise, None

  return jax.lax.scan(step, y, (jnp.arange(steps), times[:-1], times[1:]))[0]


# ---- ODEs: sampling and likelihood --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Solver:
  """How ODEs are integrated: ``tsit5`` adaptive at rtol = atol = ``tolerance`` (at most
  ``max_steps``), or ``euler`` / ``heun`` with ``steps`` equal steps."""

  name: str = "tsit5"
  tolerance: float = 1e-5
  steps: int = 100
  max_steps: int = 4096

  def __post_init__(self):
    if self.name not in SOLVERS:
      raise ValueError(f"unknown solver {self.name!r}; expected one of {', '.join(SOLVERS)}")


def _controller(solver: Solver):
  """The step-size controller of an adaptive solve. Its error norm is the largest over every
  coordinate of every point (not the root mean square), so the steps resolve the worst point of
  a batch solved as one state, as if each point were solved alone."""
  import diffrax

  def max_norm(error):
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(error)]))

  return diffrax.PIDController(rtol=solver.tolerance, atol=solver.tolerance, norm=max_norm)


def _solve(field: Callable, y0, t0: float, t1: float, solver: Solver, saveat):
  """diffrax's solution of dy/dt = field(y, t), y(t0) = y0, from t0 to t1 by ``solver``, saved
  at ``saveat``; never raises (``sol.result`` says whether it succeeded)."""
  import diffrax

  term = diffrax.ODETerm(lambda t, y, args: field(y, t))
  if solver.name == "tsit5":
    method, controller = diffrax.Tsit5(), _controller(solver)
    dt0, max_steps = (t1 - t0) / 16, solver.max_steps
  else:
    method = diffrax.Euler() if solver.name == "euler" else diffrax.Heun()
    controller = diffrax.ConstantStepSize()
    dt0, max_steps = (t1 - t0) / solver.steps, solver.steps
  return diffrax.diffeqsolve(term, method, t0, t1, dt0, y0, stepsize_controller=controller,
                             max_steps=max_steps, saveat=saveat, throw=False)


def _failed(sol) -> jax.Array:
  import diffrax

  return sol.result != diffrax.RESULTS.successful


def integrate(field: Callable, y0, t0: float, t1: float, solver: Solver):
  """y(t1) for dy/dt = field(y, t), y(t0) = y0 (any pytree), with diffrax. Returns (y(t1),
  number of steps taken, failed): ``failed`` is True where the adaptive solver ran out of steps
  (its y is then not a solution: callers report it, they do not use it silently)."""
  import diffrax

  sol = _solve(field, y0, t0, t1, solver, diffrax.SaveAt(t1=True))
  return jax.tree.map(lambda leaf: leaf[-1], sol.ys), sol.stats["num_steps"], _failed(sol)


def divergence(field: Callable, y: jax.Array, t: jax.Array, probe: jax.Array | None = None):
  """(field(y, t), its divergence) for y (n, d): the exact trace of each point's Jacobian (d
  forward-mode passes), or Hutchinson's estimate probe^T J probe (one pass) given a probe."""
  def one(point):
    return field(point[None], t)[0]

  if probe is None:
    values = field(y, t)
    jacobians = jax.vmap(jax.jacfwd(one))(y)
    return values, jnp.trace(jacobians, axis1=-2, axis2=-1)
  values, jvp = jax.vmap(lambda p, v: jax.jvp(one, (p,), (v,)))(y, probe)
  return values, jnp.sum(jvp * probe, axis=-1)


def ode_log_likelihood(field: Field, y: jax.Array, t_data: float, t_noise: float,
                       prior_variance: float, solver: Solver, probe_key: jax.Array | None = None):
  """log p(y) for y (n, d) at t_data of the flow dy/dt = field(y, t) whose law at t_noise is
  N(0, prior_variance I): integrates (y, l) with dl/dt = div field from t_data to t_noise, l = 0
  at the start, and log p(y) = log N(y(t_noise)) + l(t_noise). The trace is exact, or estimated
  with one Rademacher probe per point fixed along the path (Hutchinson; FFJORD) given
  ``probe_key``. Returns (log p (n,), steps, failed)."""
  probe = None
  if probe_key is not None:
    probe = jax.random.rademacher(probe_key, y.shape, y.dtype)

  def augmented(state, t):
    values, div = divergence(field, state[0], t, probe)
    return values, div

  start = (y, jnp.zeros(y.shape[:1], y.dtype))
  (end, change), steps, failed = integrate(augmented, start, t_data, t_noise, solver)
  d = y.shape[-1]
  prior = (-0.5 * jnp.sum(jnp.square(end), -1) / prior_variance
           - 0.5 * d * math.log(2 * math.pi * prior_variance))
  return prior + change, steps, failed


def ode_sample(field: Field, key: jax.Array, num: int, dim: int, t_noise: float, t_data: float,
               prior_variance: float, solver: Solver, dtype=jnp.float32):
  """``num`` draws: y(t_noise) ~ N(0, prior_variance I) carried to t_data. Returns (samples,
  steps, failed)."""
  y0 = math.sqrt(prior_variance) * jax.random.normal(key, (num, dim), dtype)
  return integrate(field, y0, t_noise, t_data, solver)


def straightness(field: Field, y0: jax.Array, solver: Solver, num_times: int = 16):
  """E_t ||v(y_t, t) - (y_1 - y_0)||^2 along the ODE's paths from y0 at t = 0 (flow matching's
  time convention): 0 for straight paths traversed at constant speed (Liu et al. 2023). Returns
  (that mean, failed) as ``integrate`` does."""
  import diffrax

  times = jnp.linspace(0.0, 1.0, num_times)
  sol = _solve(field, y0, 0.0, 1.0, solver, diffrax.SaveAt(ts=times))
  paths = sol.ys  # (num_times, n, d)
  chord = paths[-1] - paths[0]
  speeds = jax.vmap(field)(paths, times)
  return jnp.mean(jnp.sum(jnp.square(speeds - chord), -1)), _failed(sol)


def wasserstein2(x: jax.Array, y: jax.Array) -> jax.Array:
  """The exact 2-Wasserstein distance between two clouds of n points of equal weights: the
  optimal assignment for the squared distance (scipy's ``linear_sum_assignment``, on the host
  through ``jax.pure_callback``; O(n^3), a second or so at n = 2,500)."""
  import numpy as np
  from scipy.optimize import linear_sum_assignment

  if x.shape != y.shape:
    raise ValueError(f"wasserstein2 takes clouds of equal shape, got {x.shape} and {y.shape}")

  def host(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cost = np.sum(np.square(a[:, None, :] - b[None, :, :]), axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return np.asarray(np.sqrt(cost[rows, cols].mean()), x.dtype)

  return jax.pure_callback(host, jax.ShapeDtypeStruct((), x.dtype), x, y,
                           vmap_method="sequential")
