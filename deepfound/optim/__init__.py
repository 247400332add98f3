"""Update rules of section 17.1 as optax transformations, their registry, schedules, the driver.

Importing a rule's module registers it (``registry.register_rule``); the import order below is
the order in which ``--help`` and the configs list them (so the imports are not sorted).
"""
# ruff: noqa: I001

from deepfound.optim.memory import (
    LAYOUTS,
    check_index,
    checked_index,
    fill_memory,
    flushed_table,
    memory_bytes,
)
from deepfound.optim.registry import RULES, RuleContext, RuleSpec, get_rule, register_rule
from deepfound.optim.schedules import (
    SCHEDULES,
    constant_schedule,
    inverse_sqrt_schedule,
    inverse_time_schedule,
    make_schedule,
    strongly_convex_schedule,
)
from deepfound.optim.sgd import bgd, sgd
from deepfound.optim.sga import CesaroAverageState, averaged_params, cesaro_average, sga
from deepfound.optim.sag import ScaleBySAGState, sag, scale_by_sag
from deepfound.optim.saga import ScaleBySAGAState, saga, scale_by_saga
from deepfound.optim.svrg import ScaleBySVRGState, scale_by_svrg, svrg
from deepfound.optim.sarah import ScaleBySARAHState, sarah, scale_by_sarah
from deepfound.optim import baselines  # adam
