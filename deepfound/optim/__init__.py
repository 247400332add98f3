"""Update rules of section 17.1 as optax transformations, their registry, schedules, the driver.

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
    strongly_convex_schedule,
)
from deepfound.optim import rules  # registers the built-in rules, in the order --help lists them
from deepfound.optim.rules.sgd import bgd, sgd
from deepfound.optim.rules.sga import CesaroAverageState, averaged_params, cesaro_average, sga
from deepfound.optim.rules.sag import ScaleBySAGState, sag, scale_by_sag
from deepfound.optim.rules.saga import ScaleBySAGAState, saga, scale_by_saga
from deepfound.optim.rules.svrg import ScaleBySVRGState, scale_by_svrg, svrg
from deepfound.optim.rules.sarah import ScaleBySARAHState, sarah, scale_by_sarah
from deepfound.optim.driver import Method, hyperparameters, run, run_on_indices

__all__ = (
    # update rules, their states and direction transformations
    "bgd",
    "sgd",
    "sga",
    "cesaro_average",
    "averaged_params",
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
    "strongly_convex_schedule",
    # the rule registry
    "RULES",
    "LazyForm",
    "RuleContext",
    "RuleSpec",
    "get_rule",
    "register_rule",
    # running a rule on a problem
    "Method",
    "hyperparameters",
    "run",
    "run_on_indices",
)
