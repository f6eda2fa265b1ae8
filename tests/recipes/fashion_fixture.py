"""A tiny Fashion-MNIST copy for recipe tests: a training file of <= 10,000 images is all training data, with an
empty validation split (:func:`hybridpgm.data.fashion_mnist.load_fashion_mnist_splits`)."""

import gzip
import struct

import numpy as np


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(">u1").tobytes())


def tiny_fashion(folder, n_train=20, n_test=6):
    """Write ``n_train`` training and ``n_test`` test images (random, seed 0) to ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.randint(0, 256, (n_train, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", rng.randint(0, 10, n_train))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (n_test, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.randint(0, 10, n_test))
    return folder
