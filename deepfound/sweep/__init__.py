"""Sweeps: many runs of one experiment as one vmapped, sharded program per program shape."""

from deepfound.sweep.spec import VMAPPED_KEYS, SpecError, expand, parse
