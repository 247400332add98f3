"""Auto-encoders on scikit-learn's 8x8 digits (section 17.4.2), against PCA.

    python scripts/train.py --config=configs/autoencoder_digits.py:linear --workdir=runs/ae_linear
    python scripts/train.py --config=configs/autoencoder_digits.py:mlp --config.model.code_size=8 \
        --workdir=runs/ae_mlp

``:linear`` is x -> D(E x) with affine maps (model.hidden = ()): its optimum spans the principal
subspace (Baldi and Hornik 1989), so its reconstruction error must reach PCA's at the same code
size (logged side by side: reconstruction_mse and pca_mse on the training set, and their test
versions). ``:mlp`` has 2 tanh hidden layers (256, 128) each way and goes below PCA. Pixels are
intensities in [0, 1]; the error is the mean over pixels and images.
"""

from deepfound.experiment import base_config

MODELS = dict(linear=dict(hidden=(), lr=3e-3, steps=20_000), mlp=dict(hidden=(256, 128), lr=1e-3,
                                                                       steps=20_000))


def get_config(kind: str = "linear"):
  if kind not in MODELS:
    raise ValueError(f"unknown auto-encoder {kind!r}; expected one of {', '.join(MODELS)}")
  settings = MODELS[kind]
  config = base_config()
  config.data.name = "digits"
  config.model.name = "autoencoder"
  config.model.hidden = settings["hidden"]
  config.model.activation = "tanh"
  config.model.code_size = 8
  config.problem.loss = "squared"
  config.optim.name = "adam"
  config.optim.learning_rate = settings["lr"]
  config.optim.batch_size = 64
  config.num_steps = settings["steps"]
  config.log_every = 1_000
  config.checkpoint_every = 10_000
  return config
