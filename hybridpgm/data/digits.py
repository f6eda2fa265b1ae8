"""scikit-learn's bundled 8x8 handwritten digits: the embedded default data set.

1,797 images with grey levels 0..16, scaled here to [0, 1].  There is no
official split; a fixed permutation (seed 0) gives 1,257 train, 180
validation and 360 test images, the same on every machine.
"""

from __future__ import annotations

import numpy as np
import torch

from hybridpgm.data.splits import Split

__all__ = ["load_digits_splits"]

TRAIN, VALID = 1257, 180


def load_digits_splits() -> tuple[Split, Split, Split]:
    """``(train, valid, test)`` of the 8x8 digits, ``x`` as ``N x 64`` in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.as_tensor(np.random.RandomState(0).permutation(len(x)))
    x, y = x[order], y[order]
    cut1, cut2 = TRAIN, TRAIN + VALID
    return Split(x[:cut1], y[:cut1]), Split(x[cut1:cut2], y[cut1:cut2]), Split(x[cut2:], y[cut2:])
