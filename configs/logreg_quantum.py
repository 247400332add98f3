"""The chapter's logistic-regression experiment (17.1) on the shipped quantum data (n=10000, p=46).

    python scripts/train.py --config=configs/logreg_quantum.py:sag --workdir=runs/quantum_sag

``:<method>`` is any registered update rule (``python scripts/train.py --help`` lists them);
the defaults are the numerical tour's:

* bgd:  constant rate 0.5, 5000 iterations (Figure 17.1).
* sgd:  tau0 / (1 + l / l0), tau0 = 0.05, l0 = 100, 100000 iterations (Figure 17.5).
* sga:  tau0 / (1 + sqrt(l / l0)), tau0 = 0.05, l0 = 100, averaged iterate, 100000 iterations.
* sag:  constant rate 0.002 on the mean of the stored gradients, 100000 iterations.
* any other rule, e.g. saga, svrg, sarah (beyond the chapter): constant rate 0.002, 100000
  iterations.

Samples are drawn uniformly with replacement, every method starts at zero, E is logged every 50
iterations. E* = 0.551805 (float64 Newton solve, gradient norm < 1e-12). Expected final E - E*
(float32, seed 0): bgd 2.8e-3, sgd 3.8e-3, sga 3.0e-3, sag 2.8e-3, saga 2.8e-3, svrg 2.8e-3,
sarah 2.8e-3 (30 epochs of gradients: a full pass per epoch of steps and two per step); the
unregularized problem is ill-conditioned, so with these step sizes no method gets far below the
level BGD reaches in 5000 iterations. Each run takes about a second on a 2-core CPU.
"""

from deepfound.experiment import base_config
from deepfound.optim import RULES

TOUR = {
    "bgd": dict(learning_rate=0.5, schedule="constant", num_steps=5_000),
    "sgd": dict(learning_rate=0.05, schedule="inverse_time", l0=100.0, num_steps=100_000),
    "sga": dict(learning_rate=0.05, schedule="inverse_sqrt", l0=100.0, num_steps=100_000),
}
OTHERS = dict(learning_rate=0.002, schedule="constant", num_steps=100_000)  # sag and the rest


def get_config(method: str = "sag"):
  RULES.get(method)  # an unknown name fails here, with the registered ones listed
  config = base_config()
  config.data.name = "quantum"
  config.optim.name = method
  tour = dict(TOUR.get(method, OTHERS))
  config.num_steps = tour.pop("num_steps")
  config.log_every = 50
  config.optim.update(tour)
  return config
