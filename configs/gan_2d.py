"""GANs on PacGAN's 2-D mixtures (section 17.4.3): the two-player game, each player with its own
rule.

    python scripts/train.py --config=configs/gan_2d.py:ring --workdir=runs/gan_ring
    python scripts/train.py --config=configs/gan_2d.py:grid,2 --workdir=runs/pacgan2_grid
    python scripts/train.py --config=configs/gan_2d.py:ring --workdir=runs/wgan_ring \
        --config.problem.loss=wgan_gp --config.optim.scheme=alternating \
        --config.optim.discriminator_steps=5

``:<data>[,<pack>]``: ring (8 modes, sd 0.01) or grid (25 modes, sd 0.05), 100,000 training
points; pack k > 1 is PacGAN-k (the discriminator sees k samples at once). PacGAN's setting:
a generator of 4 hidden layers of 400 relu units from a 2-dimensional Gaussian latent, a
discriminator of 3 hidden layers of 200 units (relu here; PacGAN's are maxout), both trained by
adam with rate 1e-4 and beta1 = 0.8, one discriminator step per generator step (alternating),
minibatches of 100 packs. problem.loss: js (non-saturating generator), wgan_clip, wgan_gp.
Logged: V on held-out data (objective), both losses and gradient norms, and the mode metrics
(modes captured, high-quality fraction, KL of the mode histogram from uniform) on 2,500 samples.
"""

from deepfound.experiment import base_config

DATA = ("ring", "grid")


def get_config(arg: str = "ring"):
  data, _, pack = arg.partition(",")
  if data not in DATA:
    raise ValueError(f"unknown data {data!r}; expected one of {', '.join(DATA)}")
  config = base_config()
  config.data.name = data
  config.data.num_samples = 100_000
  config.model.name = "gan"
  config.model.latent_size = 2
  config.model.hidden = (400, 400, 400, 400)
  config.model.discriminator_hidden = (200, 200, 200)
  config.problem.loss = "js"
  config.problem.pack = int(pack or 1)
  config.optim.scheme = "alternating"
  config.optim.discriminator_steps = 1
  config.optim.batch_size = 100
  for player in ("generator", "discriminator"):
    config.optim[player].name = "adam"
    config.optim[player].learning_rate = 1e-4
    config.optim[player].b1 = 0.8
    config.optim[player].b2 = 0.999
  config.num_steps = 20_000
  config.log_every = 1_000
  config.checkpoint_every = 5_000
  return config
