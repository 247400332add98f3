"""Update rules of section 17.1 as optax transformations, their registry, schedules, and the
engines that run them: the driver (one rule on a finite sum or an expectation) and the game
engine (two players under a registered scheme).

The rules live in ``deepfound.optim.rules`` (one module each, ``rules/sag.py``); importing a
rule's module registers it (``registry.register_rule``), and the package re-exports each rule's
constructor, state and ``scale_by_*`` transformation. Helpers of the machinery (the gradient
memory's ``check_index``, ``fill_memory``, ``flushed_table``, ...) stay in their modules
(``deepfound.optim.memory``) and are not part of ``__all__``.
"""
# ruff: noqa: I001

from deepfound.optim.registry import RULES, RuleContext, RuleSpec, LazyForm, get_rule, register_rule
from deepfound.optim.schedules import (
    SCHEDULES,
    constant_schedule,
    inverse_sqrt_schedule,
    inverse_time_schedule,
    make_schedule,
    rate_and_schedule,
    strongly_convex_schedule,
)
from deepfound.optim import rules  # registers the built-in rules, in the order --help lists them
from deepfound.optim.rules.sgd import bgd, sgd
from deepfound.optim.rules.sga import (CesaroAverageState, ExponentialAverageState, averaged_params,
                                      cesaro_average, exponential_average, sga)
from deepfound.optim.rules.sag import ScaleBySAGState, sag, scale_by_sag
from deepfound.optim.rules.saga import ScaleBySAGAState, saga, scale_by_saga
from deepfound.optim.rules.svrg import ScaleBySVRGState, scale_by_svrg, svrg
from deepfound.optim.rules.sarah import ScaleBySARAHState, sarah, scale_by_sarah
from deepfound.optim.engine import Engine, LogPoint, engine_for, register_engine
from deepfound.optim.driver import Method, hyperparameters, run, run_on_indices
from deepfound.optim.schemes import SCHEMES, SchemeSpec, register_scheme
from deepfound.optim import game  # the engine of two-player games; registers the schemes
from deepfound.optim.game import GameHyper, GameMethod

__all__ = (
    # update rules, their states and direction transformations
    "bgd",
    "sgd",
    "sga",
    "cesaro_average",
    "averaged_params",
    "exponential_average",
    "ExponentialAverageState",
    "CesaroAverageState",
    "sag",
    "scale_by_sag",
    "ScaleBySAGState",
    "saga",
    "scale_by_saga",
    "ScaleBySAGAState",
    "svrg",
    "scale_by_svrg",
    "ScaleBySVRGState",
    "sarah",
    "scale_by_sarah",
    "ScaleBySARAHState",
    # step-size schedules
    "SCHEDULES",
    "constant_schedule",
    "inverse_sqrt_schedule",
    "inverse_time_schedule",
    "make_schedule",
    "rate_and_schedule",
    "strongly_convex_schedule",
    # the rule registry
    "RULES",
    "LazyForm",
    "RuleContext",
    "RuleSpec",
    "get_rule",
    "register_rule",
    # running a rule on a problem (the driver: deepfound.optim.driver)
    "Method",
    "hyperparameters",
    "run",
    "run_on_indices",
    # engines: what runs each problem kind (deepfound.optim.engine)
    "Engine",
    "LogPoint",
    "engine_for",
    "register_engine",
    # two-player games (deepfound.optim.game) and their schemes
    "GameHyper",
    "GameMethod",
    "SCHEMES",
    "SchemeSpec",
    "register_scheme",
)
