"""The scope of the exact BN queries: torch.func.vmap is refused with a clear error (bn_query_scope)."""

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import exact
from tests.graphs.bn_helpers import single_thread, sprinkler  # noqa: F401 (autouse fixture)

ROWS = torch.tensor([0, 1, 1])

QUERIES = {
    "posterior": lambda bn, x: bn.posterior("rain", {"wet": x}),
    "log_evidence": lambda bn, x: bn.log_evidence({"wet": x}),
    "map": lambda bn, x: bn.map({"wet": x})["rain"],
    "sample": lambda bn, x: bn.sample(2, evidence={"wet": x}, generator=torch.Generator().manual_seed(0))["rain"],
}


@pytest.mark.parametrize("method", sorted(QUERIES))
def test_vmap_over_a_query_names_it_and_says_to_pass_a_batch(method):
    """Before: torch's RuntimeError from deep inside the query ("vmap: It looks like you're calling .item() on a
    Tensor ...")."""
    bn = sprinkler()
    with pytest.raises(ConfigError, match=rf"BayesNet\.{method} .*torch\.func\.vmap.*shape \[N\]"):
        torch.func.vmap(lambda x: QUERIES[method](bn, x))(ROWS)


def test_the_refusal_chains_torchs_error():
    """The ConfigError is raised from torch's error (its ``__cause__``), as its docstring said and the code did
    not: under a transform whose vmap batches nothing the query reads (``jacfwd``'s tangents), a failure that is not
    a host read at all still shows what torch refused."""
    bn = sprinkler()
    with pytest.raises(ConfigError) as caught:
        torch.func.vmap(lambda x: QUERIES["posterior"](bn, x))(ROWS)
    assert isinstance(caught.value.__cause__, RuntimeError) and "vmap" in str(caught.value.__cause__)


def test_vmap_over_the_functions_of_exact_names_them():
    """The functions of hybridpgm.infer.exact, called directly, are refused the same way."""
    bn = sprinkler()
    with pytest.raises(ConfigError, match=r"hybridpgm\.infer\.exact\.map_assignment"):
        torch.func.vmap(lambda x: exact.map_assignment(bn, {"wet": x})["rain"])(ROWS)


def test_vmap_nested_under_grad_is_refused_too():
    """A vmap anywhere in torch.func's transform stack (here under torch.func.grad) is refused."""
    bn = sprinkler()
    logits = bn.cpds["rain"].logits.detach()

    def total(theta):
        return torch.func.vmap(lambda x: bn.log_evidence({"wet": x}))(ROWS).sum() + theta.sum()

    with pytest.raises(ConfigError, match=r"BayesNet\.log_evidence"):
        torch.func.grad(total)(logits)


def test_the_batch_of_rows_the_error_suggests_answers_each_row():
    """Guard (passes before and after): the batch the message points to gives, row by row, the answers of the
    rows queried one at a time."""
    bn = sprinkler()
    batched = bn.log_evidence({"wet": ROWS})
    single = torch.stack([bn.log_evidence({"wet": x}) for x in ROWS])
    torch.testing.assert_close(batched, single)


def test_forward_mode_and_hessian_over_the_weights_run():
    """Found by a review: the first version refused any query under a vmap, so torch.func.hessian (whose forward
    mode runs under one) was refused where it had given autograd's Hessian.  jacfwd and jvp failed before on the
    table cache (a transformed tensor has no storage to key it by): they run and agree with autograd now."""
    bn = sprinkler()
    logits = bn.cpds["rain"].logits.detach().clone()

    def log_evidence_at(theta):
        with torch.nn.utils.stateless._reparametrize_module(bn, {"cpds.rain.logits": theta}):
            return bn.log_evidence({"wet": ROWS}).sum()

    want = torch.autograd.functional.hessian(log_evidence_at, logits)
    torch.testing.assert_close(torch.func.hessian(log_evidence_at)(logits), want)
    gradient = torch.autograd.functional.jacobian(log_evidence_at, logits)
    torch.testing.assert_close(torch.func.jacfwd(log_evidence_at)(logits), gradient)
    tangent = torch.ones_like(logits)
    _, directional = torch.func.jvp(log_evidence_at, (logits,), (tangent,))
    torch.testing.assert_close(directional, (gradient * tangent).sum())


@pytest.mark.parametrize("method", sorted(QUERIES))
def test_vmap_over_the_weights_is_refused_naming_the_weights(method):
    """A vmap over stacked CPD weights (the evidence unbatched) is refused as well: the query's host reads (the
    space per row, the check for impossible evidence) depend on the weights.  Before, the same ConfigError
    spoke of the evidence only, which was not batched; now it names the weights and says to loop over them.
    The loop it asks for answers each weight set (checked against the query with those weights loaded)."""
    bn = sprinkler()
    params = dict(bn.named_parameters())
    g = torch.Generator().manual_seed(0)
    stacked = {k: torch.stack([p.detach() + 0.5 * i * torch.randn(p.shape, generator=g) for i in range(3)])
               for k, p in params.items()}

    def query(weights):
        with torch.nn.utils.stateless._reparametrize_module(bn, weights):
            return QUERIES[method](bn, ROWS)

    with pytest.raises(ConfigError, match=rf"BayesNet\.{method} .*vmap over the CPDs' weights .*loop over the "
                                          r"weight sets"):
        torch.func.vmap(query)(stacked)
    looped = [query({k: t[i] for k, t in stacked.items()}) for i in range(3)]
    for i, got in enumerate(looped):
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(stacked[k][i])
        torch.testing.assert_close(got, QUERIES[method](bn, ROWS))


def test_vmap_over_the_weights_past_the_dense_path_is_refused_clearly():
    """Found by review C: on a network of more unobserved joint states than the dense path takes (3 * 3^6), a vmap
    over stacked CPD weights of ``posterior`` raised torch's "element 0 of tensors does not require grad" (a
    RuntimeError without "vmap" in it) where a small network's raised the ConfigError."""
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("r", cpd.Table(torch.softmax(torch.randn(3, generator=g), -1)))
    for i in range(6):
        bn.add(f"x{i}", cpd.Table(torch.softmax(torch.randn(3, 3, generator=g), -1), ["r" if i == 0 else f"x{i - 1}"]))
        bn.add(f"y{i}", cpd.Table(torch.softmax(torch.randn(3, 2, generator=g), -1), [f"x{i}"]))
    bn.requires_grad_(False)
    evidence = {f"y{i}": torch.tensor([0, 1, 1]) for i in range(6)}

    class Posterior(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = bn

        def forward(self):
            return self.bn.posterior(["r", "x3"], evidence)["r"]

    query = Posterior()
    stacked = {f"bn.{k}": torch.stack([v.detach(), v.detach() * 1.1]) for k, v in bn.named_parameters()}
    with pytest.raises(ConfigError, match=r"BayesNet\.posterior .*torch\.func\.vmap"):
        torch.func.vmap(lambda weights: torch.func.functional_call(query, weights, ()))(stacked)
