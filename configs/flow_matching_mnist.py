"""Flow matching on MNIST (for an accelerator): configs/flow_matching_digits.py at 28x28.

    python scripts/fetch_mnist.py && \
    python scripts/train.py --config=configs/flow_matching_mnist.py --workdir=runs/fm_mnist

Intensities k/256 (the pickle's floats), dequantized to (k + u)/257 (problem.dequantize_levels);
the velocity is an MLP of 3 x 1024 silu units on the 784 pixels and the time features, adam
(1e-3 decaying as 1/(1 + t/10,000)) on minibatches of 256, 50,000 steps (8.5 s on one H200). At
the end: bits/dim by the ODE likelihood (Hutchinson's estimator) on 2,000 test images, and the
classifier metrics of 10,000 generated images.
"""

from configs import flow_matching_digits


def get_config(coupling: str = "independent"):
  config = flow_matching_digits.get_config(coupling)
  config.data.name = "mnist"
  config.model.hidden = (1024, 1024, 1024)
  config.problem.dequantize_levels = 256  # the pickle's intensities are k/256
  config.problem.nll_test_samples = 2_000
  config.optim.l0 = 10_000.0
  config.optim.batch_size = 256
  config.num_steps = 50_000
  config.log_every = 5_000
  config.checkpoint_every = 10_000
  return config
