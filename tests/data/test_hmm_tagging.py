import inspect
import itertools

import pytest
import torch

from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm, sample_hmm
from hybridpgm.errors import DataError
from tests import generator_contract as contract


def test_samples_are_padded_with_zeros_past_their_lengths():
    g = torch.Generator().manual_seed(0)
    hmm = random_hmm(3, 5, generator=g)
    x, y, lengths = sample_hmm(hmm, 40, 2, 9, generator=g)
    assert x.shape == y.shape == (40, 9) and lengths.shape == (40,)
    assert int(lengths.min()) >= 2 and int(lengths.max()) <= 9
    pad = torch.arange(9) >= lengths[:, None]
    assert not x[pad].any() and not y[pad].any()
    assert int(x.max()) < 5 and int(y.max()) < 3


def test_posterior_crf_equals_the_brute_force_hmm_posterior():
    """p(y | x) = p(x, y) / sum_y' p(x, y') by enumerating every label sequence."""
    g = torch.Generator().manual_seed(1)
    log_pi, log_a, log_b = hmm = random_hmm(2, 3, generator=g)
    x = torch.tensor([[2, 0, 1]])
    crf = hmm_posterior(hmm, x, torch.tensor([3]))

    def log_joint(labels):
        total = log_pi[labels[0]] + log_b[labels[0], x[0, 0]]
        for t in range(1, 3):
            total = total + log_a[labels[t - 1], labels[t]] + log_b[labels[t], x[0, t]]
        return total

    paths = list(itertools.product(range(2), repeat=3))
    joint = torch.stack([log_joint(p) for p in paths])
    for path, lj in zip(paths, joint):
        exact = lj - torch.logsumexp(joint, 0)
        assert float(crf.log_prob(torch.tensor([path]))) == pytest.approx(float(exact), abs=1e-5)


def test_bad_sizes_name_the_numbers():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(DataError, match="1 and 4"):
        random_hmm(1, 4, generator=g)
    with pytest.raises(DataError, match="5 and 3"):
        sample_hmm(random_hmm(2, 2, generator=g), 3, 5, 3, generator=g)


@pytest.mark.parametrize("symbol", [7, 4, -1])
def test_a_symbol_outside_the_vocabulary_within_the_lengths_is_named(symbol):
    """Before, a raw IndexError from the indexing log_B.T[x] (and -1 silently read the last symbol)."""
    hmm = random_hmm(3, 4, generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[0, 1, 2], [0, 1, symbol]])
    with pytest.raises(DataError, match=rf"x holds symbol {symbol} at index \[1, 2\], outside the HMM's symbols "
                                        r"0\.\.3 \(V = 4\)"):
        hmm_posterior(hmm, x, torch.tensor([3, 3]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_symbols_of_a_non_integer_dtype_are_refused_naming_it(dtype):
    hmm = random_hmm(3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=rf"x must hold integer symbols 0\.\.3 \(V = 4\), got dtype {dtype}"):
        hmm_posterior(hmm, torch.tensor([[0, 1, 1]]).to(dtype), torch.tensor([3]))


def test_the_padding_past_the_lengths_may_hold_anything():
    g = torch.Generator().manual_seed(2)
    hmm = random_hmm(3, 4, generator=g)
    x, y, lengths = sample_hmm(hmm, 6, 1, 5, generator=g)
    pad = torch.arange(5) >= lengths[:, None]
    assert pad.any()
    garbage = torch.where(pad, torch.tensor([-1, 7, 100, 4, -5]).expand(6, 5), x)
    clean, dirty = hmm_posterior(hmm, x, lengths), hmm_posterior(hmm, garbage, lengths)
    torch.testing.assert_close(dirty.log_prob(y), clean.log_prob(y))
    torch.testing.assert_close(dirty.marginals, clean.marginals)


def test_lengths_that_do_not_match_the_batch_are_named():
    hmm = random_hmm(3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"lengths of shape \(3,\) do not broadcast with the batch shape of x \(2,\)"):
        hmm_posterior(hmm, torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 2, 3]))


def test_lengths_none_means_every_sequence_has_the_full_length():
    """lengths=None reached torch.as_tensor(None): a raw RuntimeError 'Could not infer dtype of NoneType'."""
    g = torch.Generator().manual_seed(0)
    hmm = random_hmm(3, 4, generator=g)
    x, _, _ = sample_hmm(hmm, 5, 4, 4, generator=g)
    full = hmm_posterior(hmm, x, torch.full((5,), 4))
    for crf in (hmm_posterior(hmm, x, None), hmm_posterior(hmm, x)):
        assert crf.batch_shape == (5,) and crf.lengths.tolist() == [4] * 5
        torch.testing.assert_close(crf.log_partition, full.log_partition)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8, torch.uint16, torch.uint32,
                                   torch.uint64])
def test_symbols_of_every_integer_dtype_give_int64s_posterior(dtype):
    """Before, log_B.T[x] indexed with the caller's dtype: int8/int16 raised a raw IndexError, and uint8 was read
    as a boolean mask (a raw IndexError, or a wrong-shaped selection where N = V and T = L)."""
    hmm = random_hmm(4, 4, generator=torch.Generator().manual_seed(1))
    x = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 1, 1], [2, 0, 3, 1]])  # N = V = 4, T = L = 4
    lengths = torch.tensor([4, 3, 4, 2])
    ref = hmm_posterior(hmm, x, lengths)
    got = hmm_posterior(hmm, x.to(dtype), lengths)
    assert got.batch_shape == ref.batch_shape == (4,)
    torch.testing.assert_close(got.log_partition, ref.log_partition, rtol=0, atol=0)
    torch.testing.assert_close(got.marginals, ref.marginals, rtol=0, atol=0)


def _bad_hmms():
    log_pi, log_a, log_b = random_hmm(3, 5, generator=torch.Generator().manual_seed(0))
    return {
        "rows of log_A shifted": ((log_pi, log_a + torch.tensor([[0.0], [2.0], [-3.0]]), log_b),
                                  r"log_A \(shape \(3, 3\), torch.float32\).*largest \|logsumexp\| of its rows is 3\b"),
        "log_B shifted": ((log_pi, log_a, log_b + 1), r"log_B \(shape \(3, 5\).*rows is 1\b"),
        "log_pi shifted": ((log_pi + 0.5, log_a, log_b), r"log_pi \(shape \(3,\).*rows is 0.5\b"),
        "probabilities": ((log_pi.exp(), log_a.exp(), log_b.exp()), r"log_pi \(shape \(3,\).*probabilities\?"),
        "probabilities in B only": ((log_pi, log_a, log_b.exp()), r"log_B \(shape \(3, 5\).*probabilities\?"),
        "NaN in log_A": ((log_pi, log_a.masked_fill(torch.eye(3, dtype=torch.bool), float("nan")), log_b),
                         r"log_A \(shape \(3, 3\).*rows is nan"),
        "transposed log_B": ((log_pi, log_a, log_b.T.contiguous()), r"log_B has shape \(5, 3\), expected \(3, V\).*"
                                                                     r"transposed"),
        "log_pi of 4 labels": ((torch.zeros(4).log_softmax(0), log_a, log_b),
                               r"log_pi has shape \(4,\), expected \(3,\)"),
        "integer log_A": ((log_pi, log_a.long(), log_b), r"log_A has dtype torch.int64"),
        "two tables": ((log_pi, log_a), r"three tensors.*a tuple of 2"),
    }


@pytest.mark.parametrize("case", list(_bad_hmms()))
@pytest.mark.parametrize("caller", ["sample_hmm", "hmm_posterior"])
def test_a_bad_hmm_is_refused_naming_the_table_its_shape_and_its_logsumexp(case, caller):
    """Before, unnormalised tables (or probabilities) were accepted silently, sample_hmm renormalising them and
    hmm_posterior using the raw scores (not the generating HMM's posterior); wrong shapes met raw torch errors or
    were accepted (a transposed log_B in sample_hmm)."""
    hmm, match = _bad_hmms()[case]
    with pytest.raises(DataError, match=rf"{caller}: the HMM.*{match}" if "three" not in match else match):
        if caller == "sample_hmm":
            sample_hmm(hmm, 50, 2, 3, generator=torch.Generator().manual_seed(0))
        else:
            hmm_posterior(hmm, torch.zeros(2, 3, dtype=torch.long))


def test_a_normalised_hmm_passes_in_float64_and_with_impossible_entries():
    log_pi, log_a, log_b = random_hmm(3, 5, generator=torch.Generator().manual_seed(0))
    log_b = log_b.clone()
    log_b[0, 0] = float("-inf")  # probability 0: allowed once the row is renormalised
    log_b = log_b.log_softmax(-1)
    for hmm in [(log_pi, log_a, log_b), tuple(t.double() for t in (log_pi, log_a, log_b))]:
        x, y, lengths = sample_hmm(hmm, 20, 2, 4, generator=torch.Generator().manual_seed(3))
        assert bool(torch.isfinite(hmm_posterior(hmm, x, lengths).log_prob(y)).all())


@pytest.mark.parametrize("caller", ["random_hmm", "sample_hmm"])
def test_the_generator_contract(caller):
    """Found by an audit of the samplers: ``random_hmm(3, 4, 3)`` and ``sample_hmm(hmm, 5, 2, 6, 3)`` (a seed for
    the generator) ended in torch's raw TypeError."""
    hmm = random_hmm(3, 4, generator=torch.Generator().manual_seed(0))
    call = ((lambda **kw: random_hmm(3, 4, **kw)) if caller == "random_hmm" else
            (lambda **kw: sample_hmm(hmm, 5, 2, 6, **kw)))
    contract.assert_generator_contract(call, f"{caller} generator")


@pytest.mark.parametrize("caller", ["random_hmm", "sample_hmm"])
def test_the_generator_is_keyword_only_and_optional_as_every_samplers(caller):
    """Found by an API audit: both took the generator as a required positional argument, where every other sampler
    of the package takes ``generator=None`` by keyword (``random_hmm(3, 4)`` was a TypeError).  The old positional
    call still answers, the same draws, with a FutureWarning for one release."""
    func = random_hmm if caller == "random_hmm" else sample_hmm
    param = inspect.signature(func).parameters["generator"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    hmm = random_hmm(3, 4, generator=torch.Generator().manual_seed(0))
    args = (3, 4) if caller == "random_hmm" else (hmm, 5, 2, 6)
    with pytest.warns(FutureWarning, match=rf"^{caller}: pass generator= by keyword"):
        old = func(*args, torch.Generator().manual_seed(1))
    new = func(*args, generator=torch.Generator().manual_seed(1))
    assert len(old) == len(new) == 3 and all(torch.equal(a, b) for a, b in zip(old, new))
    torch.manual_seed(2)
    default = func(*args)  # no generator: torch's global stream
    torch.manual_seed(2)
    assert all(torch.equal(a, b) for a, b in zip(default, func(*args, generator=None)))
