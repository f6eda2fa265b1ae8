"""Fashion-MNIST read from its IDX files (Xiao, Rasul & Vollgraf, 2017).

The four files ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the same
without ``.gz``) are read from the ``root`` argument when one is given (and only
there), else looked for in, in order: the ``HYBRIDPGM_DATA`` folder (and its
``fashion-mnist`` sub-folder), and Debian's ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``).
Nothing is ever downloaded.  The last 10,000 training images form the
validation split (50,000 / 10,000 / 10,000); a training file of at most 10,000
images is all training data, with an empty validation split.  Labels must be
unsigned bytes (IDX type 0x08) in ``0..9``.

Reference: H. Xiao, K. Rasul, R. Vollgraf, *Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms*, arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from hybridpgm.bounded_read import read_at_most
from hybridpgm.data.splits import Split
from hybridpgm.checks import positive_int
from hybridpgm.errors import DataError, DataNotFoundError

__all__ = ["DEBIAN_PATH", "MAX_IDX_BYTES", "find_fashion_mnist", "load_fashion_mnist_splits", "read_idx"]

DEBIAN_PATH = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
VALID = 10_000
NUM_CLASSES = 10
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


#: the default ``max_bytes`` of :func:`read_idx`: 2 GiB (Fashion-MNIST's training images are 47 MB)
MAX_IDX_BYTES = 2**31


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array.

    The header is read first, then exactly the data bytes its shape declares (and one more, to find trailing
    data), at most ``max_bytes``: a gzip file of a few kilobytes that inflates to gigabytes is refused after
    reading what its header declares, never inflated whole.

    :param path: the file (a str or ``os.PathLike``); a name ending in ``.gz`` is read as gzip.
    :param int max_bytes: the most data bytes read (of a ``.gz`` file, once uncompressed), 2 GiB by default
        (:data:`MAX_IDX_BYTES`).
    :raises DataNotFoundError: the file does not exist (a :class:`DataError` and a :class:`FileNotFoundError`).
    :raises DataError: the path is not a path, the file is truncated, not in IDX format, a damaged gzip file,
        holds more data than its header declares, or declares more than ``max_bytes`` (the message names the
        file).
    :raises ConfigError: ``max_bytes`` is not a positive integer.
    """
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise DataError(f"read_idx needs a file path (str or a PathLike of str), got {type(path).__name__} {path!r}")
    max_bytes = positive_int(max_bytes, "read_idx max_bytes")
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            head = read_at_most(handle, 4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
                raise DataError(f"{str(path)!r} is not an IDX file (bad magic number)")
            dims = read_at_most(handle, 4 * head[3])
            if len(dims) < 4 * head[3]:
                raise DataError(f"IDX file {str(path)!r} is truncated in its header")
            shape = struct.unpack(f">{head[3]}I", dims)
            dtype = np.dtype(_DTYPES[head[2]])
            expected = math.prod(shape) * dtype.itemsize  # Python ints: np.prod wraps past 2**63 (2**64 gave 0)
            raw = read_at_most(handle, min(expected, max_bytes) + 1)
    except FileNotFoundError as error:
        raise DataNotFoundError(f"IDX file {str(path)!r} does not exist") from error
    except (OSError, EOFError, zlib.error) as error:  # zlib.error: a damaged .gz (a bad block or checksum)
        raise DataError(f"cannot read IDX file {str(path)!r}: {error}") from error
    if expected > max_bytes and len(raw) > max_bytes:  # at expected == max_bytes, one byte more is trailing data
        raise DataError(f"IDX file {str(path)!r} declares {expected} data bytes (shape {shape}) and holds more than "
                        f"max_bytes={max_bytes}; pass a larger max_bytes to read_idx if the file is trusted")
    if len(raw) > expected:
        raise DataError(f"IDX file {str(path)!r} holds more than {expected} data bytes, its header says {expected}")
    if len(raw) != expected:
        raise DataError(f"IDX file {str(path)!r} holds {len(raw)} data bytes, its header says {expected}")
    try:
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    except ValueError as error:  # no data (a 0 dimension) beside dimensions whose product numpy cannot index
        raise DataError(f"IDX file {str(path)!r} declares the impossible shape {shape}: {error}") from error


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    folders = []
    if root is not None:
        folders.append(Path(root))
    if os.environ.get("HYBRIDPGM_DATA"):
        base = Path(os.environ["HYBRIDPGM_DATA"])
        folders += [base / "fashion-mnist", base]
    folders.append(DEBIAN_PATH)
    return folders


def find_fashion_mnist(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of the four IDX files: from ``root`` when it is given (only there: a folder the caller
    names is never silently replaced by another copy), else from the first of ``HYBRIDPGM_DATA``
    (and its ``fashion-mnist`` sub-folder) and Debian's folder that has them all.

    :param root: the folder holding the files (a str or ``os.PathLike``), or ``None`` (the default) to search.
    :returns: the files by key: ``"train_x"``, ``"train_y"``, ``"test_x"``, ``"test_y"``.
    :raises DataNotFoundError: (a :class:`DataError` and a :class:`FileNotFoundError`) ``root`` is given but
        does not exist or lacks a file (the message names it and the missing files), or without ``root`` no
        folder has them; the message lists where it looked and how to install the data.
    :raises DataError: ``root`` is given but is not a path (``str`` or ``os.PathLike``; the message names the
        value) or is a file, not a folder.
    """
    if root is not None and not (isinstance(root, (str, os.PathLike)) and isinstance(os.fspath(root), str)):
        # as read_idx does: a DataError naming the value, not pathlib's raw TypeError (bytes paths included)
        raise DataError(f"the Fashion-MNIST root must be a folder path (str or os.PathLike), got "
                        f"{type(root).__name__} {root!r}")
    folders = _candidates(root)
    if root is not None:  # a folder the caller named is used, or refused; never silently replaced
        folders = folders[:1]
    for folder in folders:
        found = {}
        for key, stem in FILES.items():
            for name in (stem + ".gz", stem):
                if (folder / name).is_file():
                    found[key] = folder / name
                    break
        if len(found) == len(FILES):
            return found
    if root is not None:
        folder = folders[0]
        error = DataNotFoundError  # a folder or a file that does not exist: a FileNotFoundError too
        if not folder.is_dir():
            problem = "is a file, not a folder" if folder.exists() else "does not exist"
            error = DataError if folder.exists() else DataNotFoundError
        else:
            missing = [s for s in FILES.values() if not any((folder / n).is_file() for n in (s + ".gz", s))]
            problem = f"lacks {', '.join(missing)} (.gz or not)"
        others = ", ".join(repr(str(f)) for f in _candidates(None))
        raise error(
            f"Fashion-MNIST root {str(folder)!r} {problem}; give the folder holding the four IDX files, or no "
            f"root to look in: {others}. On Debian/Ubuntu run `apt-get install dataset-fashion-mnist`")
    looked = ", ".join(repr(str(f)) for f in folders)
    raise DataNotFoundError(
        f"Fashion-MNIST IDX files not found; looked in: {looked}. On Debian/Ubuntu run "
        "`apt-get install dataset-fashion-mnist`, or put the four files "
        f"({', '.join(s + '.gz' for s in FILES.values())}) in a folder and pass root= or set HYBRIDPGM_DATA"
    )


def _images(path: Path) -> torch.Tensor:
    images = read_idx(path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or not len(images):
        raise DataError(f"{str(path)!r} holds an array of shape {images.shape}, expected (N, 28, 28) with N >= 1")
    if images.dtype != np.uint8:
        raise DataError(f"{str(path)!r} holds {images.dtype} values, expected unsigned bytes (IDX type 0x08) "
                        "as in Fashion-MNIST's image files")
    return torch.as_tensor(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def _labels(path: Path, n: int) -> torch.Tensor:
    labels = read_idx(path)
    if labels.shape != (n,):
        raise DataError(f"{str(path)!r} holds labels of shape {labels.shape}, expected ({n},)")
    if labels.dtype != np.uint8:  # floats would be truncated, wider integers are not Fashion-MNIST's format
        raise DataError(f"{str(path)!r} holds {labels.dtype} labels, expected unsigned bytes (IDX type 0x08) "
                        "as in Fashion-MNIST's label files")
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if len(bad):
        raise DataError(f"{str(path)!r} holds {len(bad)} label(s) outside the classes 0..{NUM_CLASSES - 1}, the "
                        f"first {int(labels[bad[0]])} at index {int(bad[0])}")
    return torch.as_tensor(labels.astype(np.int64))


def load_fashion_mnist_splits(root: str | os.PathLike | None = None) -> tuple[Split, Split, Split]:
    """``(train, valid, test)`` with ``x`` as ``N x 784`` in [0, 1] and ``y`` as ``N`` class indices.

    The last 10,000 training images form the validation split.  A training file of at most 10,000 images
    (a small user file, a test fixture) is all training data: its validation split is empty (zero rows).

    :raises DataError: the files are missing (see :func:`find_fashion_mnist`), unreadable, or hold
        arrays other than ``N x 28 x 28`` unsigned-byte images with ``N`` unsigned-byte labels in ``0..9``
        (the message names the file).
    """
    paths = find_fashion_mnist(root)
    train_x = _images(paths["train_x"])
    train_y = _labels(paths["train_y"], len(train_x))
    test_x = _images(paths["test_x"])
    test_y = _labels(paths["test_y"], len(test_x))
    cut = len(train_x) - VALID if len(train_x) > VALID else len(train_x)
    return (Split(train_x[:cut], train_y[:cut]), Split(train_x[cut:], train_y[cut:]), Split(test_x, test_y))
