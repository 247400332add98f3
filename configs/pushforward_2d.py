"""A push-forward generator h_theta # N(0, I) fitted to 2-D data by a minibatch Sinkhorn
divergence or MMD (section 17.4.1, "minimum Kantorovich estimators").

    python scripts/train.py --config=configs/pushforward_2d.py:ring --workdir=runs/push_ring
    python scripts/train.py --config=configs/pushforward_2d.py:grid --config.problem.loss=mmd \
        --workdir=runs/push_grid_mmd

``:<data>`` is ring, grid or moons. The generator is an MLP from a 2-dimensional Gaussian latent
(3 hidden layers of 128 relu units); each step draws 256 latents and 256 data points and takes
the gradient of D(h_theta(z), x) with adam. The latent dimension equals the data's here, but the
model has no tractable density: only a loss between samples can fit it. Logged: the divergence
between 1,000 generated and 1,000 test points (objective), and on ring and grid the mode metrics
on 2,500 samples.
"""

from deepfound.experiment import base_config

DATA = dict(ring=dict(epsilon=1e-3, bandwidth=0.05), grid=dict(epsilon=1e-2, bandwidth=0.2),
            moons=dict(epsilon=1e-2, bandwidth=0.2))


def get_config(data: str = "ring"):
  if data not in DATA:
    raise ValueError(f"unknown data {data!r}; expected one of {', '.join(DATA)}")
  config = base_config()
  config.data.name = data
  config.data.num_samples = 100_000
  config.model.name = "pushforward"
  config.model.latent_size = 2
  config.model.hidden = (128, 128, 128)
  config.problem.loss = "sinkhorn"
  config.problem.update(DATA[data])
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 256
  config.num_steps = 10_000
  config.log_every = 500
  config.checkpoint_every = 5_000
  return config
