"""An MLP on two moons (2-D points, 2 classes), section 17.3: the decision regions are a picture.

    python scripts/train.py --config=configs/mlp_moons.py:sgd --workdir=runs/mlp_moons

``:<method>`` as in mlp_digits.py; two hidden layers of 32 tanh units, 1000 points (750 to train).
Expected test accuracy after the default 3000 steps (seed 0): sgd 0.992, adam 0.996.
"""

from configs import mlp_digits


def get_config(method: str = "sgd"):
  config = mlp_digits.get_config(method)
  config.data.name = "moons"
  config.data.num_samples = 1000
  config.model.hidden = (32, 32)
  config.model.activation = "tanh"
  config.num_steps, config.log_every, config.checkpoint_every = 3000, 30, 1500
  return config
