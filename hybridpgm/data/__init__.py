"""Data sets: bundled 8x8 digits (the default), Fashion-MNIST from IDX files,
statsmodels' bundled time series (:mod:`hybridpgm.data.timeseries`).

Nothing is downloaded at run time; a missing data set raises a
:class:`~hybridpgm.errors.DataNotFoundError` (a :class:`~hybridpgm.errors.DataError` and a
:class:`FileNotFoundError`) that says where it looked and how to get it.
"""

from hybridpgm.data.binarize import DynamicBinarized, binarize_static
from hybridpgm.data.fashion_mnist import find_fashion_mnist, read_idx
from hybridpgm.data.loader import data_loader
from hybridpgm.data.registry import DATASETS, load_dataset, training_data
from hybridpgm.data.splits import ImageDataset, Split
from hybridpgm.data.timeseries import SERIES, TimeSeries, load_series, make_windows, split_series, synthetic_series
from hybridpgm.data.validation import as_model_dtype, batch_origin, check_binary, check_features, check_finite

__all__ = [
    "DATASETS",
    "DynamicBinarized",
    "ImageDataset",
    "SERIES",
    "Split",
    "TimeSeries",
    "as_model_dtype",
    "batch_origin",
    "binarize_static",
    "check_binary",
    "check_features",
    "check_finite",
    "data_loader",
    "find_fashion_mnist",
    "load_dataset",
    "load_series",
    "make_windows",
    "read_idx",
    "split_series",
    "synthetic_series",
    "training_data",
]
