"""The GP families' test inputs follow the library's dtype rule (:mod:`hybridpgm.data.validation`): data of another
dtype are converted where that is exact (``bool``, integers in range, float32 into a float64 model), and refused
otherwise, as for every other family.  Before, ``DeepKernelGP``/``GPLSTM`` refused every other dtype and
``SVDeepKernelGP`` failed inside its feature extractor with torch's ``mat1 and mat2`` error."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.gp import GPLSTM, DeepKernelGP, SVDeepKernelGP

pytestmark = pytest.mark.filterwarnings("ignore::linear_operator.utils.warnings.NumericalWarning")


def _gen():
    return torch.Generator().manual_seed(0)


def _dkl(dtype):
    x = torch.randn(20, 3, generator=_gen(), dtype=dtype)
    torch.manual_seed(0)
    return DeepKernelGP(x, torch.sin(x[:, 0]), torch.nn.Linear(3, 2).to(dtype)).eval(), (4, 3)


def _sv(dtype):
    torch.manual_seed(0)
    return SVDeepKernelGP(torch.nn.Linear(3, 2).to(dtype), num_features=2, num_data=20,
                          inducing_points=torch.randn(6, 2, generator=_gen(), dtype=dtype)).eval(), (4, 3)


def _lstm(dtype):
    x = torch.randn(20, 5, 1, generator=_gen(), dtype=dtype)
    torch.manual_seed(0)
    return GPLSTM(x, x[:, -1, 0].sin(), hidden_size=4).to(dtype).eval(), (4, 5, 1)


MODELS = {"DeepKernelGP": _dkl, "SVDeepKernelGP": _sv, "GPLSTM": _lstm}


def _inputs(shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return {"float32": x, "bool": x > 0, "int64": (3 * x).round().long(), "float16": x.half()}[dtype]


# integer inputs go to a variational GP's extractor as given (an embedding's indices): tested below
WIDENED = [(name, data) for name in MODELS for data in ("float32", "bool", "int64", "float16")
           if (name, data) != ("SVDeepKernelGP", "int64")]


@pytest.mark.parametrize("name, data", WIDENED)
def test_a_float64_gp_answers_inputs_that_widen_exactly_as_their_float64_copy(name, data):
    model, shape = MODELS[name](torch.float64)
    x = _inputs(shape, data)
    want = model.predict(x.double())
    got = model.predict(x)
    assert got.mean.dtype == torch.float64 and got.variance.dtype == torch.float64
    assert torch.equal(got.mean, want.mean) and torch.equal(got.variance, want.variance)
    post, post_want = model.posterior(x), model.posterior(x.double())
    assert post.mean.dtype == torch.float64 and torch.equal(post.mean, post_want.mean)
    assert torch.equal(model(x).mean, post_want.mean)  # the eval-mode call too


@pytest.mark.parametrize("name", MODELS)
def test_a_float32_gp_still_refuses_float64_inputs_naming_the_rounding(name):
    model, shape = MODELS[name](torch.float32)
    x = _inputs(shape, "float32").double()
    for call in (model.predict, model.posterior, model):
        with pytest.raises(DataError, match="x has dtype torch.float64, the model computes in torch.float32: "
                                            "converting would round"):
            call(x)


@pytest.mark.parametrize("name", ["DeepKernelGP", "GPLSTM"])
def test_integers_a_float32_gp_does_not_hold_exactly_are_refused(name):
    model, shape = MODELS[name](torch.float32)
    x = torch.full(shape, 2**24 + 1, dtype=torch.int64)
    with pytest.raises(DataError, match=r"x has dtype torch.int64 with values in \[16777217, 16777217\], outside"):
        model.predict(x)


def test_a_variational_gp_passes_integer_inputs_to_its_extractor_as_given():
    sv = SVDeepKernelGP(torch.nn.Sequential(torch.nn.Embedding(5, 2), torch.nn.Flatten()), num_features=2,
                        num_data=20, inducing_points=torch.randn(6, 2, generator=_gen())).eval()
    ids = torch.tensor([[0], [3], [4]])
    assert sv.predict(ids).mean.shape == (3,)
    assert sv.features(ids).dtype == torch.float32


def test_an_integer_input_exact_gp_keeps_its_inputs_dtype():
    """A DeepKernelGP over integer inputs (an embedding) takes its own dtype only: no floating conversion."""
    ids = torch.randint(0, 5, (20, 1), generator=_gen())
    model = DeepKernelGP(ids, torch.randn(20, generator=_gen()),
                         torch.nn.Sequential(torch.nn.Embedding(5, 2), torch.nn.Flatten())).eval()
    assert model.predict(ids[:3]).mean.shape == (3,)
    with pytest.raises(DataError, match="x has dtype torch.int32, expected torch.int64"):
        model.predict(ids[:3].int())
