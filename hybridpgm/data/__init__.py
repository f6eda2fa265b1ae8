"""Data sets: bundled 8x8 digits (the default), Fashion-MNIST from IDX files.

Nothing is downloaded at run time; a missing data set raises a
:class:`~hybridpgm.errors.DataError` that says where it looked and how to get it.
"""

from hybridpgm.data.binarize import DynamicBinarized, binarize_static
from hybridpgm.data.fashion_mnist import find_fashion_mnist, read_idx
from hybridpgm.data.loader import data_loader
from hybridpgm.data.registry import DATASETS, load_dataset, training_data
from hybridpgm.data.splits import ImageDataset, Split
from hybridpgm.data.validation import check_binary, check_features, check_finite

__all__ = [
    "DATASETS",
    "DynamicBinarized",
    "ImageDataset",
    "Split",
    "binarize_static",
    "check_binary",
    "check_features",
    "check_finite",
    "data_loader",
    "find_fashion_mnist",
    "load_dataset",
    "read_idx",
    "training_data",
]
