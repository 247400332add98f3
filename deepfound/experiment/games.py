"""The ``game`` problem kind on the experiment side: two players (``kinds.Game``), each with its
own registered rule (``optim.generator.*``, ``optim.discriminator.*``), under a registered scheme
(``optim.scheme``, with the scheme's own keys), run by ``deepfound.optim.game``."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from deepfound.errors import ConfigError
from deepfound.experiment import build as build_lib
from deepfound.experiment.checks import check_ema, one_of, positive
from deepfound.experiment.config import precision_dtype, rule_key_groups, single_rule_keys
from deepfound.experiment.kinds import KeyGroup, KindSpec, register_kind
from deepfound.optim import driver, game
from deepfound.optim.registry import RULES
from deepfound.optim.schedules import SCHEDULES
from deepfound.optim.schemes import SCHEMES
from deepfound.problems.kinds import FiniteGame


def add_keys(config: ml_collections.ConfigDict) -> None:
  """The scheme and its options (``optim.<option>``), and each player's optim group."""
  config.optim.scheme = "alternating"
  for option in SCHEMES.options().values():
    config.optim[option.name] = option.config_default()
  for player in game.PLAYERS:
    group = ml_collections.ConfigDict()
    group.name = "adam"
    group.learning_rate = config_dict.placeholder(float)
    group.schedule = "constant"
    group.l0 = 100.0
    group.strong_convexity = config_dict.placeholder(float)
    group.ema = config_dict.placeholder(float)  # None or 0: the player's last iterate
    for option in RULES.options().values():
      group[option.name] = option.config_default()
    config.optim[player] = group


def validate(config: ml_collections.ConfigDict) -> None:
  optim = config.optim
  one_of("optim.scheme", optim.scheme, SCHEMES.names())
  scheme = SCHEMES.get(optim.scheme)
  for option in scheme.options:
    option.validate("optim", optim[option.name])
  own = {o.name for o in scheme.options}
  for option in SCHEMES.options().values():
    if option.name not in own and optim[option.name] != option.default:
      owners = [s.name for s in SCHEMES if option.name in {o.name for o in s.options}]
      raise ConfigError(f"optim.{option.name}={optim[option.name]} applies to optim.scheme="
                        f"{'/'.join(owners)} only (the scheme is {optim.scheme})")
  for option in RULES.options().values():
    if optim[option.name] != option.default:
      raise ConfigError(f"optim.{option.name}={optim[option.name]} is an option of the top-level "
                        f"rule, which a two-player game (model.name={config.model.name}) does not "
                        f"use; set optim.generator.{option.name} or optim.discriminator."
                        f"{option.name}" + ("; the svre scheme's snapshot period is "
                                            "optim.svre_frequency"
                                            if option.name == "svrg_frequency" else ""))
  for player in game.PLAYERS:
    group, prefix = optim[player], f"optim.{player}"
    one_of(f"{prefix}.name", group.name, RULES.names())
    spec = RULES.get(group.name)
    if spec.needs_finite_sum or spec.oracle != "minibatch":
      raise ConfigError(f"{prefix}.name={group.name} needs a finite sum or its own gradient "
                        "oracle; a game draws fresh samples every step: use sgd, sga or adam")
    for option in spec.options:
      option.validate(prefix, group[option.name])
    check_ema(prefix, group.get("ema"), spec)
    one_of(f"{prefix}.schedule", group.schedule, SCHEDULES)
    if group.schedule == "strongly_convex":
      raise ConfigError(f"{prefix}.schedule=strongly_convex needs a strongly convex objective; "
                        "a game has none")
    if group.learning_rate is None:
      raise ConfigError(f"{prefix}.learning_rate is required (a float > 0)")
    positive(f"{prefix}.learning_rate", group.learning_rate, config.precision)
    if group.schedule in ("inverse_time", "inverse_sqrt"):
      positive(f"{prefix}.l0", group.l0, config.precision)


def key_groups(config: ml_collections.ConfigDict) -> list[KeyGroup]:
  """None of the single rule's keys at the top of optim, then what each player's rule and
  schedule read of its group (the scheme's options are checked by ``validate``)."""
  players = ", ".join(f"optim.{p}.*" for p in game.PLAYERS)
  groups = [KeyGroup(f"model.name={config.model.name}, a two-player game", single_rule_keys(),
                     frozenset(), note=f"; each player has its own rule keys ({players})")]
  return groups + [group for player in game.PLAYERS
                   for group in rule_key_groups(f"optim.{player}", config.optim[player])]


def build_method(config: ml_collections.ConfigDict) -> game.GameMethod:
  """Each player's rule (optim.generator.*, optim.discriminator.*) and the scheme with its
  options."""
  players = []
  for player in game.PLAYERS:
    group = config.optim[player]
    options = {o.name: group[o.name] for o in driver.get_rule(group.name).options}
    players.append(driver.Method(group.name, schedule=group.schedule,
                                 batch_size=config.optim.batch_size, memory="pytree",
                                 ema=group.get("ema") or None, **options))
  scheme = SCHEMES.get(config.optim.scheme)
  return game.GameMethod(*players, scheme=scheme.name, batch_size=config.optim.batch_size,
                         **{o.name: config.optim[o.name] for o in scheme.options})


def player_values(config: ml_collections.ConfigDict, player: str) -> dict[str, float]:
  """A player's numeric settings, as its ``driver.Hyperparameters`` hold them."""
  group = config.optim[player]
  return dict(learning_rate=float(group.learning_rate), l0=float(group.l0), strong_convexity=1.0)


def build_setup(config: ml_collections.ConfigDict, problem, notes: tuple[str, ...]
                ) -> build_lib.Setup:
  method = build_method(config)
  if method.spec.finite_game:
    if not isinstance(problem, FiniteGame):
      raise ConfigError(f"optim.scheme={method.scheme} needs a finite-sum game (kinds.FiniteGame); "
                        f"model.name={config.model.name} is not one")
    if problem.num_samples < 1:
      raise ConfigError(f"optim.scheme={method.scheme} needs at least one pack of problem.pack="
                        f"{config.problem.get('pack')} training samples; the data has fewer")
  dtype = precision_dtype(config.precision)
  resolved, hypers = {}, []
  for player in game.PLAYERS:
    values = player_values(config, player)
    hypers.append(driver.hyperparameters(**values, dtype=dtype))
    resolved.update({f"{player}_{k}": v for k, v in values.items()})
  resolved["learning_rate"] = resolved["generator_learning_rate"]
  resolved["notes"] = list(notes)
  rates = ", ".join(f"optim.{p}.learning_rate = {resolved[f'{p}_learning_rate']:.4g}"
                    for p in game.PLAYERS)
  return build_lib.Setup(
      problem=problem, method=method, hyper=game.GameHyper(*hypers), resolved=resolved,
      constants=dict(lipschitz=None, max_sample_lipschitz=None, optimum=None),
      gradient_memory_mb=None, fingerprint=build_lib.fingerprint(problem), label=method.label,
      divergence_note=f"({rates}); lower the learning rates")


def upgrade(stored: dict) -> None:
  """Configs stored before the svre scheme had its own option took its snapshot period from
  optim.svrg_frequency."""
  optim = stored.get("optim")
  if (isinstance(optim, dict) and optim.get("scheme") == "svre" and "svre_frequency" not in optim
      and optim.get("svrg_frequency") is not None):
    optim["svre_frequency"] = optim.pop("svrg_frequency")


register_kind(KindSpec(
    "game", "two players, each with its own rule, under a scheme (deepfound.optim.game)",
    add_keys=add_keys, validate=validate, build=build_setup, upgrade=upgrade, reads_rule=False,
    key_groups=key_groups))
