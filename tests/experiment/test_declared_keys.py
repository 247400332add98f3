"""Every config key either acts or is refused: what reads which key is derived from what models,
losses, problem kinds, rules and schedules declare (``config.check_read_keys``), and each key a
model reads gets the generic check of its type. All in Python, before any data or compilation."""

import glob
import json
import os

import pytest
from conftest import ROOT, config_of

from deepfound.experiment import ConfigError, base_config, validate
from deepfound.experiment.build import build_method
from deepfound.experiment.config import kind_key_groups, model_key_groups, stored_config
from deepfound.experiment.models import MODELS, SHARED_KEYS
from deepfound.optim import RULES

# The arguments of each config file (others: its default); every variant must validate.
ARGS = {"gan_2d": ["ring", "grid,2"], "density_2d": ["ring", "grid,gmm", "moons,flow"],
        "pushforward_2d": ["ring", "grid,mmd", "moons,sinkhorn"],
        "logreg_quantum": list(RULES.names()), "logreg_libsvm": ["sgd", "sag", "saga"],
        "mlp_digits": list(RULES.names()), "cnn_digits": ["adam", "sag"], "vae_digits": ["2", "5"]}
CONFIGS = sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                 if not f.endswith("__init__.py"))


@pytest.mark.parametrize("module", CONFIGS)
def test_every_config_sets_only_keys_its_run_reads(module):
  for arg in ARGS.get(module, [None]):
    config = config_of(module, arg)
    if config.data.name == "libsvm":
      config.data.path = "rcv1_train.binary"  # required; not read before the data are loaded
    validate(config)


@pytest.mark.parametrize("module, arg, overrides, message", [
    # A GAN reads neither the single rule's keys nor problem.l2 (its players have their own rules).
    ("gan_2d", "ring", dict(optim__tol=1e-3), r"optim.tol=0.001 is ignored by model.name=gan, "
     r"a two-player game; leave it at its default \(None\); each player has its own rule keys"),
    ("gan_2d", "ring", dict(optim__learning_rate=0.1), "optim.learning_rate=0.1 is ignored by "
     "model.name=gan"),
    ("gan_2d", "ring", dict(optim__name="adam"), "optim.name='adam' is ignored by model.name=gan"),
    ("gan_2d", "ring", dict(problem__l2=0.1), r"problem.l2=0.1 is ignored by model.name=gan;"),
    ("gan_2d", "ring", dict(optim__ema=0.99), "optim.ema=0.99 is ignored by model.name=gan"),
    # Keys that only another loss of the model reads.
    ("gan_2d", "ring", dict(problem__penalty_weight=5.0),
     r"problem.penalty_weight=5.0 is ignored by problem.loss=js \(model.name=gan\)"),
    ("vae_digits", "2", dict(problem__num_importance_samples=7),
     r"problem.num_importance_samples=7 is ignored by problem.loss=elbo \(model.name=vae\)"),
    ("pushforward_2d", "ring", dict(problem__bandwidth=0.3), "ignored by problem.loss=sinkhorn"),
    # Another model's keys, the model named before the rule (adam cannot take l1 either).
    ("density_2d", "ring,gmm", dict(problem__l1=0.1), "problem.l1=0.1 is ignored by model.name=gmm"),
    ("density_2d", "ring,gmm", dict(problem__l1=0.1, optim__name="sgd"),
     "problem.l1=0.1 is ignored by model.name=gmm"),
    ("mlp_digits", "sgd", dict(model__channels=(4,)), r"model.channels=\(4,\) is ignored by "
     "model.name=mlp"),
])
def test_a_key_that_nothing_reads_is_refused(module, arg, overrides, message):
  with pytest.raises(ConfigError, match=message):
    validate(config_of(module, arg, **overrides))


def test_a_rule_or_schedule_preset_is_refused_only_when_given():
  """Configs preset the options of the rule and the numbers of the schedule they name; a flag that
  switches either leaves them unread, which is refused only for keys given explicitly (as the
  command line's and a sweep's keys are). Given, an unread key is refused even at its default."""
  config = config_of("gan_2d", "ring", optim__discriminator__name="sgd")  # adam's b1 = 0.8 stays
  validate(config)
  with pytest.raises(ConfigError, match="optim.discriminator.b1=0.8 is ignored by "
                     "optim.discriminator.name=sgd"):
    validate(config, given=["optim.discriminator.name", "optim.discriminator.b1"])
  config = config_of("mlp_digits", "sgd", optim__schedule="constant")  # its l0 = 2000 stays
  validate(config)
  for key in ("optim.l0", "optim.strong_convexity"):
    with pytest.raises(ConfigError, match=f"{key}=.* is ignored by optim.schedule=constant"):
      validate(config, given=[key])
  with pytest.raises(ConfigError, match="optim.generator.l0=100.0 is ignored by "
                     "optim.generator.schedule=constant"):
    validate(config_of("gan_2d", "ring"), given=["optim.generator.l0"])
  with pytest.raises(ConfigError, match=r"problem.l2=0.0 is ignored by model.name=gan"):
    validate(config_of("gan_2d", "ring"), given=["problem.l2"])


def test_keys_at_their_defaults_and_read_keys_stay_accepted():
  validate(config_of("gan_2d", "ring", problem__l2=0.0, optim__discriminator_steps=1,
                     problem__penalty_weight=10.0))  # defaults, set again
  validate(config_of("gan_2d", "ring", problem__loss="wgan_gp", problem__penalty_weight=5.0))
  validate(config_of("vae_digits", "2", problem__loss="iwae", problem__num_importance_samples=7))
  validate(config_of("gan_2d", "ring", optim__generator__schedule="inverse_time",
                     optim__generator__l0=5.0))


def test_read_keys_are_derived_from_the_declarations():
  """Each model reads its declared keys and no other model's; the losses split the per-loss keys
  as declared; a game reads none of the single rule's keys and each player its own rule's."""
  for spec in MODELS:
    config = base_config()
    config.model.name, config.problem.loss = spec.name, spec.losses[0]
    model, loss, *_ = model_key_groups(config)
    assert model.read == ({f"model.{k}" for k in spec.uses} | {f"model.{o.name}" for o in spec.options}
                          | {f"problem.{o.name}" for o in spec.problem_options}
                          | ({"problem.l2"} if spec.penalized else set()))
    assert {f"model.{k}" for k in SHARED_KEYS} <= model.keys
    assert loss.keys | loss.read <= model.read
  config = config_of("gan_2d", "ring")
  groups = {g.reader: g for g in kind_key_groups(config)}
  game = groups["model.name=gan, a two-player game"]
  assert not game.read and {"optim.tol", "optim.name", "optim.learning_rate"} <= game.keys
  adam = groups["optim.generator.name=adam"]
  assert adam.read == {f"optim.generator.{o.name}" for o in RULES.get("adam").options}


@pytest.mark.parametrize("module, arg, overrides, message", [
    # Widths keys: one check for every tuple key a model reads (not per key name).
    ("gan_2d", "ring", dict(model__discriminator_hidden=(0,)), "model.discriminator_hidden must be "
     "a tuple of positive integers"),
    ("gan_2d", "ring", dict(model__discriminator_hidden=(-3,)), "tuple of positive integers"),
    ("gan_2d", "ring", dict(model__discriminator_hidden=(2.5,)), "tuple of positive integers"),
    ("gan_2d", "ring", dict(model__hidden=(0,)), "model.hidden must be a tuple of positive"),
    # Floats: finite, and representable in the run's precision.
    ("gan_2d", "ring", dict(problem__loss="wgan_clip", problem__clip=1e300),
     r"problem.clip = 1e\+300 is not representable in float32"),
    ("pushforward_2d", "ring", dict(problem__epsilon=float("inf")), "problem.epsilon must be finite"),
    # A divergence's parameter: computable in the precision, and required by its loss.
    ("pushforward_2d", "ring", dict(problem__epsilon=1e-30), r"problem.epsilon = 1e-30 is below "
     r"1.19e-06, 10 machine epsilons of float32"),
    ("pushforward_2d", "ring,mmd", dict(problem__bandwidth=1e-30), "problem.bandwidth = 1e-30 "
     "gives a Gaussian kernel of width"),
    ("pushforward_2d", "ring", dict(problem__loss="mmd", problem__epsilon=None),
     "problem.bandwidth is required for problem.loss=mmd"),
    # A decay: in (0, 1), and not on top of a rule's own average.
    ("flow_matching_2d", "ring", dict(optim__ema=1.0), r"optim.ema must be a decay in \(0, 1\)"),
    ("flow_matching_2d", "ring", dict(optim__ema=float("nan")), "optim.ema must be a decay"),
    ("logreg_quantum", "sga", dict(optim__ema=0.9), "optim.name=sga reports an average of its "
     "iterates already"),
])
def test_each_read_key_gets_the_check_of_its_type(module, arg, overrides, message):
  with pytest.raises(ConfigError, match=message):
    validate(config_of(module, arg, **overrides))


def test_a_run_stored_with_keys_now_refused_reads_back_as_the_same_config():
  """config.json of runs made before unread keys were refused (a pushforward run kept mmd's
  bandwidth, the MNIST VAE a tanh activation it never read) reads back with them at their
  defaults, so the runs resume under today's configs; presets are kept."""
  for module, arg, key, old in (("pushforward_2d", "ring", "problem.bandwidth", 0.1),
                                ("vae_mnist", None, "model.activation", "tanh")):
    config = config_of(module, arg)
    stored = json.loads(config.to_json())
    group, field = key.split(".")
    stored[group][field] = old
    assert stored_config(stored).to_json() == config.to_json()
  config = config_of("gan_2d", "ring", optim__discriminator__name="sgd")
  assert stored_config(json.loads(config.to_json())).optim.discriminator.b1 == 0.8


def test_a_problem_l2_sweep_on_a_gan_is_refused():
  from deepfound.sweep.runner import plan
  from deepfound.sweep.spec import SpecError

  # A swept key is set explicitly: refused even at its default, on the first run.
  with pytest.raises(SpecError, match=r"run 0 \(problem.l2=0\): problem.l2=0.0 is ignored by "
                     r"model.name=gan; do not set it"):
    plan(config_of("gan_2d", "ring"), "problem.l2=[0.0, 0.1]")
  with pytest.raises(SpecError, match=r"problem.l2=0.1 is ignored by model.name=gan"):
    plan(config_of("gan_2d", "ring"), "problem.l2=[0.1]")
  # A command line's override of a key the run ignores, at its default, is refused too.
  with pytest.raises(SpecError, match=r"optim.tol=None is ignored"):
    plan(config_of("gan_2d", "ring"), "seed=[0, 1]", given={"optim.tol"})
  plan(config_of("gan_2d", "ring"), "seed=[0, 1]")


def test_a_moving_average_of_zero_is_the_last_iterate():
  """optim.ema=0 (the command line cannot spell None for a float) reports the last iterate."""
  config = config_of("flow_matching_2d", "ring", optim__ema=0.0)
  validate(config)
  assert build_method(config).ema is None
  assert build_method(config_of("flow_matching_2d", "ring")).ema == 0.999
