"""deepfound: JAX research code for the computational core of deep learning.

``deepfound.optim``: update rules (optax-compatible) and their registry, schedules, the
on-device driver; ``deepfound.problems``: the problem kinds (finite sums, expectations) and
their implementations; ``deepfound.data``: data sets behind a name registry;
``deepfound.models``: networks as Flax NNX modules; ``deepfound.autodiff``: the chapter's
forward and reverse modes; ``deepfound.experiment`` and ``deepfound.sweep``: configs to runs.

Importing registers the built-in rules and data sets, and nothing else: no environment variable
or JAX setting changes. The scripts (``scripts/*.py``, through ``deepfound.cli``) add two XLA CPU
flags to XLA_FLAGS when a run starts (see ``_xla_flags.py``; neither changes a result).
"""

from deepfound import data, optim, problems  # noqa: F401

__version__ = "0.1.0"
