"""A rows-first context whose first feature dim is 1 (a single-channel image ``[N, 1, H, W]``) under an enumeration or
a particle plate (:mod:`hybridpgm.graphs.bn_context_dims`).

Under an enumerated site or a particle plate at dim ``-2``, ``[N, 1, H, W]`` also reads as one row per value of that
dim, ``[N, 1, H * W]``.  HEAD refused it whatever that dim's size (so a Neural CPD over single-channel images could not
be trained under ``TraceEnum_ELBO`` once anything was enumerated before it, nor under a vectorized ELBO).  The sizes
tell the readings apart: where the dim cannot hold ``N`` entries the input is rows first, and the loss and gradients
are those of exact enumeration by hand; where it may (``K == N``), or its sizes cannot be told, it is still refused.
"""

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

N, H, W = 4, 2, 3
F64 = torch.float64


def _image_net():
    """``c -> y``, ``y`` a Neural CPD of ``c`` and the contexts ``img`` (``H * W`` features) and ``u`` (1)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2 + H * W + 1, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    bn = BayesNet(name="img").add("c", cpd.Table(torch.tensor([0.3, 0.7], dtype=F64), learnable=True))
    return bn.add("y", cpd.Neural(net, ["c"], 2, context=["img", "u"])), net


g = torch.Generator().manual_seed(1)
IMG = torch.randn(N, 1, H, W, generator=g, dtype=F64)
Y = torch.tensor([0, 1, 1, 0])
C = torch.tensor([float("nan"), 1.0, float("nan"), 0.0])  # c missing in rows 0 and 2: enumerated by the network
SHIFT = torch.randn(4, generator=g, dtype=F64)


def _data_log_lik(bn, net, shift):
    """``[n] -> sum_n log sum_{c allowed in row n} p(c) p(y_n | c, img_n, u = shift)`` for one value of ``u``."""
    lc = torch.log_softmax(bn.cpds["c"].logits, -1)
    total = 0.0
    for n in range(N):
        terms = []
        for c in range(2):
            if C[n] == C[n] and int(C[n]) != c:
                continue
            x = torch.cat([torch.nn.functional.one_hot(torch.tensor(c), 2).double(), IMG[n].reshape(-1),
                           shift.reshape(1)])
            terms.append(lc[c] + torch.log_softmax(net(x), -1)[Y[n]])
        total = total + torch.logsumexp(torch.stack(terms), 0)
    return total


def _assert_grads(loss, want, params):
    for got, ref in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def _mixture(bn, k):
    """``e`` of ``k`` values enumerated before the network, its ``u = shift[e]`` given per row ``[k, N, 1]``."""
    prior = torch.log_softmax(torch.tensor([0.2, -0.4, 0.9, 0.1][:k], dtype=F64), -1)

    def model():
        e = pyro.sample("e", dist.Categorical(logits=prior), infer={"enumerate": "parallel"})  # [k, 1]
        u = SHIFT[e][..., None].expand(k, N, 1)
        bn.model({"c": C, "y": Y}, context={"img": IMG, "u": u})

    return model, prior


def test_an_image_context_beside_an_enumerated_site_of_another_size_gives_the_exact_loss_and_gradients():
    """``e`` of 3 values, 4 rows: ``-log sum_e p(e) prod_n sum_c p(c) p(y_n | c, img_n, shift[e])`` (HEAD: refused,
    the image read as one row per value of ``e``)."""
    bn, net = _image_net()
    model, prior = _mixture(bn, 3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    want = -torch.logsumexp(torch.stack([prior[e] + _data_log_lik(bn, net, SHIFT[e]) for e in range(3)]), 0)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, list(bn.parameters()))


def test_an_image_context_beside_an_enumerated_site_of_as_many_values_as_rows_is_still_refused():
    """``e`` of 4 values, 4 rows: ``[4, 1, 2, 3]`` may be one row per value of ``e``; neither reading is taken."""
    bn, _ = _image_net()
    model, _ = _mixture(bn, N)
    with pytest.raises(DataError, match=r"'img' of shape \(4, 1, 2, 3\) is ambiguous.*dim -2 may hold 4 entries"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)


def _observed_model(bn):
    c = torch.tensor([1.0, 1.0, 0.0, 0.0])

    def model():
        bn.model({"c": c, "y": Y}, context={"img": IMG, "u": torch.zeros(N, 1, dtype=F64)})

    return model, c


@pytest.mark.parametrize("particles", [3, N])
def test_an_image_context_under_a_particle_plate_is_rows_first_unless_the_plate_has_as_many_particles(particles):
    """A vectorized ``Trace_ELBO`` of 3 particles over 4 complete rows: the loss is ``-log p(c, y)`` of the plain trace
    (HEAD: refused); with 4 particles the image may be one row per particle: refused."""
    bn, _ = _image_net()
    model, _ = _observed_model(bn)
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    if particles == N:
        with pytest.raises(DataError, match=r"'img' of shape \(4, 1, 2, 3\) is ambiguous"):
            elbo.loss(model, lambda: None)
        return
    want = -poutine.trace(model).get_trace().log_prob_sum()
    assert elbo.loss(model, lambda: None) == pytest.approx(want.item(), rel=1e-12)


def test_an_image_context_beside_a_site_the_guide_enumerates_gives_the_exact_loss():
    """``e`` enumerated in the guide (``q = p``) and sampled in the model after the network: its size is read from the
    guide's trace, which the model replays.  The loss is ``-log p(data)`` (the KL term is 0; HEAD: refused)."""
    bn, net = _image_net()
    probs = torch.tensor([0.2, 0.5, 0.3], dtype=F64)

    def model():
        bn.model({"c": C, "y": Y}, context={"img": IMG, "u": torch.zeros(N, 1, dtype=F64)})
        pyro.sample("e", dist.Categorical(probs))

    def guide():
        pyro.sample("e", dist.Categorical(probs), infer={"enumerate": "parallel"})

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide)
    want = -_data_log_lik(bn, net, torch.zeros((), dtype=F64))
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, list(bn.parameters()))


def test_an_image_context_in_a_markov_chain_of_local_enumeration_gives_the_forward_algorithm_loss():
    """``z_t`` of 3 states enumerated inside ``pyro.markov`` (local dims, recycled), ``u_t = shift[z_t]``, one network
    call per step over the same 4 rows: ``-log sum_z p(z_0) prod_t p(z_t | z_{t-1}) p(data | u_t)`` by brute force
    over the 27 paths (HEAD: refused at the first step)."""
    bn, net = _image_net()
    init = torch.log_softmax(torch.tensor([0.3, -0.2, 0.1], dtype=F64), -1)
    trans = torch.log_softmax(torch.tensor([[1.0, 0.2, -0.5], [0.0, 0.8, 0.1], [-0.3, 0.4, 0.9]], dtype=F64), -1)

    def model():
        z = None
        for t in pyro.markov(range(3)):
            logits = init if z is None else trans[z]
            z = pyro.sample(f"z{t}", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            u = SHIFT[z][..., None].expand(*z.shape[:-1], N, 1)
            bn.model({"c": C, "y": Y}, context={"img": IMG, "u": u}, prefix=f"t{t}/")

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)
    lik = [_data_log_lik(bn, net, SHIFT[k]) for k in range(3)]
    paths = [init[a] + trans[a, b] + trans[b, c] + lik[a] + lik[b] + lik[c]
             for a, b, c in itertools.product(range(3), repeat=3)]
    want = -torch.logsumexp(torch.stack(paths), 0)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    _assert_grads(loss, want, list(bn.parameters()))


def test_an_image_context_is_refused_where_the_enumerated_sizes_cannot_be_told():
    """A ``poutine.block`` between the enumeration and the trace hides the enumerated site: its size is unknown, so
    the ambiguous image is refused as before."""
    bn, _ = _image_net()

    def model():
        pyro.sample("e", dist.Categorical(torch.tensor([0.5, 0.5], dtype=F64)), infer={"enumerate": "parallel"})
        bn.model({"c": C, "y": Y}, context={"img": IMG, "u": torch.zeros(N, 1, dtype=F64)})

    program = poutine.trace(poutine.block(poutine.enum(model, first_available_dim=-2)))
    with pytest.raises(DataError, match=r"'img' of shape \(4, 1, 2, 3\) is ambiguous"):
        program.get_trace()
