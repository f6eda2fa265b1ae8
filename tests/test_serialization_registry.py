"""Constructor arguments recorded by ``serializable`` and the call that rebuilds a module
(hybridpgm/serialization_registry.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridpgm.serialization import load, save, serializable


@serializable
class _Stack(nn.Module):
    def __init__(self, n_in, *widths, act="relu"):
        super().__init__()
        self.n_in, self.widths, self.act = n_in, widths, act
        self.net = nn.Linear(n_in, widths[-1] if widths else n_in)


@serializable
class _PositionalOnly(nn.Module):
    def __init__(self, n_in, n_out, /, bias=True):
        super().__init__()
        self.net = nn.Linear(n_in, n_out, bias=bias)


@pytest.mark.parametrize("args, kwargs", [((3, 8, 4), {"act": "tanh"}), ((3,), {}), ((3, 5), {})])
def test_a_parameter_before_star_args_is_rebuilt_by_position(tmp_path, args, kwargs):
    """Found by an audit: ``_Stack(3, 8, 4)`` saved, and its load raised "got multiple values for argument
    'n_in'" (the ``*widths`` values were passed by position, ``n_in`` by name)."""
    model = _Stack(*args, **kwargs)
    save(model, tmp_path / "m.pt")
    loaded = load(tmp_path / "m.pt")
    assert (loaded.n_in, loaded.widths, loaded.act) == (model.n_in, model.widths, model.act)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_positional_only_parameters_are_rebuilt_by_position(tmp_path):
    model = _PositionalOnly(3, 2, bias=False)
    save(model, tmp_path / "m.pt")
    loaded = load(tmp_path / "m.pt")
    assert loaded.net.bias is None and torch.equal(loaded.net.weight, model.net.weight)


def test_an_unknown_class_names_what_to_import_or_for_a_scripts_class_what_to_do():
    """Found by the LOADTRAINED audit (session 39): a ``@serializable`` class defined in the training script
    (``__main__.Net``) failed to load in a notebook with "registered when its module is imported before loading",
    which cannot be done for ``__main__``."""
    from hybridpgm.errors import CheckpointError
    from hybridpgm.serialization_registry import _resolve

    with pytest.raises(CheckpointError, match=r"'__main__.Net', which is not a registered hybridpgm class: it was "
                                              r"defined in the script that saved the model \(__main__, .*define the "
                                              r"same class, decorated with hybridpgm.serialization.serializable, in "
                                              r"this program .* before loading, or move it to a module of its own"):
        _resolve("__main__.Net")
    with pytest.raises(CheckpointError, match=r"imported before loading: import user_models.heads\)$"):
        _resolve("user_models.heads.Net")
