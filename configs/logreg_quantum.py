"""The chapter's logistic-regression experiment (17.1) on the shipped quantum data (n=10000, p=46).

    python scripts/train.py --config=configs/logreg_quantum.py:sag --workdir=runs/quantum_sag

``:<method>`` is one of bgd, sgd, sga, sag, saga, svrg; the defaults are the numerical tour's:

* bgd:  constant rate 0.5, 5000 iterations. Reaches E - E* ~ 1e-4 (Figure 17.1).
* sgd:  tau0 / (1 + l / l0), tau0 = 0.05, l0 = 100, 100000 iterations (Figure 17.5): E - E* ~ 1e-3.
* sga:  tau0 / (1 + sqrt(l / l0)), tau0 = 0.05, l0 = 100, averaged iterate: E - E* ~ 1e-4.
* sag:  constant rate 0.002 on the mean of the stored gradients, 100000 iterations: E - E* ~ 1e-5.
* saga, svrg (beyond the chapter): constant rate 0.002, 100000 iterations.

Samples are drawn uniformly with replacement, every method starts at zero, E is logged every 50
iterations; E* = 0.5518 (float64 Newton solve). Each run takes seconds on a 2-core CPU.
"""

from deepfound.experiment import base_config

TOUR = {
    "bgd": dict(learning_rate=0.5, schedule="constant", num_steps=5_000),
    "sgd": dict(learning_rate=0.05, schedule="inverse_time", l0=100.0, num_steps=100_000),
    "sga": dict(learning_rate=0.05, schedule="inverse_sqrt", l0=100.0, num_steps=100_000),
    "sag": dict(learning_rate=0.002, schedule="constant", num_steps=100_000),
    "saga": dict(learning_rate=0.002, schedule="constant", num_steps=100_000),
    "svrg": dict(learning_rate=0.002, schedule="constant", num_steps=100_000),
}


def get_config(method: str = "sag"):
  if method not in TOUR:
    raise ValueError(f"unknown method {method!r} in the config argument; expected one of "
                     f"{', '.join(TOUR)}")
  config = base_config()
  config.data.name = "quantum"
  config.optim.name = method
  tour = dict(TOUR[method])
  config.num_steps = tour.pop("num_steps")
  config.log_every = 50
  config.optim.update(tour)
  return config
