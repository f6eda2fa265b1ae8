"""MarkovNet neural potentials that return no single tensor, and lazy ones under plain Pyro SVI
(hybridpgm/graphs/markov_net.py ``tables``, hybridpgm/graphs/mrf_pyro_model.py)."""

import pyro
import pytest
import torch
from torch import nn

from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs import MarkovNet

CONTEXT = torch.linspace(-1.0, 1.0, 15).reshape(5, 3)
VALUES = {"a": torch.tensor([0, 1, 1, 0, 1]), "b": torch.tensor([1, 0, 1, 1, 0])}


class _Returning(nn.Module):
    """``context [N, 3] -> [N, 2, 2]``, returned alone, in a tuple or in a dict."""

    def __init__(self, kind: str, lazy: bool = False):
        super().__init__()
        self.lin = nn.LazyLinear(4) if lazy else nn.Linear(3, 4)
        self.kind = kind

    def forward(self, context):
        t = self.lin(context).reshape(context.shape[:-1] + (2, 2))
        return {"tuple": (t, 0), "dict": {"t": t}}.get(self.kind, t)


@pytest.mark.parametrize("query", ["tables", "log_partition", "log_prob", "model"])
@pytest.mark.parametrize("kind, got", [("tuple", "a tuple of Tensor, int"), ("dict", "a dict")])
def test_a_potential_returning_a_tuple_or_dict_is_named(query, kind, got):
    """Torch's "'tuple' object has no attribute 'dim'" from the table check before."""
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], _Returning(kind))
    run = {"tables": lambda: mrf.tables(CONTEXT), "log_partition": lambda: mrf.log_partition(context=CONTEXT),
           "log_prob": lambda: mrf.log_prob(VALUES, context=CONTEXT),
           "model": lambda: pyro.poutine.trace(mrf.model).get_trace(VALUES, context=CONTEXT)}[query]
    with pytest.raises(ModelSpecError, match=rf"MarkovNet: the neural potential of factor 'ab' must return one "
                                             rf"tensor, got {got}; return the tensor alone"):
        run()


def test_a_lazy_potential_under_plain_svi_is_refused_by_name_until_it_has_run():
    """pyro.module read the uninitialised parameters: torch's raw ValueError ('Attempted to use an uninitialized
    parameter').  Refused as fit refuses it, naming the layer; once the network has run, plain SVI trains it."""
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], _Returning("tensor", lazy=True))
    x = torch.stack([VALUES["a"], VALUES["b"]], 1)

    def model(x, context):
        mrf.model({"a": x[:, 0], "b": x[:, 1]}, context=context)

    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, lambda x, context: None, pyro.optim.SGD({"lr": 0.1}),
                         pyro.infer.TraceEnum_ELBO(max_plate_nesting=1))
    with pytest.raises(ConfigError, match=r"MarkovNet.model: the MarkovNet \(registered with pyro.module for plain "
                                          r"SVI\) holds parameters of a lazy module that were never initialised "
                                          r"\(potentials.ab.lin.weight \(LazyLinear\), potentials.ab.lin.bias "
                                          r"\(LazyLinear\)\)"):
        svi.step(x, CONTEXT)
    assert len(pyro.get_param_store()) == 0
    with torch.no_grad():
        mrf.tables(CONTEXT[:2])  # the lazy layer takes its sizes
    weight = mrf.potentials["ab"].lin.weight
    before = weight.detach().clone()
    with torch.no_grad():
        nll = -float(mrf.log_prob(VALUES, context=CONTEXT).sum())
    assert svi.step(x, CONTEXT) == pytest.approx(nll, rel=1e-6)  # the loss before the step
    assert sorted(pyro.get_param_store()) == ["markov_net$$$potentials.ab.lin.bias",
                                              "markov_net$$$potentials.ab.lin.weight"]
    assert not torch.equal(weight.detach(), before)  # stepped
    pyro.clear_param_store()
