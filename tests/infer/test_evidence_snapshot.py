"""What an evidence table was built from (hybridpgm/infer/evidence_snapshot.py): for a network in shared memory,
the values it was built from, taken before the build reads the CPDs and carried through a pickle.

Another process's write is played by a second tensor on the storage of the network's table (its own version
counter), as in tests/infer/test_bn_factors.py."""

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import exact


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
