"""Subclasses of :class:`LinearChainCRF` survive ``expand`` (and so Pyro's plates), as torch's distributions do."""

from __future__ import annotations

import pyro
import pytest
import torch

from hybridpgm.graphs.crf import LinearChainCRF

T, L = 4, 3


class _Marked(LinearChainCRF):
    """Adds a method only."""

    def describe(self):
        return "marked"


class _LabelSmoothed(LinearChainCRF):
    """``log_prob`` overridden: ``(1 - eps) log p(y) + eps *`` the summed mean log-marginal per step."""

    eps = 0.1

    def log_prob(self, value):
        smooth = self.marginals.clamp_min(1e-12).log().mean(-1).sum(-1)
        return (1 - self.eps) * super().log_prob(value) + self.eps * smooth


class _Tempered(LinearChainCRF):
    """Scores divided by a temperature: its own ``__init__``, so its own ``expand`` (torch's protocol)."""

    def __init__(self, unary, transition, temperature=2.0, validate_args=None):
        self.temperature = temperature
        super().__init__(unary / temperature, transition / temperature, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_Tempered, _instance)
        new.temperature = self.temperature
        return super().expand(batch_shape, _instance=new)


class _InitOnly(LinearChainCRF):
    def __init__(self, unary, transition):
        super().__init__(unary, transition)


def _potentials():
    g = torch.Generator().manual_seed(0)
    return torch.randn(T, L, generator=g), torch.randn(L, L, generator=g), torch.randint(0, L, (5, T), generator=g)


@pytest.mark.parametrize("cls", [LinearChainCRF, _LabelSmoothed])
def test_a_subclass_under_a_plate_gives_the_log_prob_of_an_explicitly_batched_instance(cls):
    """Before, ``expand`` built a plain :class:`LinearChainCRF`: under ``pyro.plate`` the trace held the base class,
    and an overridden ``log_prob`` was lost (-44.17 instead of -43.09)."""
    unary, transition, y = _potentials()

    def model():
        with pyro.plate("seqs", 5):
            pyro.sample("y", cls(unary, transition), obs=y)

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    assert type(trace.nodes["y"]["fn"]) is cls
    expected = cls(unary.expand(5, T, L), transition).log_prob(y).sum()
    torch.testing.assert_close(trace.nodes["y"]["log_prob_sum"], expected)


def test_expand_keeps_the_class_and_a_subclass_attribute():
    unary, transition, y = _potentials()
    marked = _Marked(unary, transition).expand([5])
    assert type(marked) is _Marked and marked.describe() == "marked" and marked.batch_shape == (5,)
    tempered = _Tempered(unary, transition, temperature=2.0, validate_args=True)
    expanded = tempered.expand([5])
    assert type(expanded) is _Tempered and expanded.temperature == 2.0 and expanded._validate_args
    assert expanded.batch_shape == (5,) and expanded.event_shape == (T,) and expanded.num_labels == L
    torch.testing.assert_close(expanded.log_prob(y), tempered.log_prob(y).expand(5))
    torch.testing.assert_close(expanded.unary[3], unary / 2.0)


def test_a_subclass_with_its_own_init_and_no_expand_is_refused_as_torch_refuses_it():
    unary, transition, _ = _potentials()
    with pytest.raises(NotImplementedError, match="_InitOnly"):
        _InitOnly(unary, transition).expand([5])


class _PathBonus(LinearChainCRF):
    """``score`` overridden: every labelling gets 1 more (a path feature a subclass adds)."""

    def score(self, value):
        return super().score(value) + 1.0


class _ShiftedPartition(LinearChainCRF):
    """``log_partition`` overridden: 5 added (a subclass's fixed normaliser term)."""

    @property
    def log_partition(self):
        return super().log_partition + 5.0


@pytest.mark.parametrize("cls, shift", [(_PathBonus, 1.0), (_ShiftedPartition, -5.0)])
def test_log_prob_uses_an_overridden_score_or_log_partition(cls, shift):
    """log p(y) = s(y) - log Z with the subclass's own ``score`` / ``log_partition``: a float32 log_prob summed
    in float64 from the private ``_score`` and forward recursion left both overrides out (a shift of 0)."""
    g = torch.Generator().manual_seed(0)
    unary, transition = torch.randn(2, T, L, generator=g), torch.randn(L, L, generator=g)
    y = torch.randint(0, L, (2, T), generator=g)
    base = LinearChainCRF(unary, transition).log_prob(y)
    crf = cls(unary, transition)
    got = crf.log_prob(y)
    torch.testing.assert_close(got, base + shift, rtol=0, atol=1e-5)
    torch.testing.assert_close(got, crf.score(y) - crf.log_partition, rtol=0, atol=0)
