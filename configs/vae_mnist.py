"""The VAE of the IWAE paper on MNIST (section 17.4.2; Burda, Grosse, Salakhutdinov 2016).

    python scripts/fetch_mnist.py        # once, with network access
    python scripts/train.py --config=configs/vae_mnist.py --workdir=runs/vae_mnist

784-200-200-50 tanh encoder to a diagonal Gaussian q(z|x), the mirrored decoder to Bernoulli
pixel logits, standard normal prior; dynamic binarization (each step draws binary pixels from
the intensities); ``problem.loss=elbo`` (k = 1, the VAE) or ``iwae`` (the k-sample bound,
problem.num_importance_samples). Adam (b1 0.9, b2 0.999), batch 100. Logged every epoch: the
objective (minus the bound on 10,000 training images) and test_elbo (1,000 test images); at the
end summary.json has test_log_likelihood, the k = 5000 importance-sampled estimate of log p(x) on
problem.eval_test_samples test images (500 by default on a CPU; 10,000 is the full set).
The default 60,000 steps are 100 epochs; see the README for what it reaches and how long it takes.
"""

from deepfound.experiment import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.data.name = "mnist"
  config.model.name = "vae"
  config.model.hidden = (200, 200)
  config.model.latent_size = 50
  config.problem.loss = "elbo"
  config.problem.eval_test_samples = 500
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 100
  config.num_steps = 60_000
  config.log_every = 600  # one epoch
  config.checkpoint_every = 6_000
  return config
