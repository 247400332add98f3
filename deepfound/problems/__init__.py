"""Finite sums E(b) = (1/n) sum_i E_i(b) and expectations (17.1, 17.2)."""

from deepfound.problems.linear import (
    LOSSES,
    LinearFiniteSum,
    binary_targets,
    loss_derivative,
    loss_value,
    make_problem,
)
from deepfound.problems.net import NET_LOSSES, NetFiniteSum
from deepfound.problems.optimum import Optimum, solve_optimum
from deepfound.problems.sparse import SparseLinearFiniteSum, make_sparse_problem
from deepfound.problems.stream import LogisticStream, make_logistic_stream
