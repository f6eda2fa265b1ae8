"""A LinearChainCRF site marked for enumeration: a named ModelSpecError (its support is L^T sequences), where torch's
base ``Distribution.enumerate_support`` raised a bare ``NotImplementedError`` from inside Pyro."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate, infer_discrete

from hybridpgm.errors import HybridPGMError, ModelSpecError
from hybridpgm.graphs import CRFHead, LinearChainCRF


def _latent_model(head, emit, strategy="parallel"):
    def model(x):
        with pyro.plate("seqs", x.shape[0], dim=-1):
            y = pyro.sample("y", head(emit(x)), infer={"enumerate": strategy})
            pyro.sample("obs", dist.Normal(y.float().sum(-1), 1.0), obs=torch.zeros(x.shape[0]))
    return model


def _guide(head, emit):
    def guide(x):
        with pyro.plate("seqs", x.shape[0], dim=-1):
            pyro.sample("y", head(emit(x)), infer={"enumerate": "sequential"})
    return guide


@pytest.mark.parametrize("strategy", ["parallel", "sequential"])
def test_an_enumerated_crf_site_raises_a_model_spec_error_naming_the_support(strategy):
    """Parallel enumeration in the model, sequential in the guide (Pyro has no model-side sequential one)."""
    torch.manual_seed(0)
    head, emit, x = CRFHead(3), torch.nn.Linear(2, 3), torch.randn(4, 5, 2)
    model = _latent_model(head, emit, "parallel" if strategy == "parallel" else None)
    guide = (lambda x: None) if strategy == "parallel" else _guide(head, emit)
    with pytest.raises(ModelSpecError, match=r"LinearChainCRF cannot be enumerated") as info:
        TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide, x)
    msg = str(info.value)
    assert "3^5 = 243 per sequence of 5 positions (batch shape (4,))" in msg
    for remedy in ("crf.marginals", "guide", "num_samples", "TraceTMC_ELBO"):
        assert remedy in msg


def test_infer_discrete_on_a_crf_site_raises_the_same_error():
    torch.manual_seed(0)
    head, emit, x = CRFHead(2), torch.nn.Linear(2, 2), torch.randn(3, 4, 2)
    with pytest.raises(ModelSpecError, match=r"2\^4 = 16 per sequence"):
        infer_discrete(_latent_model(head, emit), first_available_dim=-2)(x)


@pytest.mark.parametrize("expand", [True, False])
def test_enumerate_support_called_directly_names_a_huge_count_as_a_power_of_ten(expand):
    crf = LinearChainCRF(torch.zeros(2, 512, 50), torch.zeros(50, 50))
    with pytest.raises(ModelSpecError, match=r"50\^512 \(about 1e869\) per sequence of 512 positions "
                                             r"\(batch shape \(2,\)\)"):
        crf.enumerate_support(expand=expand)


def test_the_crf_says_it_has_no_enumerable_support_so_config_enumerate_leaves_it_alone():
    """``config_enumerate`` marks only sites with ``has_enumerate_support``: the CRF site stays sampled, the
    Categorical next to it is enumerated."""
    torch.manual_seed(0)
    crf = LinearChainCRF(torch.randn(3, 4, 2), torch.randn(2, 2))
    assert crf.has_enumerate_support is False
    assert crf.support.event_dim == 1 and crf.support.is_discrete

    @config_enumerate(default="parallel")
    def model():
        pyro.sample("c", dist.Categorical(torch.ones(3)))
        pyro.sample("y", crf)

    tr = pyro.poutine.trace(model).get_trace()
    assert tr.nodes["c"]["infer"].get("enumerate") == "parallel"
    assert tr.nodes["y"]["infer"].get("enumerate") is None


@pytest.mark.parametrize("query", ["mean", "variance", "stddev"])
def test_mean_and_variance_raise_a_named_not_implemented_error(query):
    """Before, torch's bare ``NotImplementedError`` (no message); now an UnsupportedQueryError, still a
    NotImplementedError, that names the marginals and the mode.  The mode is Viterbi's labelling."""
    crf = LinearChainCRF(torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(3, 3))
    name = "mean" if query == "mean" else "variance"  # torch's stddev is variance.sqrt()
    with pytest.raises(NotImplementedError, match=f"LinearChainCRF has no {name}: its values are sequences of 5 "
                       r"labels in 0..2.*crf\.marginals.*crf\.mode") as info:
        getattr(crf, query)
    assert type(info.value).__name__ == "UnsupportedQueryError" and isinstance(info.value, HybridPGMError)
    assert torch.equal(crf.mode, crf.argmax())
