"""MarkovNet.distribution(): an exact Pyro distribution over the joint state, checked by enumeration."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.graphs.mrf_distribution import MarkovNetDistribution
from tests.graphs.mrf_brute_force import assignments, random_mrf


def _evidence(mrf):
    a, b = mrf.variables[:2]
    return {a: torch.tensor([-1, 0, 1 % mrf.cards[a]]), b: torch.tensor([0, -1, -1])}


def _brute_log_probs(mrf, evidence):
    """``[M, 3]`` log p(x | e_b) of every assignment (``-inf`` where it contradicts e_b), and the ``[M, V]`` rows."""
    values, rows = assignments(mrf, 1)
    scores = mrf.score(values).expand(rows.shape[0], 3).clone()
    for v, val in evidence.items():
        scores[(values[v] != val) & (val >= 0)] = -math.inf
    return scores - scores.logsumexp(0), rows


def test_log_prob_is_the_normalised_score_given_evidence():
    mrf = random_mrf(3, 4, num_factors=4, batch=(3,))
    ev = _evidence(mrf)
    d = mrf.distribution(ev)
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    want, rows = _brute_log_probs(mrf, ev)
    got = d.log_prob(rows[:, None, :].expand(-1, 3, -1))  # [M, 3]
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.allclose(got.exp().sum(0), torch.ones(3, dtype=torch.float64), atol=1e-12)
    finite = torch.isfinite(want)
    assert torch.allclose(got[finite], want[finite], atol=1e-12)


def test_samples_and_mode_are_exact():
    mrf = random_mrf(5, 4, num_factors=4, batch=(3,))
    ev = _evidence(mrf)
    d = mrf.distribution(ev)
    torch.manual_seed(0)
    x = d.sample((2, 5))
    assert x.shape == (2, 5, 3, 4) and x.dtype == torch.long
    assert bool(torch.isfinite(d.log_prob(x)).all())  # every sample keeps its row's evidence
    want, rows = _brute_log_probs(mrf, ev)
    assert torch.equal(d.mode, rows[want.argmax(0)])


def test_log_prob_gradients_equal_enumeration():
    """d log p(x) / d theta through the exact log Z (by contraction) against autograd through enumeration, on a
    loop a - b - c - a of learnable tables."""
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    g = torch.Generator().manual_seed(8)
    tables = {name: torch.nn.Parameter(torch.randn(*(mrf.cards[v] for v in scope), generator=g, dtype=torch.float64))
              for name, scope in [("ab", "ab"), ("bc", "bc"), ("ca", "ca")]}
    for name, t in tables.items():
        mrf.add_factor(name, list(name), t)
    x = torch.tensor([[0, 2, 1], [1, 0, 1]])
    got = torch.autograd.grad(mrf.distribution().log_prob(x).sum(), list(tables.values()))
    values, rows = assignments(mrf)
    scores = mrf.score(values)
    index = [int(((rows == r).all(-1)).nonzero()) for r in x]
    want = torch.autograd.grad((scores - scores.logsumexp(0))[index].sum(), list(tables.values()))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12) and a.abs().sum() > 0


def test_a_pyro_site_in_a_plate_with_validation_and_clear_errors():
    mrf = ising_grid(2, 2, 0.5, torch.tensor([0.1, -0.2, 0.3, 0.0]))

    def model():
        with pyro.plate("n", 6):
            return pyro.sample("z", mrf.distribution())

    with pyro.validation_enabled(True):
        tr = pyro.poutine.trace(model).get_trace()
        z = tr.nodes["z"]["value"]
        assert z.shape == (6, 4)
        tr.compute_log_prob()
        assert torch.allclose(tr.nodes["z"]["log_prob"], mrf.distribution().log_prob(z))
        with pytest.raises(EvidenceError, match=r"the values of 'x_0_1' .* not states 0..1"):  # a ValueError
            mrf.distribution().log_prob(torch.tensor([0, 2, 0, 0]))
    with pytest.raises(EvidenceError, match=r"last dim of 4 .* got shape \(3,\)"):
        mrf.distribution().log_prob(torch.tensor([0, 1, 0]))


def test_a_structured_guide_gets_score_function_gradients():
    """An MRF prior over a 2x2 spin grid and an MRF guide over it: Trace_ELBO takes the guide's site as
    non-reparameterisable and its gradient reaches the guide's learnable couplings and fields."""
    prior = ising_grid(2, 2, 0.8)
    x = torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64)

    def model():
        z = pyro.sample("z", prior.distribution())
        pyro.sample("x", dist.Normal(2.0 * z.double() - 1.0, 1.0).to_event(1), obs=x)

    def guide():
        coupling = pyro.param("guide_coupling", lambda: torch.zeros(4, dtype=torch.float64))
        field = pyro.param("guide_field", lambda: torch.zeros(4, dtype=torch.float64))
        pyro.sample("z", ising_grid(2, 2, coupling, field).distribution())

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    elbo = pyro.infer.Trace_ELBO(num_particles=64, vectorize_particles=True, max_plate_nesting=0)
    assert not pyro.poutine.trace(guide).get_trace().nodes["z"]["fn"].has_rsample
    loss = elbo.loss_and_grads(model, guide)
    grads = [pyro.param(name).unconstrained().grad for name in ("guide_coupling", "guide_field")]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # the estimate is unbiased for the ELBO by enumeration: within 4 standard errors of 64 particles (fixed seed)
    values, rows = assignments(prior)
    log_prior = prior.score(values) - prior.score(values).logsumexp(0)
    log_q = torch.full((16,), -math.log(16), dtype=torch.float64)  # zero potentials: uniform
    f = log_prior + dist.Normal(2.0 * rows.double() - 1.0, 1.0).log_prob(x).sum(-1) - log_q
    w = log_q.exp()
    elbo_exact = float((w * f).sum())
    se = math.sqrt(float((w * (f - elbo_exact) ** 2).sum()) / 64)
    assert abs(-loss - elbo_exact) < 4 * se
    pyro.clear_param_store()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])  # float32: |log Z| ~ 10
def test_entropy_is_brute_forces_given_evidence(dtype, tol):
    """H(p(x | e_b)) = -sum p log p over the assignments each row's evidence allows, for three rows of evidence
    on a random MRF with three-way factors."""
    mrf = random_mrf(11, 5, num_factors=5, batch=(3,), dtype=dtype, scale=2.0)
    ev = _evidence(mrf)
    got = mrf.distribution(ev).entropy()
    want, _ = _brute_log_probs(mrf, ev)
    want = -(want.exp() * want.nan_to_num(neginf=0.0)).sum(0)
    assert got.shape == (3,) and got.dtype == dtype
    assert torch.allclose(got.double(), want.double(), atol=tol, rtol=0) and bool((want > 0.1).all())


def test_entropy_gradients_equal_enumeration():
    """dH / d theta (a second derivative of log Z, by double backward through the contraction) against autograd
    through enumeration, on a loop of learnable tables."""
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    g = torch.Generator().manual_seed(9)
    tables = {name: torch.nn.Parameter(torch.randn(*(mrf.cards[v] for v in scope), generator=g, dtype=torch.float64))
              for name, scope in [("ab", "ab"), ("bc", "bc"), ("ca", "ca"), ("a", "a")]}
    for name, t in tables.items():
        mrf.add_factor(name, list(name), t)
    entropy = mrf.distribution().entropy()
    got = torch.autograd.grad(entropy, list(tables.values()))
    values, _ = assignments(mrf)
    log_p = mrf.score(values).log_softmax(0)
    want_h = -(log_p.exp() * log_p).sum()
    want = torch.autograd.grad(want_h, list(tables.values()))
    assert torch.allclose(entropy, want_h, atol=1e-12)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10) and a.abs().sum() > 0
    with torch.no_grad():
        assert not mrf.distribution().entropy().requires_grad


@pytest.mark.parametrize("bad", [1.5, -1.0, 3.0])
def test_log_prob_names_a_value_that_is_not_a_state_without_validation_too(bad):
    """With validation off, ``value.long()`` used to truncate 1.5 to 1 (and -1 indexed from the end)."""
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    value = torch.tensor([[1.0, bad]])
    with pytest.raises(EvidenceError, match=r"the values of 'b' .* which are not states 0..2"):
        MarkovNetDistribution(mrf, validate_args=False).log_prob(value)
    whole = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(MarkovNetDistribution(mrf, validate_args=False).log_prob(whole),
                               mrf.distribution().log_prob(whole.long()))


def test_log_prob_broadcasts_values_against_the_batch_of_evidence_rows():
    """Before: torch's raw RuntimeError from ``expand`` (the evidence mask was broadcast to the value's shape, not
    to the value's batch dims broadcast with ``batch_shape``); a value must broadcast as for any distribution."""
    mrf = random_mrf(3, 4, num_factors=4, batch=(3,))
    ev = _evidence(mrf)
    d = mrf.distribution(ev)
    want, rows = _brute_log_probs(mrf, ev)  # [M, 3]
    got = d.log_prob(rows[:, None, :])  # [M, 1, V] against batch_shape (3,)
    assert got.shape == want.shape and torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    assert torch.allclose(got[finite], want[finite], atol=1e-12) and bool(finite.any()) and not bool(finite.all())
    for m in range(rows.shape[0]):  # one state, event_shape only: scored under every evidence row
        one = d.log_prob(rows[m])
        assert one.shape == (3,) and torch.equal(one.isinf(), want[m].isinf())
        assert torch.allclose(one[finite[m]], want[m][finite[m]], atol=1e-12)


@pytest.mark.parametrize("validate", [True, False])
def test_log_prob_names_values_that_do_not_broadcast_with_the_batch(validate):
    mrf = random_mrf(3, 4, num_factors=4, batch=(3,))
    d = MarkovNetDistribution(mrf, _evidence(mrf), validate_args=validate)
    with pytest.raises(EvidenceError, match=r"values of shape \(2, 4\) do not broadcast with batch_shape \(3,\)"):
        d.log_prob(torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("bad, name", [([0, 3], "b"), ([-1, 0], "a"), ([0.0, 1.5], "b")])
def test_log_prob_names_a_value_that_is_not_a_state_under_default_validation(bad, name):
    """Found by an audit: with Pyro's validation on (the default), torch's ``_validate_sample`` ran before the
    named check and raised a plain ValueError that names no variable, contradicting the docstring."""
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    d = mrf.distribution()
    assert d._validate_args  # the default settings validate
    with pytest.raises(EvidenceError, match=f"the values of '{name}' .* which are not states"):
        d.log_prob(torch.tensor(bad))
    assert issubclass(EvidenceError, ValueError)  # ``except ValueError`` still catches it


def _hard_pair(dtype, table=None):
    """a, b binary; two factors put ``finfo.min`` at (a=0, b=1): their sum is -inf there (probability zero)."""
    neg = torch.finfo(dtype).min
    hard = torch.tensor([[0.0, neg], [0.0, 0.0]], dtype=dtype)
    first = hard.clone() if table is None else table
    return MarkovNet({"a": 2, "b": 2}).add_factor("f1", ["a", "b"], first).add_factor("f2", ["a", "b"], hard)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_of_a_value_of_probability_zero_is_minus_inf_as_brute_force(dtype):
    """A value scoring -inf is -inf (brute force: three states of equal score), under evidence rows too, and
    never NaN."""
    mrf = _hard_pair(dtype)
    values, rows = assignments(mrf)
    want = mrf.score(values)
    want = want - want.logsumexp(0)
    got = mrf.distribution().log_prob(rows)
    assert torch.equal(got, want.to(got.dtype)) and got[1] == -math.inf
    ev = {"a": torch.tensor([0, -1]), "b": torch.tensor([-1, 1])}  # rows a=0 and b=1: one state each
    got = mrf.distribution(ev).log_prob(rows[:, None, :].expand(-1, 2, -1))
    assert not bool(got.isnan().any())
    assert torch.equal(got.exp(), torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_under_evidence_of_probability_zero_raises_naming_it(dtype):
    """Evidence every allowed state of which scores -inf makes log Z = -inf: EvidenceError naming the evidence (was
    NaN).  Given a = 0, b = 0 pays ``finfo.min`` in two tables and b = 1 in two others, so both sums are -inf and no
    table's maximum over the allowed states is ``finfo.min``.  Where one state alone is allowed and scores -inf
    (``_hard_pair`` given a = 0, b = 1), each table's entry there is its maximum, which the centring takes out: the
    check is of log Z_e = log Z̃_e + M, -inf as exact log_partition, marginals, sample and mode say (an audit: it
    answered 0, probability 1, of the centred log Z̃_e)."""
    neg = torch.finfo(dtype).min
    at_b0, at_b1 = (torch.tensor(t, dtype=dtype) for t in ([[neg, 0.0], [0.0, 0.0]], [[0.0, neg], [0.0, 0.0]]))
    mrf = MarkovNet({"a": 2, "b": 2})
    for name, table in (("f1", at_b0), ("f2", at_b0), ("f3", at_b1), ("f4", at_b1)):
        mrf.add_factor(name, ["a", "b"], table.clone())
    d = mrf.distribution({"a": torch.tensor(0)})
    with pytest.raises(EvidenceError, match=r"MarkovNetDistribution.log_prob: .*probability zero.*a=0"):
        d.log_prob(torch.tensor([0, 1]))
    only = _hard_pair(dtype).distribution({"a": torch.tensor(0), "b": torch.tensor(1)})
    assert only.log_partition.item() == -math.inf
    with pytest.raises(EvidenceError, match=r"MarkovNetDistribution.log_prob: .*probability zero.*a=0, b=1"):
        only.log_prob(torch.tensor([0, 1]))


def test_log_prob_gradients_stay_finite_at_values_of_probability_zero():
    """d log p / d theta is enumeration's at the possible values and zero (not NaN) at the impossible one."""
    neg = torch.finfo(torch.float64).min
    table = torch.nn.Parameter(torch.tensor([[0.2, neg], [0.3, -0.4]], dtype=torch.float64))
    mrf = _hard_pair(torch.float64, table)
    values, rows = assignments(mrf)
    lp = mrf.distribution().log_prob(rows)
    (dead,) = torch.autograd.grad(lp[1], table, retain_graph=True)
    assert torch.equal(dead, torch.zeros_like(dead))
    (got,) = torch.autograd.grad(lp[[0, 2, 3]].sum(), table)
    scores = mrf.score(values)
    possible = scores[[0, 2, 3]]
    (want,) = torch.autograd.grad((possible - possible.logsumexp(0)).sum(), table)
    assert bool(torch.isfinite(got).all()) and torch.allclose(got, want, atol=1e-12)


class _DropoutPotential(torch.nn.Module):
    """A pairwise potential ``context [N, 3] -> [N, 2, 3]`` with dropout; counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                       torch.nn.Linear(16, 6))
        self.calls = 0

    def forward(self, context):
        self.calls += 1
        return self.net(context).reshape(context.shape[:-1] + (2, 3))


def test_a_dropout_potential_in_training_mode_gives_a_normalised_log_prob_from_one_forward_pass():
    """The score and log Z come from the tables of one forward pass (one dropout mask): the probabilities of all
    states sum to one in training mode (two passes, two masks, gave 0.88)."""
    torch.manual_seed(0)
    pot = _DropoutPotential().train()
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], pot)
    d = mrf.distribution(context=torch.randn(4, 3))
    rows = torch.tensor([[a, b] for a in range(2) for b in range(3)])  # [6, 2]
    pot.calls = 0
    total = d.log_prob(rows[:, None, :]).exp().sum(0)  # [4]
    assert torch.allclose(total, torch.ones(4), atol=1e-5), total
    assert pot.calls == 0  # the network ran once, when the distribution was built


def test_log_prob_after_an_in_place_update_of_the_tables_stays_normalised():
    """A distribution kept across an optimizer step scores with the tables it was built from, as its log Z, mode
    and samples do (the live score with the old log Z summed to 1.34), like torch's Categorical(logits=param)."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(2, 3))
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], p)
    d = mrf.distribution()
    before = d.log_prob(torch.tensor([[a, b] for a in range(2) for b in range(3)])).detach()
    opt = torch.optim.SGD([p], lr=1.0)
    p.grad = torch.randn(2, 3) * 3
    opt.step()
    after = d.log_prob(torch.tensor([[a, b] for a in range(2) for b in range(3)]))
    assert torch.allclose(after.exp().sum(), torch.tensor(1.0), atol=1e-6)
    assert torch.equal(after.detach(), before)
    best = int(before.argmax())
    assert d.mode.tolist() == [best // 3, best % 3]


@pytest.mark.parametrize("batch", [(), (3,)])
def test_inside_a_plate_the_distribution_keeps_entropy_mode_log_prob_and_samples(batch):
    """pyro.plate expands the site's distribution: MarkovNetDistribution.expand keeps it a MarkovNetDistribution
    (Pyro's generic ExpandedDistribution raised NotImplementedError for entropy and mode)."""
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2}).add_factor("ab", ["a", "b"], torch.randn(batch + (2, 3)))
    mrf.add_factor("bc", ["b", "c"], torch.randn(3, 2))
    base = mrf.distribution()

    def guide():
        with pyro.plate("data", 4, dim=-1 - len(batch)):
            pyro.sample("z", mrf.distribution())

    fn = pyro.poutine.trace(guide).get_trace().nodes["z"]["fn"]
    assert isinstance(fn, MarkovNetDistribution) and fn.batch_shape == (4,) + batch
    assert torch.allclose(fn.entropy(), base.entropy().expand((4,) + batch))
    assert torch.equal(fn.mode, base.mode.expand((4,) + batch + (3,)))
    x = fn.sample((500,))
    assert x.shape == (500, 4) + batch + (3,)
    assert torch.allclose(fn.log_prob(x), base.log_prob(x))
    # independent draws in every plate entry, each with the unplated model's frequencies
    assert not torch.equal(x[:, 0], x[:, 1])
    rows = torch.tensor([[a, b, c] for a in range(2) for b in range(3) for c in range(2)])  # [12, 3]
    if batch:
        p, seen = base.log_prob(rows[:, None, :]).exp(), x[:, :, None] == rows[:, None, :]  # [12, 3]
    else:
        p, seen = base.log_prob(rows).exp(), x[..., None, :] == rows  # [12]
    freq = seen.all(-1).float().mean((0, 1))
    assert torch.allclose(freq, p, atol=0.05)
    with pytest.raises(ModelSpecError, match=r"batch_shape \(3,\) does not broadcast to \(5, 4\)"):
        mrf.distribution(evidence={"a": torch.tensor([0, 1, -1])}).expand((5, 4))


def test_an_expanded_size_one_batch_draws_independently_in_every_entry():
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(1, 2, 3))
    base = mrf.distribution()
    wide = base.expand((2, 5))
    x = wide.sample((400,))
    assert x.shape == (400, 2, 5, 2)
    assert not torch.equal(x[:, 0, 0], x[:, 1, 3])
    rows = torch.tensor([[a, b] for a in range(2) for b in range(3)])
    freq = (x[..., None, :] == rows).all(-1).float().mean((0, 1, 2))
    assert torch.allclose(freq, base.log_prob(rows[:, None, :]).exp()[:, 0], atol=0.04)
    assert torch.equal(wide.mode, base.mode.expand(2, 5, 2)) and wide.entropy().shape == (2, 5)


def test_validate_args_is_passed_on_as_to_any_torch_distribution():
    """``mrf.distribution(validate_args=...)`` as torch's distributions take it, whatever torch's default (before,
    a TypeError: only torch's process-wide default could turn validation off)."""
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    was = torch.distributions.Distribution._validate_args
    try:
        for default, given in ((True, False), (False, True)):
            torch.distributions.Distribution.set_default_validate_args(default)
            d = mrf.distribution(validate_args=given)
            assert d._validate_args is given and d.expand((4,))._validate_args is given
            assert mrf.distribution()._validate_args is default
    finally:
        torch.distributions.Distribution.set_default_validate_args(was)


def test_the_support_is_read_on_the_class_as_on_the_crf_s():
    """Pyro reads a distribution's support on the class (``infer_shapes``, ``is_discrete`` checks): a dependent
    property with event dim 1, as the CRF's (before, a plain property object: ``infer_shapes`` raised an
    AttributeError, "'property' object has no attribute 'event_dim'")."""
    support = MarkovNetDistribution.support
    assert support.is_discrete and support.event_dim == 1
    with pytest.raises(NotImplementedError):  # Pyro's answer for a support whose shape depends on the instance
        MarkovNetDistribution.infer_shapes()
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    assert mrf.distribution().support.check(torch.tensor([1, 2])).item()
    assert not mrf.distribution().support.check(torch.tensor([1, 3])).item()
