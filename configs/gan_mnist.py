"""The GAN of ``configs/gan_digits.py`` on MNIST (after ``scripts/fetch_mnist.py``).

    python scripts/train.py --config=configs/gan_mnist.py --workdir=runs/gan_mnist

Generator 2 x 512 relu units from a 64-dimensional latent, discriminator 2 x 512; adam 2e-4,
beta1 = 0.5, minibatches of 64, 30,000 generator steps (about 32 epochs). Metrics as in the
digits config, from a classifier trained here on the 60,000 training images.
"""

from configs import gan_digits


def get_config():
  config = gan_digits.get_config()
  config.data.name = "mnist"
  config.model.latent_size = 64
  config.model.hidden = (512, 512)
  config.model.discriminator_hidden = (512, 512)
  config.num_steps = 30_000
  config.log_every = 1_000
  config.checkpoint_every = 10_000
  return config
