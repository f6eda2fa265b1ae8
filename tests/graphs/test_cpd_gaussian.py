"""LinearGaussian CPDs: densities, declaration checks and the dtype rules of their arguments."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def test_linear_gaussian_density_and_checks():
    lg = cpd.LinearGaussian(torch.tensor([1.0, -2.0]), torch.tensor([[0.5, 2.0], [1.0, 0.0]]),
                            torch.tensor([1.0, 3.0]), ["d", "u", "v"])
    BayesNet().add("d", cpd.Table([0.4, 0.6])).add("u", cpd.LinearGaussian(0.0)) \
        .add("v", cpd.LinearGaussian(1.0)).add("x", lg)
    vals = {"u": torch.tensor([0.3]), "v": torch.tensor([-1.0])}
    dens = lg.log_density(torch.tensor([0.7]), vals)
    assert dens.shape == (1, 2)
    mean = torch.tensor([1.0 + 0.5 * 0.3 - 2.0, -2.0 + 0.3])
    ref = torch.distributions.Normal(mean, torch.tensor([1.0, 3.0])).log_prob(torch.tensor(0.7))
    torch.testing.assert_close(dens[0], ref)
    with pytest.raises(ModelSpecError, match="parents"):
        cpd.LinearGaussian(torch.zeros(2), torch.zeros(2, 1), parents=["d"])
    with pytest.raises(ModelSpecError, match="positive"):
        cpd.LinearGaussian(0.0, scale=-1.0)
    bn = BayesNet().add("u", cpd.LinearGaussian(0.0)).add("d", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="node 'x'.*discrete parents first"):
        bn.add("x", cpd.LinearGaussian(torch.zeros(2), torch.zeros(2, 1), parents=["u", "d"]))


def test_a_float64_linear_gaussian_keeps_python_number_weight_and_scale_exact():
    """Found by an audit: ``scale=0.4`` and ``weight=[0.1]`` were read as float32 and then widened to the float64
    bias, so the stored values (and every density) were off by float32 rounding (~1e-8)."""
    import scipy.stats as st

    c = cpd.LinearGaussian(bias=torch.tensor(0.3, dtype=torch.float64), weight=[0.1], scale=0.4, parents=["z"])
    assert c.bias.dtype == c.weight.dtype == c.log_scale.dtype == torch.float64
    assert c.scale.item() == 0.4 and c.weight.item() == 0.1
    bn = BayesNet().add("z", cpd.LinearGaussian(bias=torch.tensor(0.0, dtype=torch.float64), scale=1.0)).add("y", c)
    z, y = torch.tensor([2.0], dtype=torch.float64), torch.tensor([-3.0], dtype=torch.float64)
    ref = st.norm(0, 1).logpdf(2.0) + st.norm(0.3 + 0.1 * 2.0, 0.4).logpdf(-3.0)
    assert abs(bn.log_prob({"z": z, "y": y}).item() - ref) < 1e-12


def test_a_numpy_float64_linear_gaussian_stays_float64_like_a_table():
    """Found by an audit: a NumPy float64 bias was read in the default dtype (float32), unlike :class:`Table`."""
    import numpy as np
    import scipy.stats as st

    t = cpd.Table(np.array([0.4, 0.6]), learnable=False)
    lg = cpd.LinearGaussian(bias=np.array([0.1, 2.0]), scale=np.array([0.3, 1.7]), parents=["a"])
    assert t.probs.dtype == lg.bias.dtype == lg.log_scale.dtype == torch.float64
    assert lg.bias.tolist() == [0.1, 2.0] and lg.scale.tolist() == [0.3, 1.7]
    bn = BayesNet().add("a", t).add("z", lg)
    lp = bn.log_prob({"a": torch.tensor([0, 1]), "z": torch.tensor([0.7, -0.2], dtype=torch.float64)})
    ref = torch.tensor([np.log(0.4) + st.norm(0.1, 0.3).logpdf(0.7), np.log(0.6) + st.norm(2.0, 1.7).logpdf(-0.2)])
    assert lp.dtype == torch.float64 and (lp - ref).abs().max().item() < 1e-12


def test_linear_gaussian_dtype_rules():
    """Integers and Python numbers take the dtype of the floating arrays given (the default one without any);
    floating arrays of different dtypes, bools and complex numbers are refused by name, never cast."""
    assert cpd.LinearGaussian(bias=[1, 2], parents=["d"]).bias.dtype == torch.get_default_dtype()
    c = cpd.LinearGaussian(weight=torch.tensor([0.5], dtype=torch.float64), scale=2, parents=["z"])
    assert c.bias.dtype == c.log_scale.dtype == torch.float64 and c.weight.item() == 0.5
    with pytest.raises(ModelSpecError, match=r"different dtypes .*'bias': torch.float32, 'scale': torch.float64"):
        cpd.LinearGaussian(bias=torch.zeros(()), scale=torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ModelSpecError, match="LinearGaussian bias must be real numbers, got dtype torch.bool"):
        cpd.LinearGaussian(bias=torch.tensor(True))
    with pytest.raises(ModelSpecError, match="LinearGaussian scale must be real numbers, got dtype torch.complex"):
        cpd.LinearGaussian(scale=1 + 1j)


def test_linear_gaussian_reads_numpy_scalars_like_numbers():
    """Review A: a NumPy scalar (np.std of the data) beside a float32 tensor was refused as a float64 array; a
    float64 NumPy array beside a float32 tensor too.  Scalars, numbers and lists take the CPD's dtype, which is
    the floating tensors', else the floating NumPy arrays', else the default one."""
    import numpy as np

    c = cpd.LinearGaussian(torch.zeros(2), scale=np.float64(0.5), parents=["a"])
    assert c.bias.dtype == c.log_scale.dtype == torch.float32
    c = cpd.LinearGaussian(torch.zeros(2), scale=np.array(0.5), parents=["a"])
    assert c.log_scale.dtype == torch.float32
    c = cpd.LinearGaussian(torch.zeros(2), weight=np.array([[0.1], [1.0]]), parents=["a", "z"])
    assert c.weight.dtype == torch.float32 and c.weight.flatten().tolist() == [np.float32(0.1), 1.0]
    c = cpd.LinearGaussian(np.zeros(2), scale=np.float64(0.5), parents=["a"])
    assert c.bias.dtype == c.log_scale.dtype == torch.float64 and c.scale.tolist() == [0.5, 0.5]
    c = cpd.LinearGaussian(np.zeros(2), scale=torch.tensor(0.5), parents=["a"])
    assert c.bias.dtype == torch.float32
    with pytest.raises(ModelSpecError, match=r"tensors of different dtypes .*'bias': torch.float32"):
        cpd.LinearGaussian(torch.zeros(2), scale=torch.tensor(0.5, dtype=torch.float64), parents=["a"])
    with pytest.raises(ModelSpecError, match=r"NumPy arrays of different dtypes"):
        cpd.LinearGaussian(np.zeros(2, dtype=np.float32), scale=np.full(2, 0.5), parents=["a"])
