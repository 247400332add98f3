"""The VAE on scikit-learn's 8x8 digits: the MNIST config at a size CI runs in seconds.

    python scripts/train.py --config=configs/vae_digits.py --workdir=runs/vae_digits

Same model family as configs/vae_mnist.py (tanh MLPs, Bernoulli pixels, dynamic binarization of
the intensities k/16), with 64-128-128-latent layers; ``:2`` gives a 2-dimensional latent space
(its map of the test digits is one of the pictures). 1348 training and 449 test images.
"""

from configs import vae_mnist


def get_config(latent: str = "8"):
  config = vae_mnist.get_config()
  config.data.name = "digits"
  config.model.hidden = (128, 128)
  config.model.latent_size = int(latent)
  config.problem.eval_importance_samples = 1000
  config.problem.eval_test_samples = 449
  config.optim.batch_size = 64
  config.num_steps = 4_200  # 200 epochs of 21 steps
  config.log_every = 210
  config.checkpoint_every = 2_100
  return config
