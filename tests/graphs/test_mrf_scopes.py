"""A MarkovNet's scope indices follow every module move and survive the meta device
(hybridpgm/graphs/mrf_scopes.py)."""

import torch

from hybridpgm.graphs import MarkovNet


def _chain(n=5):
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({f"x{i}": 2 for i in range(n)})
    mrf.add_factors("pair", [[f"x{i}", f"x{i + 1}"] for i in range(n - 1)], torch.randn(n - 1, 2, 2, generator=g))
    mrf.add_factors("field", [[f"x{i}"] for i in range(n)], torch.nn.Parameter(torch.randn(n, 2, generator=g)))
    return mrf


def test_a_net_moved_to_meta_and_back_with_to_empty_answers_as_before_once_its_state_is_loaded():
    """Found by a review of carried items: the scope indices are non-persistent buffers, so after
    to("meta") and to_empty(device="cpu") they held uninitialised memory that load_state_dict does not fill
    (a raw IndexError, or a wrong log Z where the garbage happened to be in range)."""
    mrf = _chain()
    want = mrf.log_partition()
    moved = _chain().to("meta")
    assert all(t.is_meta for t in moved.buffers())
    moved = moved.to_empty(device="cpu")
    for fam in moved.families.values():  # the indices are rebuilt from the declaration, whatever to_empty left
        assert torch.equal(getattr(moved, fam["scope_key"]), getattr(mrf, fam["scope_key"]))
    moved.load_state_dict(mrf.state_dict())
    torch.testing.assert_close(moved.log_partition(), want, rtol=0, atol=0)


def test_moves_keep_the_indices_exact_and_on_the_nets_device():
    """A guard: .double() and .to() leave the long indices as they were (not cast to a float dtype)."""
    mrf = _chain().double().to("cpu")
    for fam in mrf.families.values():
        scope = getattr(mrf, fam["scope_key"])
        assert scope.dtype == torch.long and scope.device.type == "cpu"
    assert torch.equal(mrf._scope_0,
                       torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4]]))


def test_a_move_that_changes_nothing_rebuilds_no_index(monkeypatch):
    """Found by a review: every .to() or .float() rebuilt all scope indices from Python lists (1.1 ms on a
    32 x 32 grid for a move that changed nothing); only the indices a move replaced are rebuilt."""
    mrf = _chain()
    built = []
    real = type(mrf)._scope_tensor
    monkeypatch.setattr(type(mrf), "_scope_tensor", lambda self, *a: built.append(a) or real(self, *a))
    mrf.to("cpu").float().requires_grad_(False)
    assert built == []
    mrf.to_empty(device="cpu")
    assert len(built) == len(mrf.families)
