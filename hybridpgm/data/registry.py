"""``load_dataset``: every bundled or locally installed data set by name."""

from __future__ import annotations

import os
import torch
from torch.utils.data import Dataset

from hybridpgm.data.binarize import DynamicBinarized, binarize_static
from hybridpgm.data.digits import load_digits_splits
from hybridpgm.data.fashion_mnist import load_fashion_mnist_splits
from hybridpgm.data.splits import ImageDataset, Split
from hybridpgm.data.validation import check_finite
from hybridpgm.checks import flag, seed_of
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.keyword_alias import keyword_only_soon

__all__ = ["DATASETS", "load_dataset", "training_data"]

#: name -> (image shape, one-line description)
DATASETS: dict[str, tuple[tuple[int, int], str]] = {
    "digits": ((8, 8), "scikit-learn's bundled 8x8 digits, 1,797 images (embedded default)"),
    "fashion-mnist": ((28, 28), "Fashion-MNIST 28x28, 70,000 images (apt-get install dataset-fashion-mnist)"),
}
BINARIZE = (None, "static", "dynamic")
#: the data sets of :data:`DATASETS` read from a folder (``root=``, the command's ``--data-root``)
READ_FROM_DISK = ("fashion-mnist",)


def load_dataset(name: str = "digits", *, binarize: str | None = None, root: str | os.PathLike | None = None,
                 seed: int = 0) -> ImageDataset:
    """Load a data set with train/validation/test splits.

    :param name: a key of :data:`DATASETS`.
    :param binarize: ``None`` (grey levels in [0, 1]), ``"static"`` (every
        split drawn once with ``seed``) or ``"dynamic"`` (the training split is
        redrawn at every read through :func:`training_data`; validation and
        test are drawn once).
    :param root: folder holding the files, for data sets read from disk.
    :param int seed: seeds the static binarization (an integer).
    :returns: the splits as CPU tensors, whatever torch's default device (:func:`torch.set_default_device`):
        a data set is host data, which :func:`hybridpgm.fit` moves to its device batch by batch (on a ``"meta"``
        default device it would hold no values at all).  The images ``x`` are float32, or float64 under a float64
        default dtype (:func:`image_dtype`: the float32 values widened exactly); the labels ``y`` int64.
    :raises DataError: unknown name (the message lists the known ones), an unknown ``binarize``, or
        the files are missing (a :class:`~hybridpgm.errors.DataNotFoundError`, also a
        :class:`FileNotFoundError`; the message says where it looked and how to get them).
    :raises ConfigError: ``seed`` is not an integer (``bool`` and floats refused) or is outside
        ``[-2**63, 2**64 - 3]`` (torch's seed range, less the two seeds the validation and test splits
        take), or ``root`` is given for a bundled data set (``"digits"``), which reads no folder.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    if not (binarize is None or isinstance(binarize, str)) or binarize not in BINARIZE:
        raise DataError(f"binarize must be one of {BINARIZE}, got {binarize!r}")
    seed = seed_of(seed, "load_dataset seed", draws=3)  # the validation and test splits take seed + 1, seed + 2
    if root is not None and name not in READ_FROM_DISK:
        raise ConfigError(f"root={str(root)!r} was given, but {name!r} is bundled with scikit-learn and read from "
                          "no folder; drop root (--data-root), or pick a data set read from disk (fashion-mnist)")
    with torch.device("cpu"):  # host data, whatever torch's default device (set_default_device: "meta", "cuda")
        splits = load_digits_splits() if name == "digits" else load_fashion_mnist_splits(root)
        for split_name, split in zip(("train", "valid", "test"), splits):
            check_finite(split.x, f"{name} {split_name} split")
        train, valid, test = splits
        if binarize is not None:
            if binarize == "static":
                train = Split(binarize_static(train.x, seed), train.y)
            valid = Split(binarize_static(valid.x, seed + 1), valid.y)
            test = Split(binarize_static(test.x, seed + 2), test.y)
    dtype = image_dtype()
    train, valid, test = (Split(split.x.to(dtype), split.y) for split in (train, valid, test))  # no copy: float32
    return ImageDataset(name, DATASETS[name][0], train, valid, test, binarize)


def image_dtype() -> torch.dtype:
    """The dtype of :func:`load_dataset`'s images: the wider of float32 and torch's default dtype (float64 under
    ``torch.set_default_dtype(torch.float64)``, float32 under the default or a 16-bit default).

    The images are read and binarized in float32 and then widened, which is exact: the same values and the same
    seeded binarization under every default, in the dtype the models built under that default compute in.  A
    16-bit default keeps float32 (Fashion-MNIST's grey levels ``k / 255`` would round)."""
    return torch.promote_types(torch.float32, torch.get_default_dtype())


@keyword_only_soon("labels")
def training_data(dataset: ImageDataset, *, labels: bool = False) -> torch.Tensor | tuple | Dataset:
    """What to hand :func:`hybridpgm.fit`: the training images (with labels if
    ``labels``), redrawn at every read when the data set is binarized dynamically.

    :param dataset: a data set from :func:`load_dataset`.
    :param bool labels: also return the labels (``True`` or ``False``; default ``False``).
    :raises DataError: ``dataset`` is not an :class:`ImageDataset` (from :func:`load_dataset`).
    :raises ConfigError: ``labels`` is not a ``bool``."""
    labels = flag(labels, "training_data labels")
    if not isinstance(dataset, ImageDataset):
        raise DataError(f"training_data needs an ImageDataset from load_dataset(), got {type(dataset).__name__}")
    train = dataset.train
    if dataset.binarize == "dynamic":
        return DynamicBinarized(train.x, train.y if labels else None)
    return (train.x, train.y) if labels else train.x

