"""An MLP on scikit-learn's bundled digits (8x8, 10 classes), section 17.3.

    python scripts/train.py --config=configs/mlp_digits.py:sgd --workdir=runs/mlp_digits

``:<method>`` is sgd (minibatch 32, tau0 / (1 + l / l0)), sga, sag, saga, svrg (pytree gradient
memory: one gradient per sample and parameter, about 49 MB here), adam (the optax baseline) or
any other registered rule (constant rate 0.02, untuned).
1348 training and 449 test images, standardized; one hidden layer of 128 relu units, L2 1e-4.
Expected test accuracy after the default 4200 steps (100 epochs; seed 0, measured on a 2-core
CPU, a few seconds each): sgd 0.978, sga 0.978, sag 0.978, saga 0.980, svrg 0.980 (its snapshots
make 200 epochs of gradients), adam 0.982.
"""

from deepfound.experiment import base_config
from deepfound.optim import RULES

METHODS = {
    "sgd": dict(learning_rate=0.1, schedule="inverse_time", l0=2000.0),
    "sga": dict(learning_rate=0.1, schedule="inverse_sqrt", l0=2000.0),
    "sag": dict(learning_rate=0.05, schedule="constant"),
    "adam": dict(learning_rate=1e-3, schedule="constant"),
}
OTHERS = dict(learning_rate=0.02, schedule="constant")  # saga, svrg and the rest


def get_config(method: str = "sgd"):
  RULES.get(method)  # an unknown name fails here, with the registered ones listed
  config = base_config()
  config.data.name = "digits"
  config.model.name = "mlp"
  config.model.hidden = (128,)
  config.problem.loss = "cross_entropy"
  config.problem.l2 = 1e-4
  config.optim.name = method
  config.optim.batch_size = 32
  config.optim.update(METHODS.get(method, OTHERS))
  config.num_steps = 4200
  config.log_every = 42  # every epoch
  config.checkpoint_every = 1050
  return config
