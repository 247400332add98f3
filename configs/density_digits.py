"""A neural spline flow fitted by maximum likelihood to scikit-learn's 8x8 digits (section 17.4.1).

    python scripts/train.py --config=configs/density_digits.py --workdir=runs/density_digits

Pixels are intensities k/16, k in 0..16. Every step dequantizes its minibatch afresh, (k + u)/17
with u ~ U[0, 1) (as flows of images are trained), so the model is a density on [0, 1]^64 whose
integral over a pixel cell lower-bounds the probability of the discrete image. A fifth of the
1,348 training images is held out as a validation set (problem.validation_fraction); the run
logs valid_nll and reports the iterate of its best log point (summary.json: selected_step,
final_test_nll, final_test_bits_per_dim). The 449 test images are dequantized once (seeded).

6 spline couplings (8 bins, 2 x 64 relu units each, LU-factored linear layers between them), a
standard normal base, adam 1e-3, batch 64, weight decay problem.l2 = 0.1, 4,000 steps (about
half a minute on 2 CPU cores). Measured (scripts/bench_generative.py --cases=flow_digits, 10
seeds): see results/generative/bench.md. Without the weight decay the validation NLL is best
after about 750 steps and then worsens (the training NLL keeps falling: 1,078 images in 64
dimensions); a draw of the dequantization noise fixed once, as this config had before, lets the
flow memorize the training set and sends the test NLL to 1e5 nats.
"""

from deepfound.experiment import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.data.name = "digits"
  config.model.name = "flow"
  config.model.num_layers = 6
  config.model.hidden = (64, 64)
  config.model.num_bins = 8
  config.problem.loss = "nll"
  config.problem.dequantize_levels = 16
  config.problem.validation_fraction = 0.2
  config.problem.l2 = 0.1
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 64
  config.num_steps = 4_000
  config.log_every = 100
  config.checkpoint_every = 2_000
  return config
