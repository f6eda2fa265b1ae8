"""A MarkovNet's fixed tables are its own buffers (hybridpgm/graphs/mrf_tables.py): copied from the caller's
tensor, one buffer for one table given twice, temporaries kept apart, a requires-grad table the caller's."""

import torch

from hybridpgm.graphs import MarkovNet


def test_a_tensor_table_is_copied_so_loading_leaves_the_callers_tensor_alone():
    """A fixed table is the net's own buffer: load_state_dict writes into it, not into the tensor the caller
    declared (which other code may hold), and a table expanded over the factors (one memory location for all)
    loads and reloads."""
    t = torch.zeros(2, 3)
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], t)
    other = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    mrf.load_state_dict(other.state_dict())
    assert torch.equal(t, torch.zeros(2, 3))
    assert torch.equal(mrf.tables()["ab"], other.tables()["ab"])

    shared = torch.randn(2, 2).expand(3, 2, 2)
    grid = MarkovNet({f"x{i}": 2 for i in range(4)})
    grid.add_factors("pair", [["x0", "x1"], ["x1", "x2"], ["x2", "x3"]], shared)
    grid.load_state_dict(grid.state_dict())
    assert torch.equal(grid.tables()["pair"].reshape(3, 2, 2), shared)


def test_a_table_given_to_two_factors_stays_one_buffer_apart_from_the_callers_tensor():
    field = torch.randn(2)
    mrf = MarkovNet({"a": 2, "c": 2}).add_factor("a", ["a"], field).add_factor("c", ["c"], field)
    tables = [b for n, b in mrf.named_buffers(remove_duplicate=False) if n.startswith("table_potentials.")]
    assert len(tables) == 2 and tables[0] is tables[1] and tables[0] is not field
    changed = field.clone()
    changed[0] += 1.0  # another tensor, or the same one changed in between, gets its own copy
    mrf.add_factor("a2", ["a"], changed)
    assert mrf.table_potentials._buffers["a2"] is not tables[0]


def test_equal_temporary_tables_stay_apart_and_a_requires_grad_table_is_the_callers():
    """Two tables declared from temporaries (whose ids CPython reuses) are two buffers, so loading different
    tables into them gives the right model; a table that requires grad is registered as it is, so the caller's
    optimiser changes the model (and the net deep-copies)."""
    import copy

    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.zeros(2, 2)).add_factor("bc", ["b", "c"], torch.zeros(2, 2))
    assert mrf.table_potentials.ab is not mrf.table_potentials.bc
    ab, bc = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, -3.0], [-3.0, 0.0]])
    mrf.load_state_dict({"table_potentials.ab": ab, "table_potentials.bc": bc})
    brute = torch.logsumexp((ab[:, :, None] + bc[None, :, :]).reshape(-1), 0)
    assert torch.allclose(mrf.log_partition(), brute, atol=1e-5)

    w = torch.zeros(2, 2, requires_grad=True)
    net = MarkovNet({"a": 2, "b": 2}).add_factor("f", ["a", "b"], w)
    x = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([0, 1, 1])}
    optimizer = torch.optim.SGD([w], lr=0.5)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = -net.log_prob(x).mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[2] < losses[1] < losses[0]
    assert torch.equal(copy.deepcopy(net).tables()["f"].detach(), net.tables()["f"].detach())
