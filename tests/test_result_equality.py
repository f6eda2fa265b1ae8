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


#: the dataclasses that compare their fields, each holding plain values only (numbers, strings, lists of them,
#: devices, a History; a Split compares by identity): ``==`` answers for them.  Any other dataclass of the package
#: compares by identity (``eq=False``): a new one that holds a tensor, an array or an arbitrary object and compares
#: its fields makes this test fail until it is either made ``eq=False`` or added here, with its reason.
VALUE_CLASSES = {
    "hybridpgm.data.splits.ImageDataset",  # name, shape, binarize and three Splits (compared by identity)
    "hybridpgm.diagnostics.gan_metrics.RingCoverage",  # counts and rates
    "hybridpgm.gp.validation.ValidatedFit",  # step counts, a float, a flag and the History
    "hybridpgm.train.callbacks.StepInfo",  # counters, float losses, the History, a device
    "hybridpgm.train.callbacks.FitStart",
    "hybridpgm.train.distributed.DistributedContext",
    "hybridpgm.train.history.History",  # lists of numbers
    "hybridpgm.train.history.FitResult",  # the History, counts, optimizers (compared by identity), a device
    "hybridpgm.train.run_start.Restored",
}


def test_only_dataclasses_of_plain_values_compare_their_fields():
    classes = _dataclasses()
    assert len(classes) > 20  # the walk found the package's dataclasses
    comparing = {name for name, cls in classes.items() if cls.__eq__ is not object.__eq__}
    assert comparing == VALUE_CLASSES


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
