"""Construction checks of :class:`~hybridpgm.graphs.LinearChainCRF` and :class:`~hybridpgm.graphs.CRFHead`:
devices of the potentials, ``expand`` to a batch shape, ``CRFHead(num_labels)``, and the documented ``support``
with ``lengths``."""

import itertools
import re

import numpy as np
import pytest
import torch

from hybridpgm.errors import DeviceError, ModelSpecError
from hybridpgm.graphs import CRFHead, LinearChainCRF


@pytest.mark.parametrize("name", ["transition", "start", "end"])
@pytest.mark.parametrize("validate", [True, False])
def test_potentials_on_another_device_than_unary_raise_device_error(name, validate):
    """``meta`` stands in for a GPU: torch's raw ``Tensor.item() cannot be called on meta tensors`` (validation
    on) or ``Tensor on device meta is not on the expected device cpu!`` (off) before."""
    args = dict(unary=torch.randn(2, 4, 3), transition=torch.zeros(3, 3), start=torch.zeros(3), end=torch.zeros(3))
    args[name] = args[name].to("meta")
    with pytest.raises(DeviceError, match=f"{name} is on device meta, unary on device cpu"):
        LinearChainCRF(**args, validate_args=validate)


def test_a_crf_head_on_another_device_names_the_head():
    """The audit's case: a ``CRFHead`` on one device, the network's scores on another."""
    with torch.device("meta"):
        head = CRFHead(3)
    with pytest.raises(DeviceError, match=r"transition is on device meta.*head\.to\('cpu'\)"):
        head(torch.randn(2, 4, 3))
    with pytest.raises(DeviceError, match="transition is on device cpu, unary on device meta"):
        CRFHead(3)(torch.randn(2, 4, 3, device="meta"))


def test_lengths_on_another_device_are_moved_to_unary():
    """Guard (right before and after): ``lengths`` may live elsewhere (CPU lengths are what
    ``pack_padded_sequence`` wants); they are copied to ``unary``'s device, not refused."""
    crf = LinearChainCRF(torch.randn(2, 4, 3, device="meta"), torch.zeros(3, 3, device="meta"),
                         lengths=torch.tensor([4, 2]), validate_args=False)
    assert crf.lengths.device.type == "meta"


@pytest.mark.parametrize("shape", [(3,), (4, 3), (1,), ()])
def test_expand_to_a_shape_it_does_not_broadcast_to_names_both_batch_shapes(shape):
    """torch's raw ``RuntimeError: The expanded size of the tensor (3) must match ...`` naming the transition's
    expanded shape before (for ``(1,)`` and ``()``: a CRF with a wrong batch shape, or torch's error)."""
    crf = LinearChainCRF(torch.randn(2, 3, 2), torch.randn(2, 2))
    message = f"LinearChainCRF.expand: batch_shape (2,) does not broadcast to {tuple(shape)}"
    with pytest.raises(ModelSpecError, match=re.escape(message)):
        crf.expand(shape)


def test_expand_to_a_wider_batch_shape_still_works():
    """Guard (right before and after): new leading dims and size-1 dims widened."""
    crf = LinearChainCRF(torch.randn(1, 3, 2), torch.randn(2, 2))
    y = torch.tensor([[0, 1, 1]])
    wide = crf.expand((4, 5))
    assert wide.batch_shape == (4, 5) and wide.unary.shape == (4, 5, 3, 2)
    torch.testing.assert_close(wide.log_prob(y), crf.log_prob(y).expand(4, 5), rtol=0, atol=0)


@pytest.mark.parametrize("num_labels", [0, -2, True, False, 2.0, "3", None])
def test_crf_head_refuses_a_num_labels_that_is_not_a_positive_integer(num_labels):
    """torch's ``RuntimeError`` (negative), a head of 0 labels or of one label (``True``), or a TypeError from
    ``torch.zeros`` before."""
    with pytest.raises(ModelSpecError, match=r"CRFHead num_labels must be a positive integer, got"):
        CRFHead(num_labels)


def test_crf_head_takes_integer_num_labels_of_any_integer_type():
    """Guard (right before and after): Python, NumPy and 0-d tensor integers give an ``L x L`` head."""
    for n in (3, np.int64(3), torch.tensor(3)):
        head = CRFHead(n)
        assert head.transition.shape == (3, 3) and head.start.shape == (3,)
        assert repr(head) == "CRFHead(num_labels=3, boundary=True)"


def test_support_ignores_lengths_as_documented():
    """Guard (right before and after) of the class docstring: ``support`` is ``0..L-1`` at every position; the
    probabilities sum to 1 over the sequences with 0 at the padding, and to ``L^(T-n)`` over the whole support."""
    g = torch.Generator().manual_seed(0)
    T, L, n = 3, 2, 1
    crf = LinearChainCRF(torch.randn(T, L, generator=g), torch.randn(L, L, generator=g), lengths=torch.tensor(n))
    everything = torch.tensor(list(itertools.product(range(L), repeat=T)))
    assert bool(crf.support.check(everything).all())
    assert not bool(crf.support.check(torch.tensor([1, -100, -100])))
    torch.testing.assert_close(crf.log_prob(everything).exp().sum(), torch.tensor(float(L ** (T - n))))
    canonical = everything[(everything[:, n:] == 0).all(-1)]
    torch.testing.assert_close(crf.log_prob(canonical).exp().sum(), torch.tensor(1.0))
    assert "L^{T-n}" in LinearChainCRF.__doc__ and "does not depend on the lengths" in LinearChainCRF.__doc__


def test_a_head_takes_validate_args_so_its_crf_can_be_vmapped():
    """The CRF's message under ``vmap`` says to build it with ``validate_args=False``: a head passes it on (before,
    ``head(u, validate_args=False)`` was a TypeError, and only torch's process-wide default could do it)."""
    from hybridpgm.graphs import CRFHead

    torch.manual_seed(0)
    head = CRFHead(3)
    u, y = torch.randn(5, 4, 3), torch.randint(0, 3, (5, 4))
    got = torch.func.vmap(lambda uu, yy: head(uu, validate_args=False).log_prob(yy))(u, y)
    torch.testing.assert_close(got, head(u).log_prob(y), rtol=0, atol=1e-6)
    assert head(u, validate_args=True)._validate_args and not head(u, validate_args=False)._validate_args
