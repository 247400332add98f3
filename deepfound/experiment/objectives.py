"""The ``objective`` problem kind on the experiment side: one registered update rule
(``optim.name`` and the ``optim.*`` keys) minimizing a finite sum, a stochastic finite sum or an
expectation, run by ``deepfound.optim.driver``."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from deepfound.errors import ConfigError
from deepfound.experiment import build as build_lib
from deepfound.experiment.checks import check_ema, positive
from deepfound.experiment.config import mesh_devices, precision_dtype
from deepfound.experiment.kinds import KindSpec, register_kind
from deepfound.experiment.models import MODELS
from deepfound.optim import driver, lazy
from deepfound.optim.oracles import ORACLES
from deepfound.optim.registry import RULES
from deepfound.problems.kinds import FiniteSum


def add_keys(config: ml_collections.ConfigDict) -> None:
  """None of its own: the rule's keys (optim.name, optim.learning_rate, ...) are the shared
  ``optim.*`` keys of ``base_config``."""
  del config


def validate(config: ml_collections.ConfigDict) -> None:
  optim = config.optim
  spec = RULES.get(optim.name)
  for option in spec.options:
    option.validate("optim", optim[option.name])
  if optim.schedule == "strongly_convex":
    if optim.strong_convexity is None and not config.problem.l2 > 0:
      raise ConfigError("optim.strong_convexity must be > 0 for the strongly_convex schedule "
                        "(or set problem.l2 > 0 to use it as mu)")
    if optim.strong_convexity is not None:
      positive("optim.strong_convexity", optim.strong_convexity, config.precision)
  elif optim.learning_rate is None:
    if spec.default_learning_rate is None or not MODELS.get(config.model.name).design_matrix:
      raise ConfigError(f"optim.learning_rate is required for {optim.name} (a float > 0)")
  elif isinstance(optim.learning_rate, str):
    if optim.learning_rate != "auto":
      raise ConfigError(f"optim.learning_rate must be a number > 0 or auto, got "
                        f"{optim.learning_rate!r}")
    if spec.auto_learning_rate is None or not MODELS.get(config.model.name).design_matrix:
      raise ConfigError(f"optim.learning_rate=auto is scikit-learn's step of sag and saga on "
                        f"model.name=linear; give {optim.name} a number")
    if optim.schedule != "constant":
      raise ConfigError("optim.learning_rate=auto is a constant step; use optim.schedule=constant")
  else:
    positive("optim.learning_rate", optim.learning_rate, config.precision)
  if optim.tol is not None:
    positive("optim.tol", optim.tol)
  check_ema("optim", optim.get("ema"), spec)
  if optim.unroll is not None and (isinstance(optim.unroll, bool) or not isinstance(optim.unroll, int)
                                   or not 1 <= optim.unroll <= driver.PAGE_STEPS):
    raise ConfigError(f"optim.unroll must be an integer in [1, {driver.PAGE_STEPS}] (or None: the "
                      f"backend's default), got {optim.unroll!r}")
  l1 = config.problem.get("l1") or 0.0
  if l1 and not spec.proximal:
    raise ConfigError(f"problem.l1 > 0 needs a rule that takes proximal steps (sgd, saga); "
                      f"{optim.name} does not")
  if optim.schedule in ("inverse_time", "inverse_sqrt"):
    positive("optim.l0", optim.l0, config.precision)
  model = MODELS.get(config.model.name)
  if not model.finite_sum and spec.needs_finite_sum:
    raise ConfigError(f"optim.name={spec.name} needs a finite sum, but model.name={model.name} "
                      "draws fresh latents and data every step; use sgd, sga or adam")
  if optim.memory not in ("auto", model.memory) and spec.keeps_memory:
    raise ConfigError(f"optim.memory={optim.memory} does not fit model.name={model.name}; "
                      f"use optim.memory={model.memory} (or auto)")
  if mesh_devices(config) > 1 and not ORACLES[spec.oracle].draws_samples:
    raise ConfigError(f"mesh.data={config.mesh.data}: optim.name={spec.name} takes full "
                      "gradients, with no minibatch to split over devices; use mesh.data=1")


def _unstable_step_warning(method: driver.Method, resolved: dict, constants: dict
                           ) -> tuple[str, ...]:
  lipschitz, rate = constants["lipschitz"], resolved["learning_rate"]
  if (lipschitz and method.spec.stable_step == "2/L" and method.schedule == "constant"
      and rate >= 2.0 / lipschitz):
    return (f"optim.learning_rate = {rate:.4g} is not below 2/L = {2.0 / lipschitz:.4g}; "
            f"{method.name} may diverge",)
  return ()


def _stalled_step_warning(resolved: dict, constants: dict, dtype) -> tuple[str, ...]:
  """A step so small against a typical sample's curvature L_i that its updates are lost to the
  precision's rounding: an outlying row (a value of 1e20) sets L_max and so the automatic step."""
  median, rate = constants.get("median_sample_lipschitz"), resolved["learning_rate"]
  resolution = float(jnp.finfo(dtype).eps)
  if not median or rate * median >= resolution:
    return ()
  return (f"optim.learning_rate = {rate:.3g} times the median sample's L_i = {median:.3g} is "
          f"{rate * median:.2g}, below the {jnp.dtype(dtype).name} resolution {resolution:.2g}: "
          f"most steps cannot move the weights (L_max = {constants['max_sample_lipschitz']:.3g}); "
          "rescale the features",)


def _divergence_note(method: driver.Method, resolved: dict, constants: dict) -> str:
  hint = ""
  if constants.get("lipschitz"):
    hint = f", 2/L = {2.0 / constants['lipschitz']:.4g}"
    if method.spec.stable_step == "1/L_max":
      hint += f", 1/L_max = {1.0 / constants['max_sample_lipschitz']:.4g}"
  return (f"(optim.learning_rate = {resolved['learning_rate']:.4g}{hint}); lower the learning "
          "rate")


def build_setup(config: ml_collections.ConfigDict, problem, notes: tuple[str, ...]
                ) -> build_lib.Setup:
  method = build_lib.build_method(config)
  if method.tol is not None and not (isinstance(problem, FiniteSum) and method.draws_samples):
    what = ("an expectation (samples drawn afresh, no epochs)" if not isinstance(problem, FiniteSum)
            else f"run with {method.name}, which draws no samples")
    raise ConfigError(f"optim.tol: the stopping test runs at epoch ends of a stochastic rule on a "
                      f"finite sum; model.name={config.model.name} here is {what}")
  constants = build_lib.problem_constants(problem, config.optim.max_memory_mb)
  resolved = build_lib.resolve_hyperparameters(config, constants)
  dtype = precision_dtype(config.precision)
  hyper = driver.hyperparameters(**{k: resolved[k] for k in driver.Hyperparameters._fields},
                                 dtype=dtype)
  warnings = _unstable_step_warning(method, resolved, constants)
  warnings += _stalled_step_warning(resolved, constants, dtype)
  if constants.get("optimum_note"):
    warnings += (constants["optimum_note"],)
  if method.ema is not None and lazy.supports(problem, method.with_ema(None)):
    warnings += ("optim.ema moves every weight every step: the sparse rows take O(p) steps, "
                 "not the lazy O(nnz) ones",)
  if lazy.supports(problem, method):
    warnings += lazy.frequent_rebase_warning(resolved["learning_rate"], float(problem.l2),
                                             hyper.learning_rate.dtype)
  if config.optim.learning_rate == "auto":
    notes = notes + (f"optim.learning_rate=auto: {resolved['learning_rate']:.6g}, scikit-learn's "
                     f"get_auto_step_size for {method.name}",)
  resolved["notes"] = list(notes)
  memory_mb = build_lib.check_gradient_memory(config, problem, method)
  return build_lib.Setup(
      problem=problem, method=method, hyper=hyper, resolved=resolved, constants=constants,
      gradient_memory_mb=memory_mb, fingerprint=build_lib.fingerprint(problem), label=method.label,
      divergence_note=_divergence_note(method, resolved, constants),
      warnings=warnings)


register_kind(KindSpec(
    "objective", "one update rule on a finite sum or an expectation (deepfound.optim.driver)",
    add_keys=add_keys, validate=validate, build=build_setup))
