"""hybridpgm/serialization_registry.py across a ``spawn`` boundary: a class of the script (``__main__`` in the
parent, ``__mp_main__`` in a spawn child) is registered and recorded as ``__main__.<name>`` in both, and a file an
older release wrote in a child (``__mp_main__.<name>``) loads where the script is ``__main__``.  The child is faked
by setting the class's ``__module__`` before it is decorated (tests/test_main_module.py runs a real one)."""

from __future__ import annotations

import pytest
import torch

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization import serializable
from hybridpgm.serialization_registry import _resolve


def _script_class(module: str, name: str) -> type:
    """A serializable module class of the script, as the process whose script is ``module`` defines it."""
    def __init__(self, width: int = 3):
        torch.nn.Module.__init__(self)
        self.lin = torch.nn.Linear(2, width)

    cls = type(name, (torch.nn.Module,), {"__init__": __init__, "forward": lambda self, x: self.lin(x),
                                          "__module__": module})
    return serializable(cls)


def test_a_child_records_the_script_class_as_main(tmp_path):
    Child = _script_class("__mp_main__", "SpawnfixChildNet")
    torch.manual_seed(0)
    model = Child(4)
    hybridpgm.save(model, tmp_path / "child.pt")
    saved = torch.load(tmp_path / "child.pt", weights_only=True)
    assert "__main__.SpawnfixChildNet" in repr(saved) and "__mp_main__" not in repr(saved)
    loaded = hybridpgm.load(tmp_path / "child.pt")
    assert type(loaded) is Child and torch.equal(loaded(torch.ones(1, 2)), model(torch.ones(1, 2)))


def test_a_file_an_older_release_wrote_in_a_child_resolves_to_the_script_class():
    Parent = _script_class("__main__", "SpawnfixParentNet")
    assert _resolve("__mp_main__.SpawnfixParentNet") is Parent
    assert _resolve("__main__.SpawnfixParentNet") is Parent


def test_an_unknown_class_of_a_child_script_gets_the_script_advice():
    """Before: the advice was to ``import __mp_main__``."""
    with pytest.raises(CheckpointError, match=r"defined in the script that saved the model \(__main__,") as caught:
        _resolve("__mp_main__.SpawnfixNoSuchNet")
    assert "import __mp_main__" not in str(caught.value)


def test_a_register_spec_class_file_an_older_release_wrote_in_a_child_loads(tmp_path):
    """A ``register_spec`` class of the script, saved by an older release in a spawn child (recorded as
    ``__mp_main__.<name>``), loads where the script is ``__main__``.  Before: refused as "not a registered class"."""
    from hybridpgm.serialization_registry import register_spec

    def __init__(self, width: int = 3):
        torch.nn.Module.__init__(self)
        self.lin = torch.nn.Linear(2, width)

    Spec = type("SpawnfixSpecNet", (torch.nn.Module,), {"__init__": __init__, "forward": lambda self, x: self.lin(x),
                                                         "__module__": "__main__"})
    register_spec(Spec, lambda m: {"w": m.lin.out_features}, lambda s: Spec(s["w"]))
    torch.manual_seed(0)
    model = Spec(4)
    hybridpgm.save(model, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["model"]["class"] == "__main__.SpawnfixSpecNet"
    payload["model"]["class"] = "__mp_main__.SpawnfixSpecNet"  # as the older release wrote it in a child
    torch.save(payload, tmp_path / "old_child.pt")
    loaded = hybridpgm.load(tmp_path / "old_child.pt")
    assert type(loaded) is Spec and torch.equal(loaded(torch.ones(1, 2)), model(torch.ones(1, 2)))
