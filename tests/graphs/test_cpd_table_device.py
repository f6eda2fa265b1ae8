"""Tables built with torch's default device set (:func:`torch.set_default_device`).

Before, every :class:`~hybridpgm.graphs.cpd.Table` built with the default device ``"meta"`` (from a list, a CPU
tensor that :func:`torch.as_tensor` moves there, :meth:`~hybridpgm.graphs.cpd.Table.uniform`,
:meth:`~hybridpgm.graphs.cpd.Table.random`, :meth:`~hybridpgm.graphs.cpd.Table.many`) failed inside its checks with
torch's raw ``RuntimeError: Tensor.item() cannot be called on meta tensors``; now the table holds the problem and
reports it, as any malformed table, when declared as a node (a :class:`~hybridpgm.errors.ModelSpecError` naming
the node and the meta device) or used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet
from hybridpgm.graphs.cpd import Table


@pytest.fixture
def default_meta():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


BUILDS = {
    "list": lambda: Table([0.3, 0.7]),
    "cpu tensor": lambda: Table(torch.tensor([0.3, 0.7], device="cpu")),
    "with prior": lambda: Table([0.3, 0.7], prior=2.0),
    "uniform": lambda: Table.uniform(2),
    "random": lambda: Table.random(2),
    "random alpha 2": lambda: Table.random(2, concentration=2.0),
    "random generator": lambda: Table.random(2, generator=torch.Generator().manual_seed(0)),
    "random generator alpha 2": lambda: Table.random(2, concentration=2.0, generator=torch.Generator().manual_seed(0)),
    "many": lambda: Table.many([([0.3, 0.7], ()), (torch.tensor([0.2, 0.8], device="cpu"), ())])[1],
}


@pytest.mark.parametrize("build", list(BUILDS))
def test_a_table_on_the_meta_default_device_is_refused_naming_the_node(default_meta, build):
    table = BUILDS[build]()
    assert table.logits.is_meta
    with pytest.raises(ModelSpecError, match="node 'b': table is on the meta device"):
        BayesNet().add("b", table)
    with pytest.raises(ModelSpecError, match="a Table not added to any network: table is on the meta device"):
        table.probs


@pytest.mark.parametrize("concentration", [1.0, 2.0])
def test_random_with_a_generator_draws_on_its_device_under_a_default_device(default_meta, concentration):
    """The draws are made with the (CPU) generator whatever the default device: it moves on as with no default
    device set (before: torch's raw error for the meta device; a CUDA default device put the draws, or the seed's
    draw, on the GPU, where torch refuses a CPU generator)."""
    g = torch.Generator().manual_seed(5)
    Table.random(3, [2], ["a"], concentration=concentration, generator=g)
    torch.set_default_device(None)
    want = torch.Generator().manual_seed(5)
    Table.random(3, [2], ["a"], concentration=concentration, generator=want)
    assert torch.equal(g.get_state(), want.get_state())
    assert not torch.equal(g.get_state(), torch.Generator().manual_seed(5).get_state())


def test_hybridpgm_imports_and_builds_under_a_meta_default_device():
    """Importing hybridpgm with the default device set leaves it set, and the declarations answer as above."""
    code = textwrap.dedent("""
        import torch
        torch.set_default_device("meta")
        import hybridpgm, hybridpgm.graphs, hybridpgm.data, hybridpgm.train
        from hybridpgm.errors import ModelSpecError
        from hybridpgm.graphs import BayesNet, MarkovNet
        from hybridpgm.graphs.cpd import Table
        assert torch.get_default_device().type == "meta"
        try:
            BayesNet().add("a", Table([0.5, 0.5]))
        except ModelSpecError as e:
            assert "meta device" in str(e)
        else:
            raise AssertionError("no error")
        try:
            MarkovNet({"a": 2}).add_factor("f", ["a"], torch.zeros(2))
        except ModelSpecError as e:
            assert "meta device" in str(e)
        else:
            raise AssertionError("no error")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "ok"
