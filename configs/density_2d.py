"""Density fitting by maximum likelihood on 2-D data (section 17.4.1).

    python scripts/train.py --config=configs/density_2d.py:ring --workdir=runs/density_ring
    python scripts/train.py --config=configs/density_2d.py:grid --config.model.name=gmm \
        --workdir=runs/gmm_grid

``:<data>`` is ring (PacGAN's 8 Gaussians of sd 0.01 on the unit circle), grid (25 Gaussians of sd
0.05 at {-4,-2,0,2,4}^2) or moons; 100,000 training points and a held-out test set. The model is
``model.name=flow`` (RealNVP, 8 affine couplings of 2 x 64 relu units, by default) or ``gmm``
(as many components as the mixture has modes). E_i = -log rho_theta(x_i): any registered rule
runs on it, e.g. --config.optim.name=sag (one gradient per sample and parameter in memory).
Logged: test_nll, and on ring and grid kl_gap (test NLL minus the mixture's entropy), the mode
metrics on 2,500 samples (modes_captured, high_quality_fraction, mode_kl). See the README's
table for what each model reaches.
"""

from deepfound.experiment import base_config

COMPONENTS = dict(ring=8, grid=25, moons=8)


def get_config(data: str = "ring"):
  if data not in COMPONENTS:
    raise ValueError(f"unknown data {data!r}; expected one of {', '.join(COMPONENTS)}")
  config = base_config()
  config.data.name = data
  config.data.num_samples = 100_000
  config.model.name = "flow"
  config.model.num_layers = 8
  config.model.hidden = (64, 64)
  config.model.num_components = COMPONENTS[data]
  config.problem.loss = "nll"
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 256
  config.num_steps = 20_000
  config.log_every = 1_000
  config.checkpoint_every = 5_000
  return config
