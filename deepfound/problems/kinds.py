"""The kinds of problem, one typed protocol each; code dispatches on kinds, never on attributes.

* ``FiniteSum``: E(b) = (1/n) sum_i E_i(b) (17.1): linear models, networks, MLE of a density.
* ``Expectation``: E(b) = E_{z ~ pi} E_z(b), a fresh sample every step (17.2): SGD and SGA only.
* ``StochasticFiniteSum``: E_i(b, xi) also takes a PRNG key (a VAE's reparameterized loss, 17.4).
* ``Game``: two players' gradients from one call (a GAN, 17.4).

Each kind has an engine that runs it (``deepfound.optim.engine``): ``deepfound.optim.driver``
runs the first three (a stochastic finite sum is a finite sum whose batches carry a key) and
``deepfound.optim.game`` runs games. A new kind is a new protocol (here, or in a user's module),
an engine registered for it (``engine.register_engine``) and its experiment side
(``deepfound.experiment.kinds.register_kind``); ``tests/test_extension.py`` adds one.
A ``Batch`` is the problem's own minibatch pytree (leaves with a leading axis of size b), made
by ``FiniteSum.batch`` or ``Expectation.draw`` and handed back to its gradient methods.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

import jax
import optax

Batch = Any


class SampleTerms(NamedTuple):
  """Per-sample gradients of a minibatch, and for linear models their scalar form."""

  gradients: optax.Updates  # grad E_k(b) for each sample k: leaves (b, *param.shape)
  # For a linear model, grad E_k = x_k (x) s_k + (a part common to all samples): s_k, of shape
  # (b, *param.shape[1:]), and x_k, (b, p); what the "scalar" gradient memory stores. Else None.
  scale: jax.Array | None = None
  features: jax.Array | None = None


@runtime_checkable
class Objective(Protocol):
  """What every problem that the driver runs has."""

  def init_params(self) -> optax.Params:
    """The start of every run (the chapter starts linear models at zero)."""

  def objective(self, params: optax.Params) -> jax.Array:
    """E at ``params`` (for a stream, an estimate on a held-out sample)."""

  def mean_gradient(self, params: optax.Params, batch: Batch) -> optax.Updates:
    """(1/b) sum_k grad E_k(params) over the minibatch."""

  def terms(self, params: optax.Params, batch: Batch) -> SampleTerms:
    """The minibatch's per-sample gradients (what the SAG family stores)."""

  def regularizer_gradient(self, params: optax.Params) -> optax.Updates:
    """The part of every grad E_k that does not depend on the sample (the L2 term)."""

  def metrics(self, params: optax.Params) -> dict[str, jax.Array]:
    """Numbers logged beside the objective (networks: loss and accuracies); may be empty."""

  def with_l2(self, l2: jax.Array) -> Self:
    """The same problem with another L2 weight (a sweep vmaps over it)."""


@runtime_checkable
class FiniteSum(Objective, Protocol):
  """E(b) = (1/n) sum_i E_i(b) + regularizer, n samples on the device."""

  @property
  def num_samples(self) -> int:
    """n."""

  def batch(self, indices: jax.Array) -> Batch:
    """The samples at ``indices`` (int32, (b,))."""

  def gradient(self, params: optax.Params) -> optax.Updates:
    """The full gradient grad E (17.5)."""

  def snapshot(self, params: optax.Params, memory: str) -> tuple[Any, optax.Updates]:
    """Every sample's gradient at ``params`` in the memory layout ``memory`` and the mean of the
    stored part: SVRG's refresh, and a pre-filled SAG memory."""


@runtime_checkable
class Proximal(Protocol):
  """A problem with a nonsmooth L1 term that rules apply as a proximal step (SGD, SAGA)."""

  l1: float  # the weight of l1 ||b||_1 (static); 0: the proximal step is the identity

  def proximal(self, params: optax.Params, step: jax.Array) -> optax.Params:
    """argmin_u step * l1 ||u||_1 + ||u - params||^2 / 2 (soft thresholding)."""

  def coefficients(self, params: optax.Params) -> optax.Params:
    """The penalized weights (without an intercept): what a stopping rule compares."""


@runtime_checkable
class HostDesign(Protocol):
  """A linear problem that describes itself on the host, for ``optimum.solve_optimum``."""

  def host_design(self) -> dict[str, Any]:
    """design (float64 (n, p), no column of ones), targets, loss, num_classes, l2, l1, weights
    (or None) and fit_intercept."""


@runtime_checkable
class SparseLinear(FiniteSum, Proximal, Protocol):
  """A linear finite sum whose rows are sparse on the device (``problems/sparse.py``): the lazy
  rules (``optim/lazy.py``) step in O(nnz of the row) through these methods."""

  num_columns: int
  fit_intercept: bool
  indices: jax.Array  # (n, m) columns of each row, padding = num_columns
  loss: str  # "logistic", "least_squares" or "multinomial"
  num_classes: int  # K of multinomial (the parameters' second axis)
  l2: jax.Array  # the weight of (l2/2) ||b||^2
  dtype: Any  # the float dtype of the parameters

  def sample_scale(self, scores: jax.Array, targets: jax.Array, weights: jax.Array | None
                   ) -> jax.Array:
    """w L'(score, y) per sample."""

  def intercept(self, params: optax.Params) -> jax.Array: ...


@runtime_checkable
class Expectation(Objective, Protocol):
  """E(b) = E_{z ~ pi} E_z(b): n is infinite, every step draws fresh samples (17.2)."""

  def draw(self, key: jax.Array, batch_size: int) -> Batch:
    """A fresh minibatch of ``batch_size`` samples from pi."""


@runtime_checkable
class StochasticFiniteSum(FiniteSum, Protocol):
  """E(b) = (1/n) sum_i E_xi E_i(b, xi): each term is itself an expectation over a noise xi that
  the loss draws from a PRNG key (the reparameterization trick of a VAE).

  Its gradient methods (``terms``, ``mean_gradient``) take ``noisy_batch(indices, key)``: the
  samples with the step's key, which the driver draws fresh at every step (a pure function of the
  run's key and the step). ``objective``, ``gradient`` and ``snapshot`` use a fixed key of the
  problem's own, so they stay deterministic functions of the parameters.
  """

  def noisy_batch(self, indices: jax.Array, key: jax.Array) -> Batch:
    """The samples at ``indices`` with the noise key of the step."""


@runtime_checkable
class HasFinalMetrics(Protocol):
  """A problem with metrics too costly for every log point, computed once when a run ends."""

  def final_metrics(self, params: optax.Params) -> dict[str, jax.Array]: ...


@runtime_checkable
class SelectsIterate(Protocol):
  """A problem whose run reports the iterate of its best log point rather than its last: the one
  with the smallest logged metric ``select_by`` (e.g. a validation NLL; None: the last iterate),
  stopping once ``patience`` log points in a row bring no better value (None: never). The
  driver keeps that iterate in the run's state (``driver.Best``)."""

  select_by: str | None
  patience: int | None


@runtime_checkable
class Game(Protocol):
  """min_theta max_xi of a payoff (a GAN, 17.4.3): the generator (theta) and the discriminator
  (xi) each minimize a loss of their own; ``deepfound.optim.game`` takes both players'
  gradients in one call and steps each with its own registered rule under a scheme
  (simultaneous, alternating, extragradient, optimistic; svre for a ``FiniteGame``)."""

  def init_params(self) -> tuple[optax.Params, optax.Params]:
    """(generator, discriminator) parameters."""

  def draw(self, key: jax.Array, batch_size: int) -> Batch:
    """A fresh minibatch (data and latents) for one gradient evaluation."""

  def losses(self, params: tuple[optax.Params, optax.Params], batch: Batch
             ) -> tuple[jax.Array, jax.Array]:
    """(the generator's loss, the discriminator's loss), each minimized by its player."""

  def project(self, discriminator: optax.Params) -> optax.Params:
    """The discriminator after a step, projected on its constraint set (WGAN's weight
    clipping); the identity for most games."""

  def evaluation_batch(self) -> Batch:
    """A fixed batch on which log points evaluate the losses and gradient norms."""

  def objective(self, params: tuple[optax.Params, optax.Params]) -> jax.Array:
    """The payoff V logged as ``objective`` (on held-out data)."""

  def metrics(self, params: tuple[optax.Params, optax.Params]) -> dict[str, jax.Array]: ...


@runtime_checkable
class FiniteGame(Game, Protocol):
  """A game whose payoff is also a finite sum over ``num_samples`` fixed samples (for a GAN: each
  pack of training data paired with fixed latents), as variance reduction needs (SVRE, the
  ``svre`` scheme of ``deepfound.optim.game``): both losses are means over the samples of a batch,
  so the mean of the batch losses over all samples is the full payoff."""

  num_samples: int

  def sample_batch(self, indices: jax.Array) -> Batch:
    """The samples at ``indices`` (int (b,)): a deterministic function of the indices."""


def num_samples_of(problem: Objective) -> int | None:
  """n for a finite sum, None (infinity) for an expectation."""
  return problem.num_samples if isinstance(problem, FiniteSum) else None


def check_runnable(problem: Any) -> None:
  """Raises ``TypeError`` unless ``problem`` is a kind the driver runs."""
  finite, stream = isinstance(problem, FiniteSum), isinstance(problem, Expectation)
  if finite == stream:
    raise TypeError(f"{type(problem).__name__} is {'both' if finite else 'neither'} a FiniteSum "
                    "and an Expectation (deepfound.problems.kinds); the driver runs exactly one "
                    "of the two")
