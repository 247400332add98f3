"""deepfound: JAX research code for the computational core of deep learning.

``deepfound.optim`` holds the update rules (optax-compatible), schedules and the on-device driver;
``deepfound.problems`` the finite sums; ``deepfound.data`` the data sets.
"""

from deepfound import data, optim, problems  # noqa: F401

__version__ = "0.1.0"
