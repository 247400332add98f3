"""Update rules of section 17.1 as optax transformations, their schedules and the driver."""

from deepfound.optim.memory import LAYOUTS, flushed_table, memory_bytes
from deepfound.optim.sag import ScaleBySAGState, sag, scale_by_sag
from deepfound.optim.saga import ScaleBySAGAState, saga, scale_by_saga
from deepfound.optim.schedules import (
    SCHEDULES,
    constant_schedule,
    inverse_sqrt_schedule,
    inverse_time_schedule,
    make_schedule,
    strongly_convex_schedule,
)
from deepfound.optim.sga import CesaroAverageState, averaged_params, cesaro_average, sga
from deepfound.optim.sgd import bgd, sgd
from deepfound.optim.svrg import ScaleBySVRGState, scale_by_svrg, svrg

METHODS = ("bgd", "sgd", "sga", "sag", "saga", "svrg")
