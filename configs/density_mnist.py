"""A neural spline flow on MNIST (section 17.4.1), for an accelerator.

    python scripts/fetch_mnist.py        # once, with network access
    python scripts/train.py --config=configs/density_mnist.py --workdir=runs/density_mnist

The pixels are intensities k/256, k in 0..255 (the pickle's floats), so problem.dequantize_levels
is 256: every step dequantizes its minibatch afresh, (k + u)/257, and test_bits_per_dim counts
257 levels (log2 257 = 8.006 bits a pixel for a uniform model; the level 256 never occurs, so
the figure is at most 0.006 bits above that of a 256-level model). 6,000 of the 60,000 training
images are held out for validation; the run reports the iterate of the best validation NLL.

8 spline couplings on halves of the 784 pixels (4 bins each, 2 x 512 relu units), LU-factored
linear layers (784 x 784) between them, a standard normal base; adam 1e-3, batch 256, weight
decay 1e-4, 30,000 steps (128 epochs). Not run yet: no accelerator was lent when it was written
(the flow literature's RealNVP and Glow reach about 1.0-1.1 bits/dim on MNIST, with far larger
multi-scale convolutional models).
"""

from deepfound.experiment import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.data.name = "mnist"
  config.model.name = "flow"
  config.model.num_layers = 8
  config.model.hidden = (512, 512)
  config.model.num_bins = 4
  config.problem.loss = "nll"
  config.problem.dequantize_levels = 256
  config.problem.validation_fraction = 0.1
  config.problem.l2 = 1e-4
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 256
  config.num_steps = 30_000
  config.log_every = 1_000
  config.checkpoint_every = 5_000
  return config
