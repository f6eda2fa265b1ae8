"""What an evidence table was built from (hybridpgm/infer/evidence_snapshot.py): for a network in shared memory,
the values it was built from, taken before the build reads the CPDs and carried through a pickle.

Another process's write is played by a second tensor on the storage of the network's table (its own version
counter), as in tests/infer/test_bn_factors.py."""

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import exact
from hybridpgm.infer.bn_evidence import network_facts
from tests.reused_blocks import Blocks


def _shared_net():
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    bn.share_memory()
    return bn


def _write_from_another_process(bn):
    logits = bn.cpds["a"].logits
    alias = torch.empty(0).set_(logits.untyped_storage(), logits.storage_offset(), logits.shape, logits.stride())
    with torch.no_grad():
        alias.copy_(torch.tensor([0.9, 0.1]).log())


def test_a_write_while_the_table_is_built_is_seen(monkeypatch):
    """Found by a review: the value copies were taken after the build had read the CPDs, so a write by another
    process during the build counted as the built state and the table answered old values with no error."""
    bn = _shared_net()
    real = exact.posterior

    def posterior_after_a_write(*args, **kwargs):
        _write_from_another_process(bn)
        return real(*args, **kwargs)

    monkeypatch.setattr(exact, "posterior", posterior_after_a_write)
    table = bn.compile_evidence(["b"])
    monkeypatch.setattr(exact, "posterior", real)
    with pytest.raises(ConfigError, match="the network changed after its evidence table"):
        table.posterior("a", {"b": torch.tensor([1])})


def test_a_table_sent_on_carries_the_values_it_was_built_from():
    """Found by a review: a pickled table took its value copies when unpickled, so a write between the sender's
    pickle and the receiver's unpickle was the receiver's built state; the copies travel with the table now."""
    bn = _shared_net()
    table = bn.compile_evidence(["b"])
    state = table.__getstate__()
    _write_from_another_process(bn)
    received = object.__new__(type(table))
    received.__setstate__(state)
    with pytest.raises(ConfigError, match="the network changed after its evidence table"):
        received.posterior("a", {"b": torch.tensor([1])})


@pytest.mark.parametrize("child", ["table", "neural"])  # neural: the snapshot is rebased after the query's restore
def test_data_put_at_the_address_of_the_built_data_is_a_change(child):
    """Found by an audit: the snapshot keyed each tensor on its version counter and data pointer.  ``.data =`` moves
    no version counter and frees the old storage, so a second replacement allocated at the old address (CUDA's
    caching allocator does that at once; tests/reused_blocks.Blocks does it every time) matched the snapshot, and
    the table answered p(a | b = 1) = [0.3333, 0.6667] from the old network.  The kept snapshot holds the
    storages now."""
    torch.manual_seed(0)
    b = cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]) if child == "table" else \
        cpd.Neural(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)), ["a"], 2)
    bn, blocks = BayesNet().add("a", cpd.Table([0.8, 0.2])).add("b", b), Blocks(64)
    logits = bn.cpds["a"].logits
    logits.data = blocks.tensor(torch.tensor([0.8, 0.2]).log())
    table = bn.compile_evidence(["b"])
    table.posterior("a", {"b": torch.tensor([1])})
    network_facts(bn).tables.clear()  # the network's table cache held the storage too: the snapshot alone holds it
    logits.data = blocks.tensor(torch.tensor([0.5, 0.5]).log())  # frees the built storage
    logits.data = blocks.tensor(torch.tensor([0.1, 0.9]).log())  # (was put at its address)
    with pytest.raises(ConfigError, match="the network changed after its evidence table"):
        table.posterior("a", {"b": torch.tensor([1])})


def test_a_square_table_transposed_in_place_of_its_data_is_a_change():
    """Found by an audit: the snapshot keyed each tensor on its version, data pointer and dtype;
    ``logits.data = logits.t()`` (a square table) keeps all three, and the table answered for the table before the
    transpose, with no error.  The shape and strides are keyed too (hybridpgm.tensor_tracking.value_key)."""
    cycle = [[0.7, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]]  # its transpose is a table too
    bn = BayesNet().add("a", cpd.Table([0.5, 0.3, 0.2])).add("b", cpd.Table(cycle, ["a"]))
    table = bn.compile_evidence(["b"])
    table.posterior("a", {"b": torch.tensor([1])})
    logits = bn.cpds["b"].logits
    logits.data = logits.t()
    with pytest.raises(ConfigError, match="the network changed"):  # before: [[0.3030, 0.6364, 0.0606]]
        table.posterior("a", {"b": torch.tensor([1])})
