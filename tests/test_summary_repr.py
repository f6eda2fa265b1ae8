"""The pieces of results' summary reprs (hybridpgm/summary_repr.py)."""

import numpy as np
import torch

from hybridpgm.summary_repr import array_text, listed, number_text, objective_text, program_name


def test_arrays_are_named_by_shape_and_dtype_and_scalars_by_value():
    assert array_text(torch.zeros(1000, 64)) == "[1000, 64] torch.float32"
    assert array_text(np.zeros(7)) == "[7] float64"
    assert number_text(torch.tensor(-85.123456789, dtype=torch.float64)) == "-85.1235"
    assert number_text(torch.tensor(1.5, requires_grad=True)) == "1.5"  # no torch warning (detached first)
    assert number_text(np.float32("nan")) == "nan" and number_text(3) == "3" and number_text(True) == "True"
    assert number_text(torch.zeros(3)) == "[3] torch.float32"  # not a scalar: its shape
    assert number_text(torch.zeros((), device="meta")) == "[] torch.float32"  # no data: no number, no error
    assert len(array_text(list(range(10000)))) < 60 and len(number_text("x" * 1000)) < 60


def test_listed_shows_the_first_and_last_items():
    assert listed(["a", "b"]) == "'a', 'b'"
    assert listed(f"x{i}" for i in range(100)) == "'x0', 'x1', 'x2', ..., 'x99'"
    assert listed({f"x{i}": 2 for i in range(5)}) == "'x0', 'x1', 'x2', 'x3', 'x4'"
    assert len(listed(["y" * 1000] * 3)) < 150


class Owner:
    def model(self):
        pass


def test_objective_text_cuts_long_values_and_names_programs():
    text = objective_text(Owner(), {"model": program_name(Owner().model), "guide": program_name(len),
                                    "elbo": "E" * 100, "tail_adaptive_beta": -1.0, "num_particles": 5})
    assert text == f"Owner(model=Owner.model, guide=len, elbo='{'E' * 36}..., num_particles=5)"
    assert objective_text(Owner(), {"guide": program_name(object()), "tail_adaptive_beta": 0.5}) == \
        "Owner(guide=object, tail_adaptive_beta=0.5)"


def test_a_half_built_objective_shows_question_marks_for_what_it_lacks():
    """Review: an objective without its programs showed ``model=NoneType``; its settings failing are left out."""
    from hybridpgm.summary_repr import model_guide_text

    class HalfBuilt:
        model = None

        def settings(self):
            raise RuntimeError("not built")

    assert program_name(None) == "?"
    assert model_guide_text(HalfBuilt()) == "HalfBuilt(model=?, guide=?, per_example='?')"


def test_module_text_is_torchs_repr_for_a_tree_without_shared_modules():
    from torch import nn

    from hybridpgm.summary_repr import module_text

    class Custom(nn.Module):
        def __repr__(self):
            return "Custom<\nline>"

    class Extra(nn.Module):
        def extra_repr(self):
            return "a=1\nb=2"

    tree = nn.Sequential(nn.Linear(2, 3), nn.LSTM(3, 4), nn.Sequential(nn.ReLU(), Custom()), Extra())
    tree.add_module("nothing", None)
    tree[3].add_module("inner", nn.Tanh())
    assert module_text(tree) == repr(tree)
    assert module_text(nn.Linear(1, 1)) == repr(nn.Linear(1, 1)) and module_text(nn.Identity()) == "Identity()"


def test_module_text_writes_a_shared_module_once():
    """New with the audit item on DeepKernelGP's repr: torch writes a shared module at each of its places."""
    from torch import nn

    from hybridpgm.summary_repr import module_text

    shared, custom = nn.Linear(2, 2), nn.Module()
    custom.__class__ = type("Custom", (nn.Module,), {"__repr__": lambda self: "Custom()"})
    outer = nn.ModuleDict({"a": nn.Sequential(shared, custom), "b": shared, "c": nn.Sequential(custom, shared)})
    assert module_text(outer) == ("ModuleDict(\n  (a): Sequential(\n    (0): Linear(in_features=2, out_features=2, "
                                  "bias=True)\n    (1): Custom()\n  )\n  (b): Linear, as a.0\n  (c): Sequential(\n"
                                  "    (0): Custom, as a.1\n    (1): Linear, as a.0\n  )\n)")
    assert repr(outer).count("Linear(") == 3


def test_numbers_text_reads_the_scalar_tensors_once(host_reads):
    import torch

    from hybridpgm.summary_repr import number_text, numbers_text

    values = [torch.tensor(1.23456789), torch.tensor(2.5, dtype=torch.float64), 7, torch.ones(3), "x",
              torch.tensor(True), torch.tensor(3)]
    want = [number_text(v, d) for v, d in zip(values, [6, 3, 6, 6, 6, 6, 6])]
    host_reads.clear()
    assert numbers_text(values, [6, 3, 6, 6, 6, 6, 6]) == want == ["1.23457", "2.5", "7", "[3] torch.float32", "'x'",
                                                                   "1", "3"]
    assert len(host_reads) == 1
