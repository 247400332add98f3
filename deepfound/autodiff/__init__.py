"""Automatic differentiation as section 17.2 describes it: the computational graph, forward and
reverse mode, backpropagation on a linear chain, and checkpointing."""

from deepfound.autodiff.graph import Graph, Node, trace_graph
from deepfound.autodiff.modes import evaluate_graph, forward_gradient, reverse_gradient
from deepfound.autodiff.rules import SUPPORTED, UnsupportedPrimitiveError
