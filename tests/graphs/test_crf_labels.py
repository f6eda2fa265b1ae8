"""Labels given to :class:`~hybridpgm.graphs.LinearChainCRF` (:mod:`hybridpgm.graphs.crf_labels`): the label-range
check with validation off, labels on another device, and the places where values cannot be read."""

import warnings

import pytest
import torch

from hybridpgm.errors import DeviceError, EvidenceError
from hybridpgm.graphs import CRFHead, LinearChainCRF
from hybridpgm.train.deferred_checks import deferring_checks

#: the ways the host reads a tensor's values (each a device synchronisation on CUDA)
_READS = ("item", "tolist", "__float__", "__bool__", "__int__", "__index__", "cpu", "numpy")


def _crf(validate_args=False, lengths=None):
    g = torch.Generator().manual_seed(0)
    return LinearChainCRF(torch.randn(2, 3, 2, generator=g), torch.randn(2, 2, generator=g), lengths=lengths,
                          validate_args=validate_args)


@pytest.mark.parametrize("bad", [2, 7, -1, -2])
def test_a_label_outside_the_label_set_is_named_with_validation_off(bad):
    """Validation off: torch's raw ``RuntimeError: index 2 is out of bounds for dimension 1 with size 2`` (or the
    gather's error for -1, -2) before; now the ``EvidenceError`` of validation on, naming the label and index."""
    y = torch.tensor([[0, 1, 0], [0, bad, 1]])
    for crf in (_crf(False), _crf(True)):
        with pytest.raises(EvidenceError, match=rf"label {bad} at index \[1, 1\] is outside the label set 0..1"):
            crf.log_prob(y)
        with pytest.raises(EvidenceError, match=rf"label {bad} at index \[1, 1\]"):
            crf.score(y)


@pytest.mark.parametrize("validate", [True, False])
def test_complex_labels_are_named(validate):
    """torch's raw ``NotImplementedError: "lt_cpu" not implemented for 'ComplexFloat'`` before."""
    with pytest.raises(EvidenceError, match="labels must be integers, got dtype torch.complex64"):
        _crf(validate).log_prob(torch.zeros(2, 3, dtype=torch.complex64))


def test_padding_may_still_hold_anything_with_validation_off():
    """Guard (right before and after): the range check covers positions within a sequence's length only."""
    crf = _crf(False, lengths=torch.tensor([3, 1]))
    padded = crf.log_prob(torch.tensor([[0, 1, 0], [1, 9, -5]]))
    torch.testing.assert_close(padded, crf.log_prob(torch.tensor([[0, 1, 0], [1, 0, 0]])), rtol=0, atol=0)


def test_labels_on_another_device_raise_device_error_naming_both():
    """``meta`` stands in for a second device: torch's raw error from ``broadcast_tensors`` (validation on) or the
    gather (off) before."""
    y = torch.zeros(2, 3, dtype=torch.long, device="meta")
    for validate in (True, False):
        with pytest.raises(DeviceError, match="labels are on device meta, the CRF's potentials on cpu"):
            _crf(validate).log_prob(y)


def test_values_are_readable_only_in_plain_eager_code_with_values():
    """:func:`values_readable` is ``False`` under ``vmap``, ``torch.compile`` tracing and on ``meta``."""
    from hybridpgm.graphs.crf_labels import values_readable  # new: the other tests run on the old code

    seen = []
    x = torch.ones(3)
    seen.append(values_readable(x))
    seen.append(values_readable(torch.ones(3, device="meta")))
    torch.func.vmap(lambda v: seen.append(values_readable(v)) or v)(torch.ones(2, 3))

    def compiled(v):
        seen.append(values_readable(v))
        return v + 1

    previous = torch.distributions.Distribution._validate_args
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dynamo's note on the side effect (the list)
            torch.compile(compiled, backend="eager")(x)
    finally:  # torch's first compile in a process sets torch.distributions' default validation off
        torch.distributions.Distribution.set_default_validate_args(previous)
    assert seen == [True, False, False, False]


def test_log_prob_with_validation_off_still_runs_under_vmap_and_export():
    """Guard (right before and after): the always-on range check is skipped where values cannot be read, so the
    documented ``validate_args=False`` uses keep working: ``vmap`` of ``log_prob`` equals a loop, and
    ``torch.export`` of a ``CRFHead`` loss exports without a data-dependent guard and matches eager."""
    g = torch.Generator().manual_seed(1)
    unary, A = torch.randn(3, 2, 5, 4, generator=g), torch.randn(4, 4, generator=g)
    y = torch.randint(0, 4, (3, 2, 5), generator=g)
    batched = torch.func.vmap(lambda u, yy: LinearChainCRF(u, A, validate_args=False).log_prob(yy))(unary, y)
    loop = torch.stack([LinearChainCRF(u, A, validate_args=False).log_prob(yy) for u, yy in zip(unary, y)])
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-6)

    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = CRFHead(4)

        def forward(self, u, labels):
            return self.head(u).log_prob(labels)

    loss = Loss()
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        exported = torch.export.export(loss, (unary[0], y[0]))
        torch.testing.assert_close(exported.module()(unary[1], y[1]), loss(unary[1], y[1]), rtol=0, atol=1e-6)
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)


def test_inside_a_training_step_the_range_check_waits_and_the_labels_are_scored_clamped():
    """Validation off inside :func:`~hybridpgm.train.deferred_checks.deferring_checks` (``fit``'s step): the range
    check is one deferred flag, the labels are scored clamped into ``0..L-1`` meanwhile (torch's raw
    ``RuntimeError: index 7 is out of bounds`` from the gather before; on CUDA a device-side assert), and the flag's
    error names the label and its index as validation on does."""
    crf = _crf(False)
    y = torch.tensor([[0, 1, 0], [0, 7, -3]])
    with deferring_checks() as pending:
        log_p = crf.log_prob(y)
    torch.testing.assert_close(log_p, crf.log_prob(y.clamp(0, 1)), rtol=0, atol=0)
    assert len(pending.flags) == 1 and not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(EvidenceError, match=r"label 7 at index \[1, 1\] is outside the label set 0..1"):
        pending.raise_first_failure()


def test_the_range_check_reads_nothing_inside_a_training_step(monkeypatch):
    """Inside ``fit``'s step ``log_prob`` with validation off reads no value on the host: its range check is one
    flag for the step's one read (before: no check at all, no flag; an always-on check that read ``aminmax`` on the
    host read ``__int__`` and ``__bool__`` here, breaking ``fit``'s one synchronisation per step); in-range labels
    pass it, the padding holding anything."""
    crf = _crf(False, lengths=torch.tensor([3, 1]))
    reads = []
    for method in _READS:
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _o=original, _m=method, **k: reads.append(_m)
                            or _o(self, *a, **k))
    with deferring_checks() as pending:
        crf.log_prob(torch.tensor([[0, 1, 0], [1, 9, -5]]))
    assert reads == []
    monkeypatch.undo()
    assert len(pending.flags) == 1 and bool(pending.all_passed(torch.device("cpu")))


def test_fit_raises_the_label_error_before_any_update_with_validation_off(monkeypatch):
    """``fit`` of a CRF tagger with validation off and a label outside ``0..L-1``: the step raises the named
    ``EvidenceError`` at its one host read and leaves the parameters as they were (torch's raw ``RuntimeError`` from
    the gather before)."""
    import hybridpgm
    from hybridpgm.infer import CRFLikelihood
    from hybridpgm.recipes.models import CRFTagger

    monkeypatch.setattr(torch.distributions.Distribution, "_validate_args", False)
    torch.manual_seed(0)
    tagger = CRFTagger(10, 4, hidden=8)
    x, y = torch.randint(0, 10, (16, 7)), torch.randint(0, 4, (16, 7))
    y[:, 3] = 4  # in every row: the index is [0, 3] whatever the batch order
    lengths = torch.full((16,), 7)
    before = [p.detach().clone() for p in tagger.parameters()]
    with pytest.raises(EvidenceError, match=r"label 4 at index \[0, 3\] is outside the label set 0..3"):
        hybridpgm.fit(CRFLikelihood(tagger), (x, y, lengths), batch_size=8, epochs=1, progress=False, seed=0)
    assert all(torch.equal(a, p) for a, p in zip(before, tagger.parameters()))


@pytest.mark.parametrize("validate", [True, False])
def test_float_labels_must_be_integers_in_the_padding_too(validate):
    """:meth:`LinearChainCRF.score`'s docstring now says so; the behaviour itself is a guard (right before and
    after): padding is not scored, but float labels must be integer-valued at every position, padding included;
    integer-valued float labels score as long ones."""
    crf = _crf(validate, lengths=torch.tensor([3, 1]))
    with pytest.raises(EvidenceError, match=r"labels must be integers \(finite, integer-valued\)"):
        crf.score(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.5, 0.0]]))
    torch.testing.assert_close(crf.score(torch.tensor([[0.0, 1.0, 0.0], [1.0, 9.0, 0.0]])),
                               crf.score(torch.tensor([[0, 1, 0], [1, 0, 0]])), rtol=0, atol=0)
    assert "must still be integers" in LinearChainCRF.score.__doc__
