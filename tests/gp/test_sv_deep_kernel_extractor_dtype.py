"""SV-DKL inputs are converted to the feature extractor's dtype, not the GP's (hybridpgm/gp/sv_deep_kernel.py
``features``, hybridpgm/gp/feature_gp.py ``extractor_input_dtype``).

Found by review C of 4b803b3: the dtype rule widened every floating input to the inducing points' dtype, so an
extractor computing in another dtype than the GP (a float64 or bfloat16 network that casts its features to the GP's
float32) was refused: float64 inputs as "converting would round", bfloat16 inputs converted to float32 and then
"mat1 and mat2" from the network, with a message asking for the bfloat16 inputs it had been given.  Both ran before
4b803b3."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.gp import SVDeepKernelGP


class _CastTo32(torch.nn.Module):
    """A network in ``dtype`` whose features the GP reads in float32."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.net = torch.nn.Linear(3, 2).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_inputs_in_the_extractors_own_dtype_are_taken(dtype):
    torch.manual_seed(0)
    net = _CastTo32(dtype)
    model = SVDeepKernelGP(net, num_features=2, num_data=5, inducing_points=torch.randn(4, 2))
    x = torch.randn(5, 3).to(dtype)
    f = model(x)
    assert f.mean.shape == (5,) and f.mean.dtype == torch.float32
    torch.testing.assert_close(f.mean, model.variational_strategy(model.scale_to_bounds(net(x))).mean)


def test_float32_inputs_widen_to_a_float64_extractor_and_identity_follows_the_gp():
    """Float32 inputs of a float64 extractor are widened to float64 (failed before: widened to the GP's float32,
    the network's "mat1 and mat2"); with the identity extractor (no parameters) the GP's dtype is the target, and
    float64 inputs of a float32 GP stay refused (a guard of 4b803b3's rule)."""
    torch.manual_seed(0)
    net = _CastTo32(torch.float64)
    model = SVDeepKernelGP(net, num_features=2, num_data=5, inducing_points=torch.randn(4, 2))
    x = torch.randn(5, 3)
    torch.testing.assert_close(model(x).mean, model(x.double()).mean)
    ident = SVDeepKernelGP(None, num_features=3, num_data=5, inducing_points=torch.randn(4, 3))
    with pytest.raises(DataError, match="converting would round"):
        ident(x.double())
    assert ident(torch.ones(5, 3, dtype=torch.bool)).mean.dtype == torch.float32
