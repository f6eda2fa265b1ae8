"""``MarkovNet.marginals`` / ``log_partition`` with ``method="mean_field"`` under :func:`torch.func.vmap` over the
evidence (:mod:`hybridpgm.graphs.mrf_vmap`).

Found by an audit (carried): :class:`~hybridpgm.infer.MeanField` answers a ``vmap``'s rows as one batch, yet the
queries raised :class:`~hybridpgm.errors.ConfigError` under a ``vmap`` over their evidence: the compile read the
evidence checks of one row on the host (torch's "data-dependent control flow"), then wrote each row's evidence into
the unbatched mask of the cards in place.  Now the checks read every row at once and the mask is built out of
place: the rows are answered as the batch of the same evidence rows, which with ``tol=0`` is the loop's answer bit
for bit (with ``tol > 0`` the batch stops once every row passes, as :class:`~hybridpgm.infer.MeanField` does).
"""

import pytest
import torch
from torch.func import vmap

from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.graphs import MarkovNet


def _net():
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2, "d": 3})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=g))
    mrf.add_factor("bc", ["b", "c"], torch.randn(3, 2, generator=g))
    mrf.add_factor("cd", ["c", "d"], torch.randn(2, 3, generator=g))
    mrf.add_factor("da", ["d", "a"], torch.randn(3, 2, generator=g))
    return mrf.add_factor("u", ["b"], torch.randn(3, generator=g))


EVIDENCE = {"a": torch.tensor([0, 1, -1, 1]), "d": torch.tensor([2, -1, 0, 1])}


def _rows(e: dict, i: int) -> dict:
    return {k: v[i] for k, v in e.items()}


@pytest.mark.parametrize("tol", [0.0, None])
def test_mean_field_marginals_under_vmap_over_evidence_answer_the_batch_and_with_tol_0_the_loop(tol):
    """Fails before: ``ConfigError`` ("MarkovNet.marginals does not support torch.func.vmap")."""
    mrf, kw = _net(), ({} if tol is None else {"tol": tol})
    out = vmap(lambda e: mrf.marginals(method="mean_field", evidence=e, **kw))(EVIDENCE)
    batch = mrf.marginals(method="mean_field", evidence=EVIDENCE, **kw)
    loop = [mrf.marginals(method="mean_field", evidence=_rows(EVIDENCE, i), **kw) for i in range(4)]
    for v in mrf.cards:
        assert torch.equal(out[v], batch[v])
        if tol == 0.0:  # fixed sweeps: every row as it is alone
            assert torch.equal(out[v], torch.stack([m[v] for m in loop]))
    assert torch.equal(out["a"][:, 0], torch.tensor([1.0, 0.0, out["a"][2, 0].item(), 0.0]))  # the evidence holds


def test_mean_field_log_partition_under_vmap_over_float_evidence_with_nan():
    """Fails before: ``ConfigError``.  NaN (float evidence) leaves a row's variable unobserved, as outside vmap."""
    mrf = _net()
    ev = torch.tensor([0.0, float("nan"), 1.0])
    out = vmap(lambda e: mrf.log_partition(method="mean_field", evidence={"a": e}, tol=0))(ev)
    loop = torch.stack([mrf.log_partition(method="mean_field", evidence={"a": e}, tol=0) for e in ev])
    assert torch.equal(out, loop)


def test_a_bad_row_under_vmap_is_the_evidence_error_naming_the_variable_and_the_row():
    """Fails before: ``ConfigError`` (the vmap advice), not the error of the bad value."""
    mrf = _net()
    bad = r"evidence for 'a' has value\(s\) \[5\] outside 0\.\.1 \(the first in row 2\)"
    with pytest.raises(EvidenceError, match=bad):
        vmap(lambda e: mrf.marginals(method="mean_field", evidence={"a": e}))(torch.tensor([0, 1, 5]))
    with pytest.raises(EvidenceError, match=r"evidence for 'a' holds non-integer values \[0\.5\]"):
        vmap(lambda e: mrf.marginals(method="mean_field", evidence={"a": e}))(torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("method", ["exact", "bp"])
def test_the_other_methods_are_still_refused_by_name_under_vmap(method):
    """Guard: exact contraction and BP read more on the host; they keep the ``ConfigError`` (not torch's raw error
    from deeper in, which the evidence's former refusal hid)."""
    mrf = _net()
    with pytest.raises(ConfigError, match=r"MarkovNet\.marginals does not support torch\.func\.vmap"):
        vmap(lambda e: mrf.marginals(method=method, evidence={"a": e}))(EVIDENCE["a"])
    with pytest.raises(ConfigError, match=r"MarkovNet\.log_partition does not support torch\.func\.vmap"):
        vmap(lambda e: mrf.log_partition(method=method, evidence={"a": e}))(EVIDENCE["a"])


def test_outside_vmap_the_evidence_mask_and_its_errors_are_unchanged():
    """Guard: the mask built out of place is the one the in-place writes gave; the errors outside vmap as before."""
    mrf = _net()
    fg = mrf.factor_graph(EVIDENCE)
    want = (torch.arange(3) < torch.tensor([2, 3, 2, 3])[:, None]).expand(4, 4, 3).clone()
    for name, i in (("a", 0), ("d", 3)):
        for r, s in enumerate(EVIDENCE[name].tolist()):
            if s >= 0:
                want[r, i] &= torch.arange(3) == s
    assert torch.equal(fg.valid, want)
    bad = r"evidence for 'a' has value\(s\) \[5\] outside 0\.\.1 \(the first in row 1\)"
    with pytest.raises(EvidenceError, match=bad):
        mrf.marginals(method="mean_field", evidence={"a": torch.tensor([0, 5])})
