"""Sweeps: many runs of one experiment as one vmapped, sharded program per program shape.

Importing the package registers the sweep programs of the built-in problem kinds
(``objectives.py``, ``games.py``)."""
# ruff: noqa: I001

from deepfound.sweep.spec import SpecError, expand, parse
from deepfound.sweep.common import PROGRAMS, SweepProgram, register_program
from deepfound.sweep import objectives
from deepfound.sweep import games
