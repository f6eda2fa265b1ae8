import math

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.gp import ArcCosineKernel


def _relu_network_outputs(x, depth, width, sw, sb, num_nets, num_out, generator):
    """Outputs ``num_nets * num_out x n`` of random ReLU networks with
    W ~ N(0, sw / fan_in), b ~ N(0, sb); output units are independent given
    the last hidden layer, so each network contributes ``num_out`` draws."""
    n, d = x.shape
    h = x.expand(num_nets, n, d)
    fan_in = d
    for _ in range(depth):
        w = torch.randn(num_nets, fan_in, width, generator=generator, dtype=x.dtype) * math.sqrt(sw / fan_in)
        b = torch.randn(num_nets, 1, width, generator=generator, dtype=x.dtype) * math.sqrt(sb)
        h = torch.relu(h @ w + b)
        fan_in = width
    w = torch.randn(num_nets, fan_in, num_out, generator=generator, dtype=x.dtype) * math.sqrt(sw / fan_in)
    b = torch.randn(num_nets, 1, num_out, generator=generator, dtype=x.dtype) * math.sqrt(sb)
    f = h @ w + b  # nets x n x out
    return f.transpose(1, 2).reshape(-1, n)


def _empirical_covariance(x, depth, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = _relu_network_outputs(x, depth, width=512, sw=2.0, sb=0.1, num_nets=32, num_out=256, generator=g)
    return f.T @ f / f.shape[0]  # the prior mean is zero


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_wide_relu_network_covariance_approaches_arc_cosine_kernel(depth):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x[1] = -x[0]  # an anti-correlated pair (theta near pi)
    x[2] = 2 * x[0]  # a colinear pair at another norm (theta = 0)
    empirical = _empirical_covariance(x, depth)
    kernel = ArcCosineKernel(depth, weight_variance=2.0, bias_variance=0.1).double()
    with torch.no_grad():
        exact = kernel(x).to_dense()
    scale = exact.diagonal().max()
    assert (empirical - exact).abs().max() / scale < 0.05
    # the check discriminates: the kernel of another depth is further off
    with torch.no_grad():
        other = ArcCosineKernel(depth + 2, weight_variance=2.0, bias_variance=0.1).double()(x).to_dense()
    assert (empirical - other).abs().max() / scale > 0.1


def test_zero_layers_is_the_linear_kernel():
    x = torch.randn(5, 3, dtype=torch.float64)
    k = ArcCosineKernel(0, weight_variance=1.5, bias_variance=0.2).double()
    with torch.no_grad():
        assert torch.allclose(k(x).to_dense(), 0.2 + 1.5 * x @ x.T / 3)


def test_one_layer_matches_cho_saul_closed_form():
    # Cho & Saul's degree-1 arc-cosine kernel, for sb = 0: sw/(2 pi) |x||y| J1(theta) with |.| in K0 scale
    x = torch.randn(4, 3, dtype=torch.float64)
    k = ArcCosineKernel(1, weight_variance=1.0, bias_variance=1e-12).double()
    with torch.no_grad():
        got = k(x).to_dense()
    norms = x.norm(dim=-1) / math.sqrt(3)
    cos = (x @ x.T / 3 / (norms[:, None] * norms[None, :])).clamp(-1, 1)
    theta = torch.acos(cos)
    expected = norms[:, None] * norms[None, :] / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * cos)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("depth", [0, 2])
def test_diag_and_batch_agree_with_full_matrix(depth):
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    k = ArcCosineKernel(depth).double()
    with torch.no_grad():
        full = k(x).to_dense()
        diag = k(x, diag=True)
        assert full.shape == (2, 5, 5)
        assert torch.allclose(diag, full.diagonal(dim1=-2, dim2=-1))
        y = torch.randn(2, 4, 3, dtype=torch.float64)
        cross = k(x, y).to_dense()
        assert torch.allclose(cross[1], k(x[1], y[1]).to_dense())


def test_gradients_are_finite_on_the_diagonal():
    x = torch.randn(5, 2, dtype=torch.float64)
    k = ArcCosineKernel(3).double()
    k(x).to_dense().sum().backward()
    assert torch.isfinite(k.raw_weight_variance.grad).all() and torch.isfinite(k.raw_bias_variance.grad).all()


def test_bad_configuration_raises():
    with pytest.raises(ModelSpecError, match="num_layers"):
        ArcCosineKernel(-1)
    with pytest.raises(ModelSpecError, match="positive"):
        ArcCosineKernel(1, weight_variance=0.0)
    with pytest.raises(ModelSpecError, match="dimension"):
        ArcCosineKernel(1).forward(torch.randn(3, 2), torch.randn(3, 4))


def test_a_deep_kernel_gp_with_the_arc_cosine_kernel_saves_and_loads(tmp_path):
    """Before, hybridpgm.save refused it: 'class hybridpgm.gp.kernels.ArcCosineKernel is not serializable'."""
    import hybridpgm
    from hybridpgm.gp import DeepKernelGP

    torch.manual_seed(0)
    x = torch.randn(12, 3)
    gp = DeepKernelGP(x, torch.randn(12), torch.nn.Sequential(torch.nn.Linear(3, 2)),
                      kernel=ArcCosineKernel(num_layers=3, weight_variance=1.5, bias_variance=0.2))
    optim = torch.optim.Adam(gp.parameters(), lr=0.05)
    for _ in range(3):
        optim.zero_grad()
        (-gp.marginal_log_likelihood()).backward()
        optim.step()
    gp.eval()
    loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    kernel = loaded.gp.covar_module
    assert type(kernel) is ArcCosineKernel and kernel.num_layers == 3
    assert torch.equal(kernel.weight_variance, gp.gp.covar_module.weight_variance)
    for name, value in gp.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    xt = torch.randn(4, 3)
    with torch.no_grad():
        expected, got = gp.predict(xt), loaded.predict(xt)
    assert torch.equal(got.mean, expected.mean) and torch.equal(got.variance, expected.variance)


def test_a_batch_shape_given_as_a_list_is_a_torch_size():
    """A model file gives the kernel's batch_shape back as a list."""
    kernel = ArcCosineKernel(batch_shape=[2])
    assert kernel.batch_shape == torch.Size([2]) and isinstance(kernel.batch_shape, torch.Size)
    assert kernel(torch.randn(2, 4, 3)).to_dense().shape == (2, 4, 4)


@pytest.mark.filterwarnings("ignore:The last_dim_is_batch argument is deprecated:DeprecationWarning")
@pytest.mark.parametrize("batch_shape", [(), (2,)])
def test_last_dim_is_batch_treats_each_feature_as_a_batch_of_1d_inputs(batch_shape):
    """Before, last_dim_is_batch was ignored: a diag of the wrong shape, a raw GPyTorch error for the matrix."""
    import gpytorch

    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(*batch_shape, 5, 3, generator=g, dtype=torch.float64)
    x2 = torch.randn(*batch_shape, 4, 3, generator=g, dtype=torch.float64)
    k = ArcCosineKernel(2, weight_variance=1.5, bias_variance=0.2, batch_shape=torch.Size(batch_shape)).double()
    rbf = gpytorch.kernels.RBFKernel(batch_shape=torch.Size(batch_shape)).double()
    with torch.no_grad():
        full = k(x1, x2, last_dim_is_batch=True).to_dense()
        diag = k(x1, diag=True, last_dim_is_batch=True)
        assert full.shape == rbf(x1, x2, last_dim_is_batch=True).to_dense().shape == (*batch_shape, 3, 5, 4)
        assert diag.shape == rbf(x1, diag=True, last_dim_is_batch=True).shape == (*batch_shape, 3, 5)
        for j in range(3):
            one = k(x1[..., j:j + 1], x2[..., j:j + 1]).to_dense()
            assert torch.allclose(full[..., j, :, :], one)
            assert torch.allclose(diag[..., j, :], k(x1[..., j:j + 1], diag=True))


@pytest.mark.parametrize("batch_shape,shape", [((), (2,)), ((3,), (2,)), ((2,), (3, 1, 1))])
def test_a_variance_tensor_that_does_not_fit_batch_shape_is_a_model_spec_error(batch_shape, shape):
    """Before, GPyTorch's initialize raised a raw RuntimeError ("shape '[3, 1, 1]' is invalid ...")."""
    value = torch.ones(shape)
    with pytest.raises(ModelSpecError, match=r"ArcCosineKernel weight_variance of shape .* does not fit the "
                                             r"kernel's batch_shape"):
        ArcCosineKernel(1, weight_variance=value, batch_shape=torch.Size(batch_shape))
    k = ArcCosineKernel(1, batch_shape=torch.Size(batch_shape))
    with pytest.raises(ModelSpecError, match=r"ArcCosineKernel bias_variance of shape"):
        k.bias_variance = value
    if batch_shape == (2,):  # what fits: a batch_shape tensor or the parameter's own shape
        k.weight_variance = torch.tensor([1.0, 5.0])
        assert torch.allclose(k.weight_variance.flatten(), torch.tensor([1.0, 5.0]))
