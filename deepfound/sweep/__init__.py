"""Sweeps: many runs of one experiment as one vmapped, sharded program per program shape."""

from deepfound.sweep.spec import GAME_VMAPPED_KEYS, VMAPPED_KEYS, SpecError, expand, parse
