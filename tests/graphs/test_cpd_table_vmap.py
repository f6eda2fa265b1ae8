"""A :class:`~hybridpgm.graphs.cpd.Table` built inside :func:`torch.func.vmap` from batched probabilities is refused
with a :class:`~hybridpgm.errors.ConfigError` that says so and what to do instead
(hybridpgm/graphs/cpd_table_checks.py ``built_outside_vmap``).

Carried audit item: ``torch.func.vmap(lambda p: Table(p, ["A"]))(probs)`` raised torch's raw ``RuntimeError: vmap:
It looks like you're attempting to use a Tensor in some data-dependent control flow ...`` from deep inside the
table's checks.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs.cpd import Table

PROBS = torch.tensor([[[0.2, 0.8], [0.6, 0.4]], [[0.5, 0.5], [0.1, 0.9]], [[1.0, 0.0], [0.3, 0.7]]])
REFUSED = r"a table CPD cannot be built inside torch\.func\.vmap: its checks read the table on the host.*Build the " \
          r"tables outside vmap"


@pytest.mark.parametrize("call, what", [
    (lambda p: Table(p, ["A"]).log_table(), "Table"),
    (lambda p: Table(p, ["A"], learnable=False).log_table(), "Table"),
    (lambda p: Table.many([(p, ["A"])])[0].log_table(), "Table.many"),
])
def test_a_table_of_batched_probabilities_is_refused_naming_vmap(call, what):
    """Fails on the old code (torch's RuntimeError, not a ConfigError)."""
    with pytest.raises(ConfigError, match=rf"^{what}: {REFUSED}") as info:
        torch.func.vmap(call)(PROBS)
    assert isinstance(info.value.__cause__, RuntimeError) and "vmap" in str(info.value.__cause__)


def test_a_batched_prior_is_refused_naming_vmap():
    with pytest.raises(ConfigError, match=rf"^Table: {REFUSED}"):
        torch.func.vmap(lambda a: Table(PROBS[0], ["A"], prior=a).log_prior())(torch.tensor([1.0, 2.0]))


def test_a_table_of_plain_probabilities_inside_vmap_is_built_as_before():
    """Nothing is refused up front: the table's probabilities are not batched, only the data."""
    table = Table(PROBS[0], ["A"])
    scale = torch.tensor([1.0, 2.0, 3.0])
    got = torch.func.vmap(lambda s: Table(PROBS[0], ["A"]).log_table()[0, 1] * s)(scale)
    assert torch.equal(got, table.log_table()[0, 1] * scale)


def test_a_malformed_table_inside_vmap_keeps_its_own_error():
    """A problem found on plain probabilities is reported as before (when the table is used), not as a vmap error."""
    bad = torch.tensor([[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(Exception, match="sums to 1.1") as info:
        torch.func.vmap(lambda s: Table(bad, ["A"]).log_table()[0, 0] * s)(torch.ones(2))
    assert not isinstance(info.value, ConfigError)
