"""A RealNVP flow fitted by maximum likelihood to scikit-learn's 8x8 digits (section 17.4.1).

    python scripts/train.py --config=configs/density_digits.py --workdir=runs/density_digits

Pixels are intensities k/16; each gets uniform noise once, (k + u)/17 (dequantization), so the
model is a density on [0, 1]^64. 1348 training and 449 test images; test_nll in nats per image.

Measured (2-core CPU, 2,000 steps): the training NLL falls from -31 to -96 nats, but the test NLL
explodes (to 1e5-1e8 nats): with 1,348 images in 64 dimensions the flow concentrates on the
training images, and a test image off that set is pulled through 8 inverse couplings that can each
scale by up to e^3, so its z, and its NLL, blow up. Smaller flows and L2 (model.hidden=(64,),
problem.l2=1e-2, 4 couplings) delay it but do not stop it; this config is not a working density
model of the digits yet (the 2-D configs are the measured ones).
"""

from deepfound.experiment import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.data.name = "digits"
  config.model.name = "flow"
  config.model.num_layers = 8
  config.model.hidden = (256, 256)
  config.problem.loss = "nll"
  config.problem.dequantize_levels = 16
  config.problem.l2 = 1e-5
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 64
  config.num_steps = 10_000
  config.log_every = 500
  config.checkpoint_every = 5_000
  return config
