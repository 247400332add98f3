"""deepfound: JAX research code for the computational core of deep learning.

``deepfound.optim`` holds the update rules (optax-compatible), schedules and the on-device driver;
``deepfound.problems`` the finite sums; ``deepfound.data`` the data sets.
"""

from deepfound import _xla_flags

_xla_flags.apply()  # before any JAX computation; see _xla_flags.py

from deepfound import data, optim, problems  # noqa: E402, F401

__version__ = "0.1.0"
