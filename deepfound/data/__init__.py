"""Data sets behind a name registry (``registry.py``): the shipped quantum set, synthetic data,
scikit-learn's bundled sets, LIBSVM files (kept as sparse CSR features), images (IDX, npz), 2-D
point sets, and an infinite stream of fresh samples (17.2). Importing a loader's module registers
its sets, in the order of the imports below (the order ``--help`` lists them)."""
# ruff: noqa: I001

from deepfound.data.errors import DataError
from deepfound.data.registry import (
    DATASETS,
    Dataset,
    DatasetSpec,
    binary_labels,
    check_columns,
    check_dataset,
    check_range,
    class_ids,
    density,
    get_dataset,
    is_sparse,
    register_dataset,
)
from deepfound.data.quantum import load_quantum
from deepfound.data.synthetic import make_logistic_data
from deepfound.data.files import load_breast_cancer, load_libsvm, load_sample_weights
from deepfound.data.images import (
    load_digits,
    load_idx,
    load_idx_directory,
    load_npz,
    make_moons,
    make_spirals,
    read_idx,
    split,
    split_and_standardize,
    standardize,
)
from deepfound.data import mixtures
from deepfound.data import mnist
