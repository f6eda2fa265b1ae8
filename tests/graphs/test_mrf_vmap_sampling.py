"""``MarkovNet.sample`` under :func:`torch.func.vmap` with ``randomness="different"``.

Found by an audit: exact sampling (``method="exact"``, or ``"auto"`` choosing it) failed inside torch, an in-place
write of the batched (per-row) draws into an unbatched buffer, and the failure was reported as the host-read
refusal of the other queries ("reads its evidence, values and tables on the host"), which says nothing about the
draws.  It now raises :class:`~hybridpgm.errors.ConfigError` naming ``MarkovNet.sample`` and the randomness mode,
and saying what to do instead; chromatic Gibbs, which runs there, draws per row as it should (guard).
"""

import pytest
import torch
from torch.func import vmap

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import MarkovNet


def _net():
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=g))
    return mrf.add_factor("bc", ["b", "c"], torch.randn(3, 2, generator=g))


@pytest.mark.parametrize("method", ["auto", "exact"])
def test_exact_sampling_under_vmap_with_different_randomness_is_refused_by_name(method):
    """Fails before: a ConfigError about host reads of evidence and tables (or torch's in-place error)."""
    mrf = _net()
    with pytest.raises(ConfigError, match=rf"MarkovNet\.sample: exact sampling \(method='{method}'\) does not run "
                                          r"under torch\.func\.vmap with randomness='different'.*num_sweeps"):
        vmap(lambda x: x + mrf.sample(4, method=method)["b"], randomness="different")(torch.arange(3))


def test_gibbs_under_vmap_with_different_randomness_draws_each_row_from_the_net():
    """Guard (passes before and after): the rows' chains differ, and each row's frequencies match the exact
    marginal within 5 standard errors (4000 draws per row)."""
    mrf = _net()
    torch.manual_seed(0)
    out = vmap(lambda x: mrf.sample(4000, num_sweeps=5)["b"] + 0 * x, randomness="different")(torch.arange(3))
    want = mrf.marginals()["b"]
    assert out.shape == (3, 4000) and not torch.equal(out[0], out[1])
    for row in out:
        freq = torch.bincount(row, minlength=3) / 4000.0
        assert torch.all((freq - want).abs() <= 5 * (want * (1 - want) / 4000).sqrt())


def test_exact_sampling_under_vmap_with_same_randomness_runs():
    """Guard: ``randomness="same"`` draws one set of samples, the same for every row, as documented by torch."""
    mrf = _net()
    out = vmap(lambda x: x * 0 + mrf.sample(8, method="exact")["b"], randomness="same")(torch.arange(3))
    assert out.shape == (3, 8) and torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
