"""``==`` on hybridpgm's objects that hold tensors answers, never raises (every dataclass of the package).

A dataclass compares its fields as a tuple by default, and ``==`` of two tensors of more than one element cannot
be read as a bool: comparing two results of a seeded run (``res1 == res2``) raised "Boolean value of Tensor with
more than one value is ambiguous", and the default also made them unhashable.  A dataclass holding a tensor
compares by identity (``eq=False``), as a ``torch.nn.Module`` or a ``TensorDataset`` does.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pkgutil

import pytest
import torch

import hybridpgm


def _dataclasses():
    found = {}
    for info in pkgutil.walk_packages(hybridpgm.__path__, "hybridpgm."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def _holds_tensors(cls) -> bool:
    return any("Tensor" in str(f.type) for f in dataclasses.fields(cls))


def test_no_dataclass_holding_a_tensor_compares_its_fields():
    classes = _dataclasses()
    assert len(classes) > 10  # the walk found the package's dataclasses
    comparing = sorted(name for name, cls in classes.items() if _holds_tensors(cls) and cls.__eq__ is not object.__eq__)
    assert comparing == []


@pytest.mark.parametrize("make", [
    lambda: hybridpgm.infer.ais.AISResult(log_z=torch.zeros(()), stderr=torch.ones(()), log_weights=torch.zeros(4),
                                          log_z0=torch.zeros(()), num_steps=10),
    lambda: hybridpgm.data.splits.Split(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)),
], ids=["AISResult", "Split"])
def test_two_equal_results_compare_and_hash(make):
    a = make()
    b = copy.deepcopy(a)
    assert (a == b) is False and (a == a) is True
    assert len({a, b}) == 2
