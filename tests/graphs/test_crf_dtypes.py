"""Potentials of different dtypes meet in one dtype, and every output of the CRF has it.

Found by the API audit: float32 unary scores with a float64 transition gave a float64 ``log_partition`` and
``log_prob`` but float32 ``marginals`` (the gradient of log Z with respect to ``unary`` has ``unary``'s dtype),
and all-float16 potentials gave a float32 log Z next to float16 marginals.  The potentials are now widened
(exactly) to their promoted dtype, at least float32, at construction.
"""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import CRFHead, LinearChainCRF

OUTPUTS = ("log_partition", "log_prob", "score", "marginals", "pairwise_marginals", "entropy")


def _potentials(seed=0, B=2, T=5, L=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in [(B, T, L), (L, L), (L,), (L,)]]


def _outputs(crf, y):
    return {"log_partition": crf.log_partition, "log_prob": crf.log_prob(y), "score": crf.score(y),
            "marginals": crf.marginals, "pairwise_marginals": crf.pairwise_marginals, "entropy": crf.entropy()}


@pytest.mark.parametrize("dtypes, want", [
    ((torch.float32, torch.float64, torch.float64, torch.float64), torch.float64),
    ((torch.float64, torch.float32, torch.float32, torch.float32), torch.float64),
    ((torch.float32, torch.float32, torch.float64, torch.float32), torch.float64),
    ((torch.float16, torch.float32, torch.float32, torch.float32), torch.float32),
    ((torch.bfloat16, torch.float16, torch.float16, torch.float16), torch.float32),
    ((torch.float16,) * 4, torch.float32),
])
def test_every_output_has_the_promoted_dtype_and_the_widened_potentials_values(dtypes, want):
    params = [p.to(d) for p, d in zip(_potentials(), dtypes)]
    crf = LinearChainCRF(*params)
    # the reference: the same (already rounded) values, widened by hand to the one dtype
    reference = LinearChainCRF(*(p.to(want) for p in params))
    y = reference.sample((4,))
    assert {name: p.dtype for name, p in zip(("unary", "transition", "start", "end"),
                                              (crf.unary, crf.transition, crf.start, crf.end))} == dict.fromkeys(
        ("unary", "transition", "start", "end"), want)
    got, expected = _outputs(crf, y), _outputs(reference, y)
    assert {name: t.dtype for name, t in got.items()} == dict.fromkeys(OUTPUTS, want)
    for name in OUTPUTS:  # widening is exact: the very numbers of the widened potentials
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_gradients_reach_each_potential_in_its_own_dtype():
    """A guard (it passes on the code before the widening too): the widening is a differentiable cast, so a
    float32 network output gets a float32 gradient, :math:`\\mathrm{onehot}(y) - p(y_t)` of the widened CRF."""
    u, A, s, e = _potentials()
    u, A = u.float().requires_grad_(), A.requires_grad_()
    crf = LinearChainCRF(u, A, s, e)
    y = crf.sample()
    crf.log_prob(y).sum().backward()
    assert u.grad.dtype == torch.float32 and A.grad.dtype == torch.float64
    marginals = LinearChainCRF(u.detach().double(), A.detach(), s, e).marginals
    torch.testing.assert_close(u.grad, (torch.nn.functional.one_hot(y, 3).double() - marginals).float())


@pytest.mark.parametrize("head_dtype, unary_dtype", [(torch.float64, torch.float32), (torch.float32, torch.float64)])
def test_a_head_and_a_network_of_different_dtypes_give_one_dtype(head_dtype, unary_dtype):
    """``CRFHead(L).double()`` fed float32 scores (the network still in float32), and a float32 head fed
    float64 scores: every output is float64 (it was float32 marginals next to a float64 log Z and log_prob)."""
    torch.manual_seed(0)
    head = CRFHead(3).to(head_dtype)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    unary = torch.randn(2, 5, 3, dtype=unary_dtype)
    crf = head(unary)
    reference = LinearChainCRF(unary.double(), *(p.double() for p in (head.transition, head.start, head.end)))
    y = reference.sample((3,))
    got = _outputs(crf, y)
    assert {name: t.dtype for name, t in got.items()} == dict.fromkeys(OUTPUTS, torch.float64)
    for name, t in _outputs(reference, y).items():
        torch.testing.assert_close(got[name], t, rtol=0, atol=0, msg=name)


NOT_SCORES = [(torch.bool, "a mask of allowed labels is not a score"), (torch.int64, "integers would be widened"),
              (torch.int32, "integers would be widened"), (torch.uint8, "integers would be widened"),
              (torch.complex64, "log-potentials are real"), (torch.complex128, "log-potentials are real")]


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("dtype, why", NOT_SCORES)
@pytest.mark.parametrize("position", range(4))
def test_a_potential_that_is_not_floating_point_is_refused_by_name_and_dtype(position, dtype, why, validate):
    """Found by the CRF audit (finding 2): complex potentials were accepted and every query then raised torch's
    ``NotImplementedError`` (clamp is not supported for complex types); bool and integer ones were silently
    widened to float32 (True read as a score of 1, an int64 past 2**24 rounded).  Now each is refused at
    construction, with validation on or off (a dtype is no value read), naming the tensor and its dtype."""
    name = ("unary", "transition", "start", "end")[position]
    params = [p.float() for p in _potentials()]
    params[position] = params[position].round().to(dtype)
    with pytest.raises(ModelSpecError, match=f"LinearChainCRF: {name} log-potentials must be real floating-point "
                                             f"scores, got dtype {dtype} \\({why}"):
        LinearChainCRF(*params, validate_args=validate)


def test_a_head_or_its_network_of_a_non_floating_dtype_is_refused_by_name():
    """:class:`CRFHead` builds the CRF: a unary of integers (``one_hot`` of the symbols, a ``long`` network) and a
    head moved to a complex dtype are refused naming the tensor.  Before: the first was widened silently, the
    second raised torch's ``NotImplementedError`` at the first query."""
    head, symbols = CRFHead(3), torch.tensor([[0, 2, 1, 1]])
    with pytest.raises(ModelSpecError, match="unary log-potentials .* got dtype torch.int64"):
        head(torch.nn.functional.one_hot(symbols, 3))
    assert head(torch.nn.functional.one_hot(symbols, 3).float()).log_partition.dtype == torch.float32
    with pytest.warns(UserWarning, match="Complex modules"):  # torch's own, on moving a module to complex
        complex_head = CRFHead(3).to(torch.complex64)
    with pytest.raises(ModelSpecError, match="transition log-potentials .* got dtype torch.complex64"):
        complex_head(torch.randn(1, 4, 3))
