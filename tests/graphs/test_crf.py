import itertools
import math
import re

import pyro
from pyro.distributions.torch_distribution import TorchDistributionMixin
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import CRFHead, LinearChainCRF


def _random_crf(seed, B, T, L, lengths=None, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    args = [torch.randn(s, generator=g, dtype=torch.double) for s in [(B, T, L), (L, L), (L,), (L,)]]
    args = [a.requires_grad_(requires_grad) for a in args]
    return args, LinearChainCRF(*args, lengths=lengths)


def _enumerate(crf, b):
    """All label sequences of sequence ``b`` (padding fixed to 0) with their probabilities."""
    T, L = crf.unary.shape[-2:]
    n = int(crf.lengths[b])
    ys = torch.tensor(list(itertools.product(range(L), repeat=n)), dtype=torch.long).reshape(-1, n)
    ys = torch.cat([ys, ys.new_zeros(ys.shape[0], T - n)], dim=1)
    full = ys[:, None, :].expand(-1, crf.batch_shape[0], T)
    return ys, crf.log_prob(full)[:, b]


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 4), L=st.integers(1, 3), data=st.data())
def test_crf_matches_brute_force(seed, T, L, data):
    B = 3
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    _, crf = _random_crf(seed, B, T, L, lengths)
    marg, viterbi, ent = crf.marginals, crf.argmax(), crf.entropy()
    for b in range(B):
        ys, lp = _enumerate(crf, b)
        p = lp.exp()
        assert torch.allclose(p.sum(), torch.tensor(1.0, dtype=p.dtype))
        want = torch.einsum("n,ntl->tl", p, torch.nn.functional.one_hot(ys, L).double())
        want[int(lengths[b]):] = 0
        assert torch.allclose(marg[b], want, atol=1e-10)
        assert torch.equal(viterbi[b], ys[lp.argmax()])
        assert torch.allclose(ent[b], -(p * lp).sum(), atol=1e-10)


def test_padding_is_ignored():
    (u, A, s, e), crf = _random_crf(0, 2, 5, 3, lengths=torch.tensor([5, 3]))
    short = LinearChainCRF(u[1:, :3], A, s, e)
    y = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 1, -1, 7]])  # garbage in the padding
    assert torch.allclose(crf.log_prob(y)[1], short.log_prob(y[1:, :3])[0])
    assert torch.allclose(crf.marginals[1, :3], short.marginals[0])
    assert torch.equal(crf.marginals[1, 3:], torch.zeros(2, 3, dtype=torch.double))
    assert torch.equal(crf.argmax()[1, 3:], torch.zeros(2, dtype=torch.long))


def test_sampling_matches_marginals():
    torch.manual_seed(0)
    _, crf = _random_crf(1, 2, 4, 3, lengths=torch.tensor([4, 2]))
    n = 10000
    ys = crf.sample((n,))
    assert ys.shape == (n, 2, 4)
    freq = torch.nn.functional.one_hot(ys, 3).double().mean(0)
    marg = crf.marginals
    mask = torch.arange(4) < crf.lengths[:, None]
    se = (marg * (1 - marg) / n).sqrt()
    assert bool(((freq - marg).abs() <= 5 * se + 1e-12)[mask].all())
    assert bool((ys[:, 1, 2:] == 0).all())


def test_gradcheck_log_prob_marginals_entropy():
    (u, A, s, e), _ = _random_crf(2, 2, 4, 3, requires_grad=True)
    y = torch.tensor([[0, 2, 1, 1], [1, 0, 0, 2]])
    lengths = torch.tensor([4, 3])

    def f(u, A, s, e):
        crf = LinearChainCRF(u, A, s, e, lengths)
        return crf.log_prob(y), crf.marginals, crf.entropy()

    assert torch.autograd.gradcheck(f, (u, A, s, e))


def test_pyro_sample_obs_and_head():
    torch.manual_seed(0)
    head = CRFHead(3)
    unary = torch.randn(4, 6, 3)
    y = torch.randint(0, 3, (4, 6))

    def model():
        with pyro.plate("seqs", 4):
            pyro.sample("y", head(unary, torch.tensor([6, 5, 2, 1])), obs=y)

    tr = pyro.poutine.trace(model).get_trace()
    assert torch.allclose(tr.log_prob_sum(), head(unary, torch.tensor([6, 5, 2, 1])).log_prob(y).sum())
    tr.log_prob_sum().backward()
    assert head.transition.grad is not None and head.transition.grad.abs().sum() > 0
    assert isinstance(head(unary), TorchDistributionMixin)
    assert head(unary).expand((2, 4)).batch_shape == (2, 4)


def test_plate_broadcasts_an_unbatched_crf():
    torch.manual_seed(1)
    crf = LinearChainCRF(torch.randn(6, 3), torch.randn(3, 3))

    def model():
        with pyro.plate("p", 4):
            return pyro.sample("y", crf)

    tr = pyro.poutine.trace(model).get_trace()
    y = tr.nodes["y"]["value"]
    assert y.shape == (4, 6) and tr.nodes["y"]["fn"].batch_shape == (4,)
    assert torch.allclose(tr.log_prob_sum(), crf.log_prob(y).sum())


@pytest.mark.parametrize("kwargs, match", [
    (dict(unary=torch.tensor([[0.0, float("nan")]])), "unary.*NaN"),
    (dict(transition=torch.full((2, 2), float("inf"))), "transition.*NaN or inf"),
    (dict(transition=torch.zeros(3, 3)), "transition must end in"),
    (dict(unary=torch.zeros(2)), "unary must be"),
    (dict(lengths=torch.tensor(-1)), "lengths"),  # 0, an empty sequence, is taken (test_crf_empty.py)
    (dict(lengths=torch.tensor(2)), "lengths"),
    (dict(start=torch.zeros(3)), "start"),
])
def test_bad_potentials_raise(kwargs, match):
    args = dict(unary=torch.zeros(1, 2), transition=torch.zeros(2, 2))
    args.update(kwargs)
    with pytest.raises(ModelSpecError, match=match):
        LinearChainCRF(**args)


def test_label_outside_label_set_raises():
    crf = LinearChainCRF(torch.zeros(2, 3, 2), torch.zeros(2, 2), lengths=torch.tensor([3, 2]))
    with pytest.raises(EvidenceError, match="label 2 at index \\[0, 1\\]"):
        crf.log_prob(torch.tensor([[0, 2, 0], [0, 0, 0]]))
    with pytest.raises(EvidenceError, match="shape"):
        crf.log_prob(torch.zeros(2, 4, dtype=torch.long))
    crf.log_prob(torch.tensor([[0, 1, 0], [1, 1, 9]]))  # padding may hold anything


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), float("nan"), 0.5])
def test_a_non_finite_or_fractional_float_label_is_named(bad, validate):
    """``int(inf)`` in the message crashed with ``OverflowError``; with validation off an infinite label
    reached ``.long()`` (an arbitrary integer)."""
    crf = LinearChainCRF(torch.zeros(3, 2), torch.zeros(2, 2), validate_args=validate)
    with pytest.raises(EvidenceError, match="labels must be integers"):
        crf.log_prob(torch.tensor([1.0, bad, 0.0]))


def test_a_float_label_outside_the_label_set_is_named_with_its_value():
    crf = LinearChainCRF(torch.zeros(3, 2), torch.zeros(2, 2), validate_args=True)
    with pytest.raises(EvidenceError, match=r"label 7.0 at index \[1\]"):
        crf.log_prob(torch.tensor([1.0, 7.0, 0.0]))


def test_a_label_outside_the_label_set_is_named_inside_a_plate_too():
    """Pyro's plate expands the distribution; the expanded CRF validated nothing, and the label reached
    torch's gather ('index 3 is out of bounds for dimension 2 with size 3')."""
    head, unary, y = CRFHead(3), torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    y[0, 1] = 3

    def model():
        with pyro.plate("seqs", 2):
            pyro.sample("y", head(unary, torch.tensor([4, 2])), obs=y)

    with pytest.raises(ValueError, match=r"label 3 at index \[0, 1\] is outside the label set 0..2"):
        pyro.poutine.trace(model).get_trace().log_prob_sum()
    assert not LinearChainCRF(unary, head.transition, validate_args=False).expand((2,))._validate_args


@pytest.mark.slow
def test_tagger_example_reaches_bayes_accuracy():
    """The CRF tagger example gets within 1 point of the Bayes-optimal token accuracy."""
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).parents[2] / "examples" / "crf_tagger.py"))
    out = example["main"](example["parse_args"](["--device", "cpu"]))
    assert out["bayes_accuracy"] - out["accuracy"] < 0.01


# -- values that broadcast with the batch shape ---------------------------------------------------------
def test_log_prob_broadcasts_labels_against_the_batch_shape_with_validation_on():
    """Labels [N, T] against a batch [K, N] (vectorized particles, an outer plate over a global latent):
    _check_value expanded the mask to the value's shape, and torch raised a raw RuntimeError."""
    g = torch.Generator().manual_seed(0)
    U, A = torch.randn(2, 4, 3, generator=g), torch.randn(3, 3, generator=g)
    y = torch.tensor([[0, 1, 2, 1], [2, 0, 0, 0]])
    temps = torch.tensor([0.5, 1.0, 2.0])
    expected = torch.stack([LinearChainCRF(U * t, A, lengths=torch.tensor([4, 2])).log_prob(y) for t in temps])
    crf = LinearChainCRF(U * temps[:, None, None, None], A, lengths=torch.tensor([4, 2]), validate_args=True)
    assert crf.batch_shape == (3, 2)
    torch.testing.assert_close(crf.log_prob(y), expected)                            # fewer batch dims
    torch.testing.assert_close(crf.log_prob(y.expand(5, 3, 2, 4)), expected.expand(5, 3, 2))  # a sample dim
    torch.testing.assert_close(crf.log_prob(y[:1]), crf.log_prob(y[:1].expand(3, 2, 4)))  # a size-1 dim
    bad = y.clone()
    bad[1, 1] = 3
    with pytest.raises(EvidenceError, match=r"label 3 at index \[0, 1, 1\] is outside the label set 0..2"):
        crf.log_prob(bad)
    bad[1, 1], bad[1, 3] = 0, 7  # padding of a length-2 sequence may hold anything
    torch.testing.assert_close(crf.log_prob(bad), crf.log_prob(y))
    for shape in [(4, 4), (3, 3, 4)]:
        with pytest.raises(EvidenceError, match=rf"labels of shape {re.escape(str(shape))} do not broadcast with "
                                                r"the batch shape \(3, 2\)"):
            crf.log_prob(torch.zeros(shape, dtype=torch.long))


def test_an_observed_crf_site_under_vectorized_particles():
    """Trace_ELBO(vectorize_particles=True) adds a particle dim to a global latent scaling the unaries; the
    observed CRF site's labels [N, T] then meet a batch [P, N] (Pyro validates by default)."""
    from pyro.infer import Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    g = torch.Generator().manual_seed(1)
    U, A = torch.randn(2, 4, 3, generator=g), torch.randn(3, 3, generator=g)
    y = torch.tensor([[0, 1, 2, 1], [2, 0, 0, 0]])

    def model(y):
        temp = pyro.sample("temp", pyro.distributions.LogNormal(0.0, 1.0))
        with pyro.plate("seqs", 2):
            pyro.sample("y", LinearChainCRF(U * temp[..., None, None], A), obs=y)

    pyro.clear_param_store()
    guide = AutoNormal(model)
    with pyro.validation_enabled(True):
        loss = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1).loss(model, guide, y)
    assert math.isfinite(loss)
    pyro.clear_param_store()


# -- queries computed by autograd, under no_grad and inference_mode ------------------------------------
@pytest.mark.parametrize("requires_grad", [False, True])
def test_gradient_queries_under_inference_mode_equal_those_outside(requires_grad):
    """marginals, pairwise_marginals and entropy() are gradients of log Z: under torch.inference_mode() they
    raised 'element 0 of tensors does not require grad' (enable_grad does not lift inference mode)."""
    lengths = torch.tensor([4, 2])
    args, crf = _random_crf(3, 2, 4, 3, lengths=lengths, requires_grad=requires_grad)
    with torch.no_grad():
        want = (crf.marginals, crf.pairwise_marginals, crf.entropy())
    with torch.inference_mode():
        inner = LinearChainCRF(*[a.detach().clone() for a in args], lengths=lengths.clone())  # inference tensors
        for c in (crf, inner):
            got = (c.marginals, c.pairwise_marginals, c.entropy())
            for w, x in zip(want, got):
                torch.testing.assert_close(x, w)
    assert torch.all(want[0][1, 2:] == 0)  # padding


def _brute_force_marginals(u, A, s, e, n):
    """Unary and pairwise marginals of one sequence of length ``n`` by enumerating every labelling, from the
    scores written out (no forward algorithm): a differentiable reference."""
    L = u.shape[-1]
    ys = torch.tensor(list(itertools.product(range(L), repeat=n)), dtype=torch.long)
    steps = torch.arange(n)
    scores = s[ys[:, 0]] + u[steps, ys].sum(-1) + A[ys[:, :-1], ys[:, 1:]].sum(-1) + e[ys[:, -1]]
    p = torch.softmax(scores, dim=0)
    onehot = torch.nn.functional.one_hot(ys, L).to(p.dtype)  # labellings x n x L
    unary = torch.einsum("k,ktl->tl", p, onehot)
    pairwise = torch.einsum("k,kti,ktj->ij", p, onehot[:, :-1], onehot[:, 1:])
    return unary, pairwise


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_marginals_under_no_grad_are_plain_tensors_equal_to_the_differentiable_ones(mode):
    """Before, marginals / pairwise_marginals read the grad mode inside with_autograd's enable_grad: under
    no_grad or inference_mode they came back requiring grad, holding a double-backward graph."""
    lengths = torch.tensor([4, 2])
    args, crf = _random_crf(5, 2, 4, 3, lengths=lengths, requires_grad=True)
    want = (crf.marginals, crf.pairwise_marginals)
    assert all(w.requires_grad for w in want)
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode():
        got = (crf.marginals, crf.pairwise_marginals)
        head = CRFHead(3)  # parameters are leaves that require grad
        from_head = head(torch.randn(2, 4, 3)).marginals
    for g, w in zip(got, want):
        assert not g.requires_grad and g.grad_fn is None
        torch.testing.assert_close(g, w.detach(), rtol=0, atol=0)
    assert not from_head.requires_grad and from_head.grad_fn is None


def test_marginals_with_grad_enabled_are_differentiable_like_brute_force_enumeration():
    lengths = torch.tensor([3, 2])
    args, crf = _random_crf(6, 2, 3, 3, lengths=lengths, requires_grad=True)
    g = torch.Generator().manual_seed(7)
    w_unary, w_pair = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.double)  # batch x (T, L) and (L, L)
    loss = (w_unary * crf.marginals).sum() + (w_pair * crf.pairwise_marginals).sum()
    got = torch.autograd.grad(loss, args)
    u, A, s, e = args
    reference = 0
    for b, n in enumerate(lengths.tolist()):
        unary, pairwise = _brute_force_marginals(u[b], A, s, e, n)
        torch.testing.assert_close(crf.marginals[b, :n], unary)
        torch.testing.assert_close(crf.pairwise_marginals[b], pairwise)
        reference = reference + (w_unary[b, :n] * unary).sum() + (w_pair[b] * pairwise).sum()
    expected = torch.autograd.grad(reference, args)
    for a, x in zip(got, expected):
        torch.testing.assert_close(a, x)


@pytest.mark.parametrize("lengths", [
    torch.tensor([1.5, 3.0], dtype=torch.bfloat16),  # was truncated to [1, 3] silently
    torch.tensor([1.0, 3.0], dtype=torch.bfloat16),  # integer-valued floats are refused as for float32
    torch.tensor([1.5, 3.0], dtype=torch.float32),
    torch.tensor([1.0, 3.0], dtype=torch.float16),
    torch.tensor([True, True]),  # was read as lengths [1, 1]
    torch.tensor([1 + 0j, 3 + 0j]),
])
def test_lengths_of_a_non_integer_dtype_are_refused(lengths):
    with pytest.raises(ModelSpecError, match=re.escape(f"lengths must be integers in 0..3, got dtype {lengths.dtype}")):
        LinearChainCRF(torch.randn(2, 3, 4), torch.randn(4, 4), lengths=lengths)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_lengths_of_any_integer_dtype_are_taken(dtype):
    crf = LinearChainCRF(torch.randn(2, 3, 4), torch.randn(4, 4), lengths=torch.tensor([1, 3], dtype=dtype))
    assert crf.lengths.dtype == torch.long and crf.lengths.tolist() == [1, 3]


def test_numpy_potentials_labels_and_object_lengths_raise_named_errors():
    # before: AttributeError ('numpy.ndarray' has no attribute 'dim' / dtype 'is_floating_point') or a raw
    # TypeError from torch for an object array of lengths
    np = pytest.importorskip("numpy")
    u, tr = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 2)
    with pytest.raises(ModelSpecError, match="unary must be a torch.Tensor .* got ndarray"):
        LinearChainCRF(u.numpy(), tr)
    with pytest.raises(ModelSpecError, match="transition must be a torch.Tensor .* got ndarray"):
        LinearChainCRF(u, tr.numpy())
    with pytest.raises(ModelSpecError, match="lengths must be integers in 0..4, got ndarray of dtype object"):
        LinearChainCRF(u, tr, lengths=np.array([2, 3, 1], dtype=object))
    crf = LinearChainCRF(u, tr)
    labels = torch.randint(0, 2, (3, 4), generator=torch.Generator().manual_seed(1))
    for call in (crf.log_prob, crf.score):
        with pytest.raises(EvidenceError, match="labels must be a torch.Tensor .* got ndarray"):
            call(labels.numpy())
    assert LinearChainCRF(u, tr, lengths=np.array([2, 3, 1])).lengths.tolist() == [2, 3, 1]


def test_crf_head_repr_names_its_labels_and_boundary():
    """It was ``CRFHead()``: nothing told two heads apart."""
    assert repr(CRFHead(5)) == "CRFHead(num_labels=5, boundary=True)"
    assert repr(CRFHead(2, boundary=False)) == "CRFHead(num_labels=2, boundary=False)"
    assert "(head): CRFHead(num_labels=4, boundary=True)" in repr(torch.nn.ModuleDict({"head": CRFHead(4)}))


@pytest.mark.parametrize("lengths, first, index, count", [
    (torch.tensor([4, -2, 2]), -2, [1], 1),  # a negative length (0, an empty sequence, is taken)
    (torch.tensor([4, 3, 5]), 5, [2], 1),  # past T
    (torch.tensor([[4, 9], [-1, 2]]), 9, [0, 1], 2),  # the first in row-major order, of two
])
def test_a_length_outside_0_to_T_is_named_with_its_index(lengths, first, index, count):
    """Before, the message said "lengths must be integers in 1..4" and named neither the value nor its row."""
    u = torch.zeros(lengths.shape + (4, 2))
    message = f"lengths must be integers in 0..4, got {first} at index {index} ({count} of {lengths.numel()} outside)"
    with pytest.raises(ModelSpecError, match=re.escape(message)):
        LinearChainCRF(u, torch.zeros(2, 2), lengths=lengths, validate_args=True)
