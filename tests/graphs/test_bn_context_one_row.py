"""A context input that reads as one row under an enumeration (``[K, 1, F]``) while the data have ``N`` rows.

The network does not broadcast one row over the data's rows: for ``K != N`` such an input was refused (``DataError``,
different row counts).  For ``K == N`` HEAD read it rows first instead (its first dim holds ``N`` entries): row ``n``
was scored with the context of the enumerated value ``n``, a wrong loss without a word (an HMM over 4 steps whose
emission is a neural CPD of ``z_t``: 8.9704 against the forward algorithm's 8.4156).  Now it is refused too, naming
the input and both ways to write what is meant.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

K = 3  # the enumerated site's values


def _emission(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(1, 2).double()
    return net, BayesNet(name="emit").add("o", cpd.Neural(net, [], 2, context=["u"]))


def _model(bn, obs, expand: bool):
    init = torch.log_softmax(torch.tensor([0.2, -0.4, 0.9], dtype=torch.float64), -1)

    def model():
        z = pyro.sample("z", dist.Categorical(logits=init), infer={"enumerate": "parallel"})  # [K, 1]
        u = z.double()[..., None]  # [K, 1, 1]: one row per value of z
        bn.model({"o": obs}, context={"u": u.expand(K, len(obs), 1) if expand else u})

    return model, init


@pytest.mark.parametrize("rows", [K, 4])
def test_a_one_row_context_under_an_enumeration_is_refused_whatever_the_rows(rows):
    """``[K, 1, 1]`` beside ``N`` rows: refused for ``N == K`` (HEAD: a loss, row ``n`` given ``z = n``) as for
    ``N != K``."""
    _, bn = _emission()
    obs = torch.tensor([0, 1, 1, 0])[:rows]
    model, _ = _model(bn, obs, expand=False)
    match = r"context input 'u' of shape \(3, 1, 1\) is ambiguous.*shape \(3, 3, 1\)" if rows == K \
        else r"different row counts.*'u': 1"
    with pytest.raises(DataError, match=match):
        TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)


def test_the_context_given_per_row_gives_the_exact_loss_and_gradients():
    """The documented form ``[K, N, 1]`` (the one row expanded) for ``N == K``: ``-log sum_z p(z) prod_n p(o_n | z)``
    and its gradients."""
    net, bn = _emission()
    obs = torch.tensor([0, 1, 1])
    model, init = _model(bn, obs, expand=True)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    lp = torch.log_softmax(net(torch.arange(K, dtype=torch.float64)[:, None]), -1)  # log p(o | z) [K, 2]
    want = -torch.logsumexp(init + lp[:, obs].sum(-1), 0)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    for g, w in zip(torch.autograd.grad(loss, list(net.parameters())),
                    torch.autograd.grad(want, list(net.parameters()))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_rows_of_several_feature_dims_stay_rows_first_under_an_enumeration():
    """The rows-first reading is kept where the enumeration's reading does not put one row at the data plate:
    ``[N, 2, 3]`` (an image) is ``N`` rows of 6 features, as in a plain trace."""
    torch.manual_seed(0)
    bn = BayesNet(name="img").add("y", cpd.Neural(torch.nn.Linear(6, 2).double(), [], 2, context=["img"]))
    img, y = torch.randn(K, 2, 3, dtype=torch.float64), torch.tensor([0, 1, 1])
    want = -pyro.poutine.trace(bn.model).get_trace({"y": y}, context={"img": img}).log_prob_sum().detach().item()

    def enumerated():
        pyro.sample("c", dist.Categorical(torch.tensor([0.5, 0.5])), infer={"enumerate": "parallel"})
        bn.model({"y": y}, context={"img": img})

    assert TraceEnum_ELBO(max_plate_nesting=1).loss(enumerated, lambda: None) == pytest.approx(want, rel=1e-12)
