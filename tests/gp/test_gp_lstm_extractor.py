"""GPLSTM (hybridpgm/gp/gp_lstm.py) builds its own feature extractor: one passed is refused by name."""

import pytest
import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.gp import GPLSTM


def test_a_feature_extractor_given_to_gplstm_is_refused_pointing_to_deep_kernel_gp():
    """torch's 'DeepKernelGP.__init__() got multiple values for argument feature_extractor' TypeError before."""
    x, y = torch.randn(12, 5, 1), torch.randn(12)
    with pytest.raises(ModelSpecError, match=r"GPLSTM builds its own feature extractor \(an LSTMFeatures of "
                                             r"hidden_size, num_features and num_layers\), got feature_extractor="
                                             r"Flatten; for a network of your own use DeepKernelGP\(train_x, "
                                             r"train_y, feature_extractor\) instead"):
        GPLSTM(x, y, feature_extractor=nn.Flatten())
