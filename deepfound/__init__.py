"""deepfound: JAX research code for the computational core of deep learning.

``deepfound.optim``: update rules (optax-compatible) and their registry, schedules, the
on-device driver; ``deepfound.problems``: the problem kinds (finite sums, expectations) and
their implementations; ``deepfound.data``: data sets behind a name registry;
``deepfound.models``: networks as Flax NNX modules; ``deepfound.autodiff``: the chapter's
forward and reverse modes; ``deepfound.experiment`` and ``deepfound.sweep``: configs to runs.

Importing registers the built-in rules and data sets. The one other side effect: two XLA CPU
flags are added to XLA_FLAGS before JAX starts (see ``_xla_flags.py``; neither changes a
result, and DEEPFOUND_KEEP_XLA_FLAGS=1 turns this off).
"""

from deepfound import _xla_flags

_xla_flags.apply()  # before any JAX computation; see _xla_flags.py

from deepfound import data, optim, problems  # noqa: E402, F401

__version__ = "0.1.0"
