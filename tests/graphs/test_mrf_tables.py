"""MarkovNet's table log-potentials are named by their factor (:mod:`hybridpgm.graphs.mrf_tables`).

Found by an audit: tables were the entries ``_pot_0``, ``_pot_1``, ... of the net (by declaration order), so the
factor's name was nowhere in ``named_parameters()`` or ``state_dict()``, and a state dict loaded into a net that
declared the same factors in another order put each table into another factor when the shapes agreed.
"""

import pytest
import torch
from pyro import poutine
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet


class _Unary(nn.Module):
    """A neural potential over one binary variable, from a context of two features."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def forward(self, context=None):
        return self.net(torch.ones(2) if context is None else context)


def _net(order, seed=0):
    """A net with a neural family first (so the table families' old indices skip it), a learnable table, a
    fixed one and a family, declared in ``order``."""
    torch.manual_seed(seed)
    declarations = {
        "n": lambda m: m.add_factor("n", ["c"], _Unary()),
        "ab": lambda m: m.add_factor("ab", ["a", "b"], nn.Parameter(torch.randn(2, 2))),
        "bc": lambda m: m.add_factor("bc", ["b", "c"], torch.randn(2, 2)),
        "pairs": lambda m: m.add_factors("pairs", [["a", "c"], ["c", "b"]], torch.randn(2, 2, 2)),
    }
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    for name in order:
        declarations[name](mrf)
    return mrf


ORDER = ["n", "ab", "bc", "pairs"]
VALUES = {"a": torch.tensor([0, 1, 1, 0]), "b": torch.tensor([1, 1, 0, 0]), "c": torch.tensor([0, 1, 0, 1])}


def _outputs(mrf):
    with torch.no_grad():
        return [mrf.score(VALUES), mrf.log_partition(), *mrf.tables().values()]


def test_tables_are_named_by_their_factor_in_parameters_state_dict_and_pyro():
    mrf = _net(ORDER)
    assert [n for n, _ in mrf.named_parameters()] == ["table_potentials.ab", "potentials.n.net.weight",
                                                      "potentials.n.net.bias"]
    assert list(mrf.state_dict()) == ["table_potentials.ab", "table_potentials.bc", "table_potentials.pairs",
                                      "potentials.n.net.weight", "potentials.n.net.bias"]
    # plain SVI: the names the param store sees are pyro.module's name + the state dict's
    trace = poutine.trace(poutine.block(mrf.model, hide_types=["sample"])).get_trace(VALUES)
    import pyro

    try:
        params = sorted(name for name, site in trace.nodes.items() if site["type"] == "param")
    finally:
        for name in [n for n in pyro.get_param_store().keys() if n.startswith("markov_net$$$")]:
            del pyro.get_param_store()[name]
    assert params == ["markov_net$$$potentials.n.net.bias", "markov_net$$$potentials.n.net.weight",
                      "markov_net$$$table_potentials.ab"]


def test_a_state_dict_loads_into_each_factor_whatever_the_order_of_declaration():
    """Failed before: the tables of 'ab' and 'bc' (both 2x2) were swapped."""
    source = _net(ORDER, seed=0)
    target = _net(["pairs", "bc", "n", "ab"], seed=1)
    target.load_state_dict(source.state_dict())
    want, got = source.tables(), target.tables()
    for name in ORDER:
        assert torch.equal(got[name], want[name]), name
    # log Z to float32 rounding: the contraction order follows the order of declaration
    torch.testing.assert_close(_outputs(target)[:2], _outputs(source)[:2])


def test_two_tables_of_one_shape_declared_in_the_other_order_keep_their_own_values():
    """Failed before without an error: the old entries ``_pot_0``/``_pot_1`` of 'ab' became 'bc''s and back."""
    ab, bc = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, -3.0], [-3.0, 0.0]])
    source = MarkovNet({"a": 2, "b": 2, "c": 2}).add_factor("ab", ["a", "b"], ab).add_factor("bc", ["b", "c"], bc)
    target = MarkovNet({"a": 2, "b": 2, "c": 2})
    target.add_factor("bc", ["b", "c"], torch.zeros(2, 2)).add_factor("ab", ["a", "b"], torch.zeros(2, 2))
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.tables()["ab"], source.tables()["ab"]) and torch.equal(target.tables()["bc"][0], bc)


def test_state_saved_with_the_old_pot_names_loads_by_declaration_order():
    """A state dict whose table of the i-th family (neural ones counted) is ``_pot_i``, as the code before
    wrote it, loads into the same declaration and gives identical outputs; ``net._pot_i`` still reads that
    table.  (On the old code this fails only where it reads today's names to build the old state.)"""
    source = _net(ORDER, seed=0)
    state = source.state_dict()
    legacy = {"_pot_1": state["table_potentials.ab"], "_pot_2": state["table_potentials.bc"],
              "_pot_3": state["table_potentials.pairs"],
              **{k: v for k, v in state.items() if k.startswith("potentials.")}}
    target = _net(ORDER, seed=1)
    target.load_state_dict(legacy)  # strict: every entry placed, none left over
    for a, b in zip(_outputs(target), _outputs(source)):
        assert torch.equal(a, b)
    assert source._pot_1 is source.table_potentials.ab and source._pot_2 is source.table_potentials.bc


def test_an_old_pot_entry_of_no_table_is_refused_by_a_strict_load():
    mrf = _net(ORDER)
    state = dict(mrf.state_dict())
    state["_pot_0"] = torch.zeros(2)  # family 0 is the neural one: no table was ever _pot_0
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\) in state_dict: \"_pot_0\""):
        mrf.load_state_dict(state)
    with pytest.raises(AttributeError, match="_pot_0"):
        mrf._pot_0


@pytest.mark.parametrize("name, key", [("type", "%74ype"), ("h.0", "h%2E0"), ("100%", "100%25"),
                                       ("training", "%74raining"), ("%74ype", "%2574ype"), ("to", "%74o")])
def test_a_factor_name_torch_would_refuse_is_escaped_one_to_one(name, key):
    mrf = MarkovNet({"a": 2}).add_factor(name, ["a"], torch.tensor([0.5, -0.5]))
    mrf.add_factor("other", ["a"], nn.Parameter(torch.zeros(2)))
    assert list(mrf.state_dict()) == ["table_potentials.other", "table_potentials." + key]
    copy = MarkovNet({"a": 2}).add_factor("other", ["a"], nn.Parameter(torch.ones(2)))
    copy.add_factor(name, ["a"], torch.zeros(2))
    copy.load_state_dict(mrf.state_dict())
    assert torch.equal(copy.tables()[name], mrf.tables()[name])
    assert callable(mrf.table_potentials.to) and mrf.training  # the attributes themselves are untouched


def test_two_escaped_names_never_share_an_entry():
    names = ["type", "%74ype", "a.b", "a%2Eb", "a%b"]
    mrf = MarkovNet({"a": 2})
    for i, name in enumerate(names):
        mrf.add_factor(name, ["a"], torch.full((2,), float(i)))
    assert len(mrf.state_dict()) == len(names)
    assert [t[0, 0].item() for t in mrf.tables().values()] == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("name", ["keys", "update", "training", "forward"])
def test_a_neural_factor_named_like_a_module_dict_attribute_is_refused_and_nothing_registered(name):
    """Failed before: nn.ModuleDict raised a raw KeyError after the factor's scope buffer was registered."""
    mrf = MarkovNet({"a": 2})
    with pytest.raises(ModelSpecError, match=rf"factor '{name}' has a neural potential.*ModuleDict.*rename"):
        mrf.add_factor(name, ["a"], _Unary())
    assert not mrf.families and not list(mrf.buffers()) and not len(mrf.potentials)
    mrf.add_factor(name, ["a"], torch.zeros(2))  # a table of that name is fine (escaped)


def test_renamed_entries_finds_every_net_inside_a_model():
    """The net declares its old table names to hybridpgm.state_renames (whose renaming is tested in
    tests/test_state_renames.py), each under the net's path in the model."""
    from hybridpgm.state_renames import renamed_entries

    model = nn.ModuleList([nn.Linear(1, 1), _net(ORDER)])
    assert renamed_entries(model) == {"1._pot_1": "1.table_potentials.ab", "1._pot_2": "1.table_potentials.bc",
                                      "1._pot_3": "1.table_potentials.pairs"}


def _fit(path, steps):
    """``steps`` steps of plain SVI on a MarkovNet of two learnable tables, checkpointed to ``path``."""
    import hybridpgm
    from hybridpgm import SVIObjective

    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], nn.Parameter(torch.zeros(2, 2)))
    mrf.add_factor("bc", ["b", "c"], nn.Parameter(torch.zeros(2, 2)))
    rows = torch.randint(0, 2, (16, 3), generator=torch.Generator().manual_seed(0))
    objective = SVIObjective(lambda r: mrf.model({"a": r[:, 0], "b": r[:, 1], "c": r[:, 2]}), lambda r: None,
                             module=mrf)
    hybridpgm.fit(objective, rows, batch_size=8, max_steps=steps, seed=0, checkpoint=path, checkpoint_every=1,
                  progress=False)
    return mrf


def test_a_checkpoint_written_with_the_old_pot_names_resumes_as_if_never_interrupted(tmp_path):
    whole = _fit(tmp_path / "whole.pt", 4)
    path = tmp_path / "run.pt"
    _fit(path, 2)
    checkpoint = torch.load(path, weights_only=True)
    assert list(checkpoint["module"]) == ["table_potentials.ab", "table_potentials.bc"]
    renamed = {"table_potentials.ab": "_pot_0", "table_potentials.bc": "_pot_1"}  # as the old code wrote it
    checkpoint["module"] = type(checkpoint["module"])((renamed[k], v) for k, v in checkpoint["module"].items())
    torch.save(checkpoint, path)
    resumed = _fit(path, 4)
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_upgrade_ties_renames_the_old_names_of_a_tie_record():
    from hybridpgm.state_renames import upgrade_ties

    model = nn.ModuleDict({"mrf": _net(ORDER)})
    old = {"modules": [], "parameters": [["mrf._pot_1", "other.w"]], "buffers": [["mrf._pot_2", "mrf._pot_3"]]}
    assert upgrade_ties(model, old) == {"modules": [], "parameters": [["mrf.table_potentials.ab", "other.w"]],
                                               "buffers": [["mrf.table_potentials.bc", "mrf.table_potentials.pairs"]]}
    assert upgrade_ties(model, [["mrf._pot_1"]]) == [["mrf._pot_1"]]  # malformed: left for retie to name
