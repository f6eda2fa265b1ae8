"""Summary reprs of the data containers (hybridpgm/data/splits.py, binarize.py)."""

import torch

from hybridpgm.data.binarize import DynamicBinarized
from hybridpgm.data.splits import ImageDataset, Split


def _split(n):
    return Split(torch.rand(n, 64), torch.zeros(n, dtype=torch.int64))


def test_image_dataset_repr_names_shapes_not_pixels():
    """The dataclass repr printed the tensors' values (every split of the dataset)."""
    data = ImageDataset("digits", (8, 8), _split(1000), _split(200), _split(300), binarize="dynamic")
    assert repr(data) == ("ImageDataset(name='digits', image_shape=(8, 8), "
                          "train=Split(x=[1000, 64] torch.float32, y=[1000] torch.int64), "
                          "valid=Split(x=[200, 64] torch.float32, y=[200] torch.int64), "
                          "test=Split(x=[300, 64] torch.float32, y=[300] torch.int64), binarize='dynamic')")


def test_dynamic_binarized_repr_names_shapes():
    assert repr(DynamicBinarized(torch.rand(5000, 64))) == "DynamicBinarized(x=[5000, 64] torch.float32)"
    assert repr(DynamicBinarized(torch.rand(3, 4), torch.arange(3))) == \
        "DynamicBinarized(x=[3, 4] torch.float32, y=[3] torch.int64)"
