"""Data sets: the shipped quantum set, synthetic data, scikit-learn's bundled sets, LIBSVM files,
and an infinite stream of fresh samples (17.2)."""

from deepfound.data.errors import DataError
from deepfound.data.files import load_breast_cancer, load_libsvm
from deepfound.data.images import (
    load_digits,
    load_idx,
    load_npz,
    make_moons,
    make_spirals,
    read_idx,
    split_and_standardize,
)
from deepfound.data.quantum import load_quantum
from deepfound.data.synthetic import make_logistic_data

DATASETS = ("quantum", "synthetic", "breast_cancer", "libsvm", "stream")
NET_DATASETS = ("digits", "mnist_idx", "npz", "moons", "spirals")
