"""A small CNN (two 3x3 convolutions, 16 and 32 channels, 2x2 average pooling, dense) on the bundled
digits (8x8, 10 classes), section 17.3.3.

    python scripts/train.py --config=configs/cnn_digits.py:adam --workdir=runs/cnn_digits

``:<method>`` as in mlp_digits.py (sgd, sga, sag, saga, svrg, adam); L2 1e-3. Expected test
accuracy after the default 4200 steps (100 epochs, seed 0, about 15 s on 2 CPU cores): adam 0.987,
sgd 0.980, sag 0.978.
"""

from configs import mlp_digits
from deepfound.experiment import base_config


def get_config(method: str = "adam"):
  config = mlp_digits.get_config(method)
  config.model.name = "cnn"
  config.model.hidden = base_config().model.hidden  # the mlp's widths, which a cnn does not read
  config.model.channels = (16, 32)
  config.problem.l2 = 1e-3
  return config
