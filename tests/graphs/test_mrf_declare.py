"""MarkovNet declaration checks (:mod:`hybridpgm.graphs.mrf_declare`)."""

import math
import re

import pytest
import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet


def _pair(t):
    m = MarkovNet({"a": 2, "b": 2})
    m.add_factor("ab", ["a", "b"], t)
    return m


@pytest.mark.parametrize("build, match", [
    (lambda: _pair(torch.tensor([[0.0, float("inf")], [0.0, 0.0]])), "'ab'.*non-finite"),
    (lambda: _pair(torch.tensor([[0.0, float("nan")], [0.0, 0.0]])), "'ab'.*non-finite"),
    (lambda: _pair(torch.zeros(3, 2)), "'ab'.*shape"),
    (lambda: MarkovNet({"a": 2}).add_factor("ax", ["a", "x"], torch.zeros(2, 2)), "'ax'.*unknown variable 'x'"),
    (lambda: MarkovNet({"a": 2}).add_factor("aa", ["a", "a"], torch.zeros(2, 2)), "'aa'"),
    (lambda: MarkovNet({"a": 2, "b": 3}).add_factors("fam", [["a"], ["b"]], torch.zeros(2, 2)), "'fam'.*cardinalities"),
    (lambda: _pair(torch.zeros(2, 2)).add_factor("ab", ["a"], torch.zeros(2)), "'ab'.*already"),
    (lambda: MarkovNet({"a": 0}), "'a'"),
    (lambda: MarkovNet([("a", 2), ("a", 3)]), "variable 'a' is declared twice.*2 and 3"),
    (lambda: MarkovNet([("a", 2), ("b", 2.5)]), "variable 'b'.*integer cardinality.*2.5"),
    (lambda: MarkovNet([("a", 2), "b"]), "pairs.*'b'"),
    (lambda: _pair(torch.zeros(2, 2)).log_partition("loopy"), "unknown inference method"),
])
def test_bad_model_raises_model_spec_error(build, match):
    with pytest.raises(ModelSpecError, match=match):
        build()


@pytest.mark.parametrize("name, what", [("data", "the plate 'data'"),
                                        ("log_partition", "the -log Z factor site 'log_partition'"),
                                        ("markov_net$$$_pot_0", "the parameter sites")])
def test_names_of_the_internal_sites_of_model_are_refused_at_declaration(name, what):
    """A variable or factor named like a site MarkovNet.model declares itself was accepted, and model() then
    crashed with Pyro's raw duplicate-site error."""
    with pytest.raises(ModelSpecError, match=rf"variable '{re.escape(name)}' clashes with {re.escape(what)}"):
        MarkovNet({"a": 2, name: 2})
    mrf = MarkovNet({"a": 2})
    with pytest.raises(ModelSpecError, match=rf"factor '{re.escape(name)}' clashes with {re.escape(what)}"):
        mrf.add_factor(name, ["a"], torch.zeros(2))
    assert not mrf.families and not list(mrf.buffers())  # nothing half-declared
    if name in ("data", "log_partition"):
        mrf.add_factors(name, [["a"]], torch.zeros(1, 2))  # a family's sites are f"{name}[f]": no clash


def test_a_factor_named_like_a_factor_of_a_family_is_refused_at_declaration():
    """Factor f of a family 'e' is the site 'e[f]' of model(); a single factor of that name clashed there."""
    mrf = MarkovNet({"a": 2, "b": 2}).add_factors("e", [["a"], ["b"]], torch.zeros(2, 2))
    with pytest.raises(ModelSpecError, match=r"factor 'e\[1\]' clashes with factor 1 of the family 'e'"):
        mrf.add_factor("e[1]", ["a"], torch.zeros(2))
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("e[1]", ["a"], torch.zeros(2))
    with pytest.raises(ModelSpecError, match=r"factor 1 of the family 'e' \(site 'e\[1\]'\) clashes with factor "
                                             r"'e\[1\]'"):
        mrf.add_factors("e", [["a"], ["b"]], torch.zeros(2, 2))
    assert list(mrf.families) == ["e[1]"]
    mrf.add_factor("e[2]", ["b"], torch.zeros(2))  # no family 'e' was declared


def _registered(mrf):
    return (sorted(n for n, _ in mrf.named_parameters()), sorted(n for n, _ in mrf.named_buffers()),
            sorted(mrf.state_dict()), dict(mrf.families), dict(mrf._factor_sites), dict(mrf.cards))


@pytest.mark.parametrize("bad", [
    nn.Parameter(torch.randn(3, 3)),                 # wrong shape
    torch.full((2, 3), float("nan")),                # non-finite buffer
    torch.zeros(2, 3, dtype=torch.long),             # non-float
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],              # not a tensor or module
])
def test_a_refused_add_factor_registers_nothing_and_the_corrected_call_succeeds(bad):
    """Found by an audit: the table (and the scope buffer) were registered before the table was checked, so a
    refused call left its table (then ``_pot_0``) on the net and the corrected call raised a raw KeyError."""
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("a", ["a"], torch.zeros(2))
    before = _registered(mrf)
    with pytest.raises(ModelSpecError, match="factor 'ab'"):
        mrf.add_factor("ab", ["a", "b"], bad)
    assert _registered(mrf) == before
    good = torch.randn(2, 3)
    mrf.add_factor("ab", ["a", "b"], nn.Parameter(good))
    assert [n for n, _ in mrf.named_parameters()] == ["table_potentials.ab"]
    assert torch.allclose(mrf.log_partition(), (torch.zeros(2)[:, None] + good).logsumexp((0, 1)))


def test_a_refused_family_or_neural_factor_registers_nothing():
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    before = _registered(mrf)
    with pytest.raises(ModelSpecError, match=r"factor 'e' has log-potentials of shape \(3, 2, 2\)"):
        mrf.add_factors("e", [["a", "b"], ["b", "c"]], torch.zeros(3, 2, 2))
    with pytest.raises(ModelSpecError, match=r"factor 'n.1' has a neural potential, so its name cannot contain"):
        mrf.add_factor("n.1", ["a"], nn.Linear(1, 2))
    with pytest.raises(ModelSpecError, match="a factor needs a non-empty name"):
        mrf.add_factor(3, ["a"], torch.zeros(2))
    with pytest.raises(ModelSpecError, match=r"factor 'u' uses unknown variable \['a'\]"):
        mrf.add_factor("u", [["a"]], torch.zeros(2))
    assert _registered(mrf) == before and len(mrf.potentials) == 0
    mrf.add_factors("e", [["a", "b"], ["b", "c"]], torch.zeros(2, 2, 2))
    assert torch.allclose(mrf.log_partition(), torch.tensor(3 * math.log(2.0)))


def test_a_one_row_context_to_a_batch_norm_potential_in_training_mode_names_the_factor_and_eval():
    """Found by a batch-invariance audit: torch's raw 'Expected more than 1 value per channel when training'
    named no factor; two rows, or eval mode with the running statistics, answer."""
    from hybridpgm.errors import ConfigError

    torch.manual_seed(0)
    mrf = MarkovNet({"x": 3, "y": 2})
    mrf.add_factor("xy", ["x", "y"], torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8),
                                                         torch.nn.Linear(8, 6), torch.nn.Unflatten(-1, (3, 2))))
    with pytest.raises(ConfigError, match=r"factor 'xy' normalises its batch \(batch norm in training mode\) and got "
                                          r"a context of one row.*mrf.eval\(\)"):
        mrf.log_partition(context=torch.randn(1, 5))
    assert mrf.log_partition(context=torch.randn(2, 5)).shape == (2,)
    assert mrf.eval().log_partition(context=torch.randn(1, 5)).shape == (1,)


def _edit_between(how, mrf, table):
    """Change ``table`` or the buffer copied from it, between two declarations from ``table``."""
    with torch.no_grad():
        if how == "load_state_dict":
            mrf.load_state_dict({k: torch.zeros_like(v) for k, v in mrf.state_dict().items()})
        elif how == "buffer in place":
            mrf.table_potentials.f1.mul_(2.0)
        elif how == "buffer .data":
            mrf.table_potentials.f1.data.zero_()
        elif how == "tensor in place":
            table.mul_(3.0)
        elif how == "tensor .data":
            table.data.mul_(3.0)


@pytest.mark.parametrize("how", ["load_state_dict", "buffer in place", "buffer .data", "tensor in place",
                                 "tensor .data"])
def test_a_table_declared_again_after_it_or_its_copy_changed_gets_its_current_values(how):
    """A second factor declared from the same tensor holds that tensor's values at its declaration (the first
    factor's copy is shared only while it still holds them), and the two factors are then two buffers: log Z is
    the brute-force sum over both tables; a third declaration, with nothing changed, shares the second's copy."""
    torch.manual_seed(0)
    table = torch.randn(2, 2)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2, "d": 2})
    mrf.add_factor("f1", ["a", "b"], table)
    _edit_between(how, mrf, table)
    first = mrf.table_potentials.f1.clone()
    mrf.add_factor("f2", ["b", "c"], table).add_factor("f3", ["c", "d"], table)
    assert torch.equal(mrf.tables()["f2"][0], table) and torch.equal(mrf.tables()["f1"][0], first)
    assert mrf.table_potentials.f2 is not mrf.table_potentials.f1
    assert mrf.table_potentials.f3 is mrf.table_potentials.f2  # still tied, to the current copy
    joint = first[:, :, None, None] + table[None, :, :, None] + table[None, None, :, :]
    torch.testing.assert_close(mrf.log_partition("exact"), torch.logsumexp(joint.reshape(-1), 0))


def test_an_unchanged_table_declared_twice_stays_one_buffer_after_queries():
    """Guard (passes before and after the fix): queries change nothing, so a table declared again after them is
    still the first factor's buffer, saved tied."""
    table = torch.randn(2, 2)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2}).add_factor("f1", ["a", "b"], table)
    mrf.log_partition("exact")
    mrf.load_state_dict(mrf.state_dict())  # the same values loaded: the copy moved version, but holds them
    mrf.add_factor("f2", ["b", "c"], table)
    assert mrf.table_potentials.f2 is mrf.table_potentials.f1


def test_a_context_given_as_an_array_is_read_as_a_tensor_and_a_list_is_named():
    """INPUTS audit (session 39, finding 4): a NumPy array, a DataFrame or a list as ``context=`` reached the
    factor's network as it was and ended in torch's raw "linear(): argument 'input' must be Tensor, not
    numpy.ndarray".  Arrays are now read as tensors (the same answer as the tensor); a list, which the network
    does not take, is a DataError naming the factor and the type."""
    from hybridpgm.errors import DataError

    pd = pytest.importorskip("pandas")
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], nn.Sequential(nn.Linear(3, 4), nn.Unflatten(-1, (1, 2, 2))))
    c = torch.randn(4, 3)
    values = {"a": torch.tensor([0, 1, 1, 0]), "b": torch.tensor([1, 1, 0, 0])}
    for ctx in (c.numpy(), pd.DataFrame(c.numpy())):
        assert torch.equal(mrf.log_partition("exact", context=ctx), mrf.log_partition("exact", context=c))
        assert torch.equal(mrf.log_prob(values, context=ctx), mrf.log_prob(values, context=c))
    with pytest.raises(DataError, match=r"factor 'ab' fails on a context of type list .*torch\.as_tensor\(context\)"):
        mrf.log_partition("exact", context=c.tolist())
    with pytest.raises(DataError, match=r"factor 'ab' fails on a context of dtype torch\.float64"):
        mrf.log_partition("exact", context=c.double().numpy())  # the dtype rule, as for a float64 tensor


class _DictNet(nn.Module):
    """A potential of a dict context ``{"x": [N, 3], "scale": float}``: ``[N, 1, 2, 2]``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, ctx):
        return (self.lin(ctx["x"]) * ctx["scale"]).reshape(-1, 1, 2, 2)


def test_a_networks_own_type_error_on_a_dict_context_it_takes_is_its_own():
    """FUNCFIX (closing note 39): a network of a dict context whose own code raised a TypeError (an entry of the
    wrong type: ``None * tensor``, a list into its linear layer) was a DataError advising
    ``torch.as_tensor(context)``, which cannot read a dict.  That TypeError is now raised as it is (its type and
    message the network's), with a note naming the factor and the context's type."""
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], _DictNet())
    c = torch.randn(4, 3)
    assert torch.isfinite(mrf.log_partition("exact", context={"x": c, "scale": 2.0})).all()  # a context it takes
    for ctx, message in (({"x": c, "scale": None}, "unsupported operand type"), ({"x": c.tolist(), "scale": 1.0},
                                                                                 r"must be Tensor, not list")):
        with pytest.raises(TypeError, match=message) as caught:
            mrf.log_partition("exact", context=ctx)
        assert type(caught.value) is TypeError and "as_tensor" not in str(caught.value)
        assert caught.value.__notes__ == ["MarkovNet: the neural potential of factor 'ab', called on a context of "
                                          "type dict"]


def test_a_dict_or_tuple_context_the_network_does_not_take_is_named_without_as_tensor():
    """A network of one tensor given a dict or a tuple (torch's "must be Tensor, not dict"): still a DataError
    naming the factor and the type, but not advising ``torch.as_tensor``, which cannot read either; a list of
    numbers, which it reads, keeps the advice."""
    from hybridpgm.errors import DataError

    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], nn.Sequential(nn.Linear(3, 4), nn.Unflatten(-1, (1, 2, 2))))
    c = torch.randn(4, 3)
    for ctx, kind in (({"x": c}, "dict"), ((c, c), "tuple")):
        with pytest.raises(DataError, match=rf"factor 'ab' fails on a context of type {kind} .*not {kind}\); pass "
                                            rf"the network the input it takes \(a {kind} is passed") as caught:
            mrf.log_partition("exact", context=ctx)
        assert "as_tensor" not in str(caught.value) and isinstance(caught.value.__cause__, TypeError)
    with pytest.raises(DataError, match=r"type list .*not list\); pass a tensor: torch\.as_tensor\(context\)"):
        mrf.log_partition("exact", context=c.tolist())
