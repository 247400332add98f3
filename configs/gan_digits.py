"""A GAN on scikit-learn's 8x8 digits (section 17.4.3), at a size the CPU runs in minutes.

    python scripts/train.py --config=configs/gan_digits.py --workdir=runs/gan_digits

Generator: 2 hidden layers of 256 relu units from a 16-dimensional Gaussian latent, sigmoid
intensities; discriminator: 2 hidden layers of 256 units. Non-saturating JS loss, one
discriminator step per generator step, adam (2e-4, beta1 = 0.5) for both players, minibatches
of 64. Logged besides V, the losses and gradient norms: a classifier trained on the real digits
(an MLP of our own; FID's Inception weights cannot be downloaded) labels 10,000 generated
images: classes_covered (of 10), class_kl (KL of their histogram from uniform) and
frechet_distance between real and generated images in its 64 penultimate features.
``configs/gan_mnist.py`` is the same on MNIST.
"""

from deepfound.experiment import base_config


def get_config():
  config = base_config()
  config.data.name = "digits"
  config.model.name = "gan"
  config.model.latent_size = 16
  config.model.hidden = (256, 256)
  config.model.discriminator_hidden = (256, 256)
  config.problem.loss = "js"
  config.optim.scheme = "alternating"
  config.optim.batch_size = 64
  for player in ("generator", "discriminator"):
    config.optim[player].name = "adam"
    config.optim[player].learning_rate = 2e-4
    config.optim[player].b1 = 0.5
    config.optim[player].b2 = 0.999
  config.num_steps = 10_000
  config.log_every = 500
  config.checkpoint_every = 5_000
  return config
