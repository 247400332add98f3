"""Experiment configs: the keys and defaults, derived from the registries, and validation at the
boundary (one clear line naming the key).

Every key either acts or is refused: what reads which key is derived from the declarations of the
model (``ModelSpec.uses``, ``options``, ``problem_options``, ``loss_keys``, ``penalized``), its
problem kind (``KindSpec.reads_rule``, ``key_groups``), the rule (``RuleSpec.options``) and the
schedule (``SCHEDULE_KEYS``). A key that nothing of a config reads is refused when it is set away
from its default, so configs may still assign defaults, or when it was given explicitly (the keys
of the command line or of a sweep, where the caller can tell: ``validate(config, given)``); the
options of a rule and the numbers of a schedule that a config presets for the rule or schedule it
names are refused, once a flag switched that choice, only when given (``KeyGroup.preset``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Collection

import jax
import ml_collections
from ml_collections import config_dict

from deepfound.data.registry import DATASETS
from deepfound.errors import ConfigError
from deepfound.experiment.checks import MAX_SEED, PRECISIONS  # noqa: F401
from deepfound.experiment.checks import number as _number
from deepfound.experiment.checks import one_of as _one_of
from deepfound.experiment.checks import positive as _positive
from deepfound.experiment.checks import positive_int as _positive_int
from deepfound.experiment.checks import seed as _seed
from deepfound.experiment.kinds import KINDS, KeyGroup, KindSpec, get_kind
from deepfound.experiment.models import MODELS, SHARED_KEYS, check_keys, problem_options
from deepfound.optim.driver import SAMPLINGS
from deepfound.optim.memory import LAYOUTS
from deepfound.optim.registry import RULES
from deepfound.optim.schedules import SCHEDULES
from deepfound.optim.schemes import SCHEMES
from deepfound.registry import MAX_STEPS

MEMORY_CHOICES = ("auto",) + LAYOUTS  # auto: the model's layout (scalar for linear models)
# The numbers of a rule's group (optim, or a game player's optim.<player>) that each schedule
# reads (``schedules.make_schedule``; strongly_convex's step is 1/(mu (l + 1)): no rate).
SCHEDULE_KEYS = {"constant": ("learning_rate",), "inverse_time": ("learning_rate", "l0"),
                 "inverse_sqrt": ("learning_rate", "l0"), "strongly_convex": ("strong_convexity",)}
ALL_DEVICES = -1  # mesh.data: every device (jax.device_count())
# The keys in which a resumed run may differ from the run stored in its workdir: num_steps extends
# it; mesh.data changes how it is computed (on how many devices), not what.
RESUMABLE_KEYS = ("num_steps", "mesh.data")


def precision_dtype(precision: str):
  """The float dtype of ``precision`` ("float32" or "float64")."""
  return PRECISIONS[precision]


def precision_scope(precision: str):
  """float64 runs trace and run with x64 enabled, within this scope only: JAX's dtype switch
  is process-wide state, and an experiment leaves it as it found it."""
  return jax.enable_x64(True) if precision == "float64" else contextlib.nullcontext()


def stored_config(stored: dict) -> ml_collections.ConfigDict:
  """A config read back from a run's config.json, with the keys added to ``base_config`` since
  that run was made at their defaults (so an older run resumes and restores), keys renamed
  since under their new names (``KindSpec.upgrade`` of the model's kind), and keys that its model,
  loss and problem kind do not read at their defaults (they had no effect; ``validate`` refuses
  them now)."""
  stored = copy.deepcopy(stored)
  name = (stored.get("model") or {}).get("name")
  if name in MODELS:
    for upgrade in (get_kind(MODELS.get(name).kind).upgrade, MODELS.get(name).upgrade):
      if upgrade is not None:
        upgrade(stored)
  config = base_config()
  config.update(stored)
  _reset_unread(config)
  return config


def _reset_unread(config: ml_collections.ConfigDict) -> None:
  """Sets the keys that no reader of ``config`` reads (presets aside) to their defaults."""
  spec = MODELS.get(config.model.name) if config.model.name in MODELS else None
  if spec is None or config.problem.loss not in spec.losses:
    return
  try:
    groups = model_key_groups(config) + kind_key_groups(config)
  except ValueError:  # a rule or scheme no longer registered: validate names it
    return
  base = base_config()
  for group in groups:
    for key in () if group.preset else group.keys - group.read:
      parent, _, leaf = key.rpartition(".")
      (_lookup(config, parent) if parent else config)[leaf] = _lookup(base, key)


def base_config() -> ml_collections.ConfigDict:
  """Every key an experiment may set (a config file overrides some; flags override any),
  including the options of every registered rule (``optim.*``) and data set (``data.*``)."""
  config = _shared_config()
  for kind in KINDS:  # the keys of each problem kind (a game's scheme and players)
    kind.add_keys(config)
  return config


def _shared_config() -> ml_collections.ConfigDict:
  """``base_config`` without the keys the problem kinds add."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_steps = 1000
  config.log_every = 50
  config.precision = "float32"
  config.checkpoint_every = 20_000  # steps between checkpoints (rounded to whole log blocks)

  # Data parallelism: the devices over which each minibatch is split, with parameters and
  # optimizer state replicated and the SAG family's per-sample memory split along the samples
  # (deepfound.optim.sharding). 1: one device; -1 (ALL_DEVICES): every device, of every process.
  # It changes how a run is computed, not what (the same results to rounding), so a run may
  # resume under another value (RESUMABLE_KEYS).
  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = 1

  config.data = ml_collections.ConfigDict()
  config.data.name = "quantum"
  config.data.path = config_dict.placeholder(str)
  config.data.num_samples = 10_000
  config.data.num_features = 100
  config.data.seed = 0
  config.data.test_fraction = 0.25  # held-out share, for sets without a test split
  config.data.sparse = "auto"  # linear models: keep sparse data sparse (auto: below 10 % density)
  config.data.weights = config_dict.placeholder(str)  # sample weights: a file, or column:<j>
  for option in DATASETS.options().values():
    config.data[option.name] = option.config_default()

  config.model = ml_collections.ConfigDict()
  config.model.name = "linear"  # the linear models of 17.1; perceptron, mlp, cnn: 17.3
  for option in SHARED_KEYS.values():  # read by the models that name them in ModelSpec.uses
    config.model[option.name] = option.default
  config.model.seed = 0  # parameter initialization
  for option in MODELS.options().values():
    config.model[option.name] = option.config_default()

  config.problem = ml_collections.ConfigDict()
  config.problem.loss = "logistic"
  config.problem.l2 = 0.0
  for option in problem_options().values():
    config.problem[option.name] = option.config_default()

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "sgd"
  # A number, "auto" (scikit-learn's step for sag and saga), or None (the rule's default, if any).
  config.optim.learning_rate = config_dict.placeholder(object)
  config.optim.tol = config_dict.placeholder(float)  # stop at epoch ends (scikit-learn's test)
  config.optim.unroll = config_dict.placeholder(int)  # None: the backend's (driver.DEFAULT_UNROLL)
  config.optim.ema = config_dict.placeholder(float)  # None or 0: report the last iterate
  config.optim.schedule = "constant"
  config.optim.l0 = 100.0
  config.optim.strong_convexity = config_dict.placeholder(float)  # None: problem.l2
  config.optim.batch_size = 1
  config.optim.sampling = "uniform"
  config.optim.memory = "auto"
  config.optim.max_memory_mb = config_dict.placeholder(float)  # None: see build.memory_budget
  for option in RULES.options().values():
    config.optim[option.name] = option.config_default()
  return config


# The keys of the single rule at the top of optim (the objective kind's); optim.batch_size and
# optim.max_memory_mb are every kind's.
RULE_KEYS = ("name", "learning_rate", "tol", "schedule", "l0", "strong_convexity", "sampling",
             "memory", "unroll", "ema")


def _paths(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
  """The dotted paths of the leaves of ``config``."""
  paths = set()
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      paths |= _paths(value, f"{prefix}{key}.")
    else:
      paths.add(f"{prefix}{key}")
  return paths


def _lookup(config, path: str):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def _kind_keys(kind: KindSpec) -> set[str]:
  """The keys that ``kind.add_keys`` adds to the shared ones."""
  config = _shared_config()
  shared = _paths(config)
  kind.add_keys(config)
  return _paths(config) - shared


def rule_key_groups(prefix: str, group: ml_collections.ConfigDict) -> list[KeyGroup]:
  """What the rule of ``group`` (the top-level ``optim``, or a game player's ``optim.<player>``,
  named by ``prefix``) reads of the rules' options and of the schedules' numbers (presets)."""
  rule = RULES.get(group.name)
  numbers = {k for keys in SCHEDULE_KEYS.values() for k in keys}
  return [
      KeyGroup(f"{prefix}.name={rule.name}", frozenset(f"{prefix}.{o}" for o in RULES.options()),
               frozenset(f"{prefix}.{o.name}" for o in rule.options), preset=True),
      KeyGroup(f"{prefix}.schedule={group.schedule}", frozenset(f"{prefix}.{k}" for k in numbers),
               frozenset(f"{prefix}.{k}" for k in SCHEDULE_KEYS[group.schedule]), preset=True),
  ]


def model_key_groups(config: ml_collections.ConfigDict) -> list[KeyGroup]:
  """What the config's model reads of every model's keys (and problem.l2), then what its loss
  reads of the model's per-loss keys, then what each of its variant options reads
  (``ModelSpec.variant_keys``)."""
  spec, loss = MODELS.get(config.model.name), config.problem.loss
  every = ({f"model.{k}" for k in SHARED_KEYS} | {f"model.{k}" for k in MODELS.options()}
           | {"problem.l2"} | {f"problem.{k}" for k in problem_options()})
  read = ({f"model.{k}" for k in spec.uses} | {f"model.{o.name}" for o in spec.options}
          | {f"problem.{o.name}" for o in spec.problem_options}
          | ({"problem.l2"} if spec.penalized else set()))
  per_loss = {f"problem.{k}" for keys in spec.loss_keys.values() for k in keys}
  return [KeyGroup(f"model.name={spec.name}", frozenset(every), frozenset(read)),
          KeyGroup(f"problem.loss={loss} (model.name={spec.name})", frozenset(per_loss),
                   frozenset(f"problem.{k}" for k in spec.loss_reads(loss)))] + [
              KeyGroup(reader, keys, reads, preset=True)
              for reader, keys, reads in spec.variant_reads(config)]


def single_rule_keys() -> frozenset[str]:
  """The keys of the single rule at the top of optim (``RULE_KEYS`` and every rule's options)."""
  return frozenset({f"optim.{k}" for k in RULE_KEYS} | {f"optim.{o}" for o in RULES.options()})


def kind_key_groups(config: ml_collections.ConfigDict) -> list[KeyGroup]:
  """The kind's own ``key_groups``, then what the config's problem kind reads of the single
  rule's keys and of every kind's own keys and, if it reads the single rule, the rule's groups."""
  name = config.model.name
  kind = get_kind(MODELS.get(name).kind)
  rule = single_rule_keys()
  own = {spec.name: _kind_keys(spec) for spec in KINDS}
  every = rule.union(*own.values())
  read = (rule if kind.reads_rule else set()) | own[kind.name]
  groups = [] if kind.key_groups is None else kind.key_groups(config)
  groups.append(KeyGroup(f"model.name={name} (a problem of kind {kind.name})", frozenset(every),
                         frozenset(read)))
  if kind.reads_rule:
    groups += rule_key_groups("optim", config.optim)
  return groups


def _same(value, default) -> bool:
  normal = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
  try:
    return bool(normal(value) == normal(default))
  except (TypeError, ValueError):
    return False


def check_read_keys(config: ml_collections.ConfigDict, groups: list[KeyGroup],
                    given: Collection[str] = ()) -> None:
  """Raises ``ConfigError`` for the first key of a group that its reader does not read and that
  is in ``given`` or (unless the group is a ``preset``) set away from its ``base_config``
  default."""
  base, given = base_config(), set(given)
  for group in groups:
    for key in sorted(group.keys - group.read):
      try:
        value, default = _lookup(config, key), _lookup(base, key)
      except (KeyError, AttributeError):
        continue
      if key in given or not (group.preset or _same(value, default)):
        advice = ("do not set it" if _same(value, default)
                  else f"leave it at its default ({default!r})")
        raise ConfigError(f"{key}={value!r} is ignored by {group.reader}; {advice}{group.note}")


def mesh_devices(config: ml_collections.ConfigDict) -> int:
  """The number of devices of ``mesh.data`` (-1 resolved to ``jax.device_count()``)."""
  value = config.mesh.data
  return jax.device_count() if value == ALL_DEVICES else value


def _validate_mesh(config: ml_collections.ConfigDict) -> None:
  """mesh.data: a positive integer or -1, at most the devices there are, the same number from
  each process."""
  value = config.mesh.data
  if isinstance(value, bool) or not isinstance(value, int) or not (value >= 1
                                                                    or value == ALL_DEVICES):
    raise ConfigError(f"mesh.data must be a positive integer or {ALL_DEVICES} (all devices), got "
                      f"{value!r}")
  if value == 1:  # (asks JAX nothing: a one-device run does not start its backend here)
    return
  available, processes = jax.device_count(), jax.process_count()
  if value > available:
    raise ConfigError(f"mesh.data={value} is more than the {available} device"
                      f"{'s' if available > 1 else ''} there are (jax.device_count()); use at "
                      f"most {available}, or {ALL_DEVICES} for all of them")
  if mesh_devices(config) % processes:
    raise ConfigError(f"mesh.data={value} does not split evenly over the {processes} processes "
                      "(each gives the same number of devices); use a multiple of "
                      f"{processes}")


def _check_batch_splits(config: ml_collections.ConfigDict) -> None:
  """A minibatch splits evenly over the devices of mesh.data."""
  devices, batch_size = mesh_devices(config), config.optim.batch_size
  if devices > 1 and batch_size % devices:
    what = (f"mesh.data={devices}" if config.mesh.data != ALL_DEVICES
            else f"mesh.data={ALL_DEVICES} ({devices} devices)")
    raise ConfigError(f"optim.batch_size={batch_size} does not split evenly over {what}; use a "
                      f"multiple of {devices}")


def validate(config: ml_collections.ConfigDict, given: Collection[str] = ()) -> None:
  """Raises ``ConfigError`` naming the first bad key; checks what needs no data. ``given``: the
  keys set explicitly (a command line's overrides, a sweep's keys), refused where unread even at
  their defaults (see the module's docstring)."""
  optim, data = config.optim, config.data
  _one_of("optim.name", optim.name, RULES.names())
  _one_of("data.name", data.name, DATASETS.names())
  _one_of("model.name", config.model.name, MODELS.names())
  _one_of("optim.schedule", optim.schedule, SCHEDULES)
  _one_of("optim.sampling", optim.sampling, SAMPLINGS)
  _one_of("optim.memory", optim.memory, MEMORY_CHOICES)
  _one_of("precision", config.precision, tuple(PRECISIONS))
  for key in ("num_steps", "log_every", "checkpoint_every"):
    _positive_int(key, config[key], largest=MAX_STEPS)
  for key in ("seed", "data.seed", "model.seed"):
    _seed(key, config[key])
  if config.num_steps % config.log_every:
    raise ConfigError(
        f"num_steps ({config.num_steps}) must be a multiple of log_every ({config.log_every})"
    )
  _positive_int("optim.batch_size", optim.batch_size)
  if config.problem.l2 is None or not _number("problem.l2", config.problem.l2) >= 0:
    raise ConfigError(f"problem.l2 must be >= 0, got {config.problem.l2!r}")
  if config.problem.l2 > 0:
    _positive("problem.l2", config.problem.l2, config.precision)
  if optim.max_memory_mb is not None:
    _positive("optim.max_memory_mb", optim.max_memory_mb)
  _validate_mesh(config)
  _validate_data(config)
  _validate_model(config, given)
  get_kind(MODELS.get(config.model.name).kind).validate(config)
  _check_batch_splits(config)
  check_read_keys(config, kind_key_groups(config), given)


def _validate_data(config) -> None:
  data, spec = config.data, DATASETS.get(config.data.name)
  for key in spec.requires:
    if not data[key]:
      raise ConfigError(f"data.{key} is required for data.name={spec.name}")
  for option in spec.options:
    option.validate("data", data[option.name])
  for key in ("num_samples", "num_features"):
    if key in spec.uses:
      _positive_int(f"data.{key}", data[key])
  _one_of("data.sparse", data.sparse, ("auto", "true", "false"))
  if data.weights is not None and not (isinstance(data.weights, str) and data.weights.strip()):
    raise ConfigError(f"data.weights must be a file or column:<j>, got {data.weights!r}")
  if data.weights and not MODELS.get(config.model.name).design_matrix:
    raise ConfigError(f"data.weights applies to model.name=linear, not {config.model.name}")
  rule = RULES.get(config.optim.name)
  if spec.stream:
    if data.weights:
      raise ConfigError(f"data.weights needs a finite data set; data.name={spec.name} is a stream")
    if rule.needs_finite_sum:
      raise ConfigError(
          f"optim.name={rule.name} needs a finite sum, but data.name={spec.name} draws a fresh "
          "sample every step (n = infinity); use a rule without one, e.g. sgd or sga")
    if not MODELS.get(config.model.name).streams or config.problem.loss != "logistic":
      raise ConfigError(f"data.name={spec.name} draws logistic samples for a linear model; use "
                        "model.name=linear and problem.loss=logistic")


def _validate_model(config, given: Collection[str]) -> None:
  """The model's keys, before the rule's: what it does not read, then what it reads."""
  model, data = config.model, config.data
  spec = MODELS.get(model.name)
  _one_of("problem.loss", config.problem.loss, spec.losses)
  model_keys, *loss_and_variant_keys = model_key_groups(config)
  check_read_keys(config, [model_keys], given)
  check_keys(spec, config)  # (a loss's required key is named before another loss's stale one)
  check_read_keys(config, loss_and_variant_keys, given)
  if DATASETS.get(data.name).stream:
    for option in spec.problem_options:
      if config.problem[option.name] not in (None, option.default):
        raise ConfigError(f"problem.{option.name} needs a finite data set; data.name="
                          f"{data.name} is a stream")
  if not 0 < _number("data.test_fraction", data.test_fraction) < 1:
    raise ConfigError(f"data.test_fraction must be in (0, 1), got {data.test_fraction}")


KEY_HELP = {
    "seed": "PRNG seed of the sampling", "num_steps": "iterations to run",
    "log_every": "steps between objective evaluations (metrics lines)",
    "precision": "float32 or float64",
    "checkpoint_every": "steps between checkpoints (whole log blocks)",
    "data.name": "a registered data set (below)", "data.path": "the file or directory of file sets",
    "data.num_samples": "n of generated sets", "data.num_features": "p of generated sets",
    "data.seed": "seed of generated sets, shuffles and splits",
    "data.test_fraction": "held-out share for networks on sets without a test split",
    "model.name": "a registered model (below)", "model.seed": "parameter initialization seed",
    **{f"model.{o.name}": f"{o.help} (for the models that list it below)" for o in SHARED_KEYS.values()},
    "problem.loss": "the per-sample loss", "problem.l2": "weight of (l2/2)||b||^2",
    "optim.name": "a registered update rule (below)",
    "optim.learning_rate": "constant rate, tau0 of a schedule, or auto (scikit-learn's sag/saga "
                           "step); None: the rule's default",
    "optim.tol": "stop when max|change over an epoch| / max|weight| <= tol (checked at epoch "
                 "ends); None: run num_steps",
    "optim.unroll": "steps per iteration of the compiled step loop (lax.scan's unroll; the "
                    "same run, another speed); None: the backend's default (8 on GPUs, 1 on "
                    "CPUs)",
    "optim.ema": "report an exponential moving average of the iterates with this decay in "
                 "(0, 1) (weight averaging, e.g. 0.999); 0 or None: the last iterate",
    "data.sparse": "linear models: auto (sparse input below 10% density stays sparse), true, "
                   "false",
    "data.weights": "sample weights: a file of one number per line, or column:<j> of the data",
    "optim.schedule": "the step-size schedule", "optim.l0": "warm-up length of the schedules",
    "optim.strong_convexity": "mu of strongly_convex (None: problem.l2)",
    "optim.scheme": "a game's scheme (below)",
    "optim.batch_size": "samples per step", "optim.sampling": "uniform or shuffle",
    "optim.memory": "SAG-family memory layout",
    "optim.max_memory_mb": "memory budget in MB (None: half the RAM on a CPU, 80% of an "
                           "accelerator's free memory)",
    "mesh.data": "devices each minibatch is split over (data parallelism; -1: all); a run "
                 "resumes under another value",
}


def describe() -> str:
  """The config keys with their defaults, the update rules, data sets and their options, for
  ``--help``."""
  base = base_config()
  options = ({f"optim.{o}" for o in RULES.options()} | {f"data.{o}" for o in DATASETS.options()}
             | {f"model.{o}" for o in MODELS.options()} | {f"problem.{o}" for o in problem_options()}
             | {f"optim.{o}" for o in SCHEMES.options()})
  lines = ["Config keys (--config.KEY=VALUE), default in brackets:"]
  for group in (None, "data", "model", "problem", "optim", "mesh"):
    node = base if group is None else base[group]
    for key, value in node.items():
      name = key if group is None else f"{group}.{key}"
      if not isinstance(value, ml_collections.ConfigDict) and name not in options:
        lines.append(f"  {name:<24} [{value}] {KEY_HELP.get(name, '')}")
  lines += ["", "Update rules (optim.name):"]
  lines += [f"  {spec.name:<14} {spec.summary}" for spec in RULES]
  lines += [f"  optim.{o.name} (default {o.default}): {o.help}" for o in RULES.options().values()]
  lines += ["", "Data sets (data.name):"]
  lines += [f"  {spec.name:<14} {spec.summary}"
            + (f" [keys: {', '.join('data.' + k for k in spec.uses)}]" if spec.uses else "")
            for spec in DATASETS]
  lines += [f"  data.{o.name} (default {o.default}): {o.help}" for o in DATASETS.options().values()]
  lines += ["", "Models (model.name), with their losses (problem.loss, the first is the usual one):"]
  lines += [f"  {spec.name:<14} {spec.summary} [problem.loss: {', '.join(spec.losses)}]"
            + (f" [keys: {', '.join('model.' + k for k in spec.uses)}]" if spec.uses else "")
            for spec in MODELS]
  lines += [f"  model.{o.name} (default {o.default}): {o.help}" for o in MODELS.options().values()]
  lines += [f"  problem.{o.name} (default {o.default}): {o.help}" for o in problem_options().values()]
  lines += ["", "Problem kinds (a model's kind: its engine and keys):"]
  lines += [f"  {spec.name:<14} {spec.summary}" for spec in KINDS]
  lines += ["", "Game schemes (optim.scheme, for models of kind game):"]
  lines += [f"  {spec.name:<14} {spec.summary}" for spec in SCHEMES]
  lines += [f"  optim.{o.name} (default {o.default}): {o.help}" for o in SCHEMES.options().values()]
  lines += ["",
            f"Schedules (optim.schedule): {', '.join(SCHEDULES)}; sampling (optim.sampling): "
            f"{', '.join(SAMPLINGS)}; memory (optim.memory): {', '.join(MEMORY_CHOICES)}",
            "", "Every key and its default: python -c 'from deepfound.experiment import "
            "base_config; print(base_config())'"]
  return "\n".join(lines)
