"""Flow matching on scikit-learn's 8x8 digits, at a size the CPU trains in minutes.

    python scripts/train.py --config=configs/flow_matching_digits.py --workdir=runs/fm_digits

The intensities k/16 are dequantized, (k + u)/17 with u ~ U[0, 1) drawn once, so the data have a
density; the velocity is an MLP of 3 x 512 silu units on the 64 pixels, t and 12 Fourier features
of t, trained by adam on minibatches of 128 with the independent coupling (``:ot`` for the exact
minibatch OT coupling). 1,348 training and 449 test images.

Logged: the regression loss on test images. At the end: test_nll (nats per image) and
test_bits_per_dim from the ODE likelihood (Hutchinson's trace estimator, one probe per image),
and on 10,000 images drawn by the adaptive ODE solver the classifier metrics of the GANs
(classes_covered, class_kl, frechet_distance in the features of a classifier trained on the real
digits).
"""

from deepfound.experiment import base_config
from deepfound.models.flow_matching import COUPLINGS


def get_config(coupling: str = "independent"):
  if coupling not in COUPLINGS:
    raise ValueError(f"unknown coupling {coupling!r}; expected one of {', '.join(COUPLINGS)}")
  config = base_config()
  config.data.name = "digits"
  config.model.name = "flow_matching"
  config.model.hidden = (512, 512, 512)
  config.model.activation = "silu"
  config.problem.loss = "squared"
  config.problem.coupling = coupling
  config.problem.dequantize_levels = 16
  config.problem.nll_test_samples = 449
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.schedule = "inverse_time"
  config.optim.l0 = 2_000.0
  config.optim.batch_size = 128
  config.optim.ema = 0.999  # report a moving average of the weights, as flow matching trains
  config.num_steps = 10_000
  config.log_every = 1_000
  config.checkpoint_every = 5_000
  return config
