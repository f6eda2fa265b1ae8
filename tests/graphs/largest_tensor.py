"""A dispatch mode that records the tensors the operations inside it return: the largest, for the memory-budget
tests of the contraction steps (max-sum in blocks, the underflow redo in blocks), and their total elements, for the
work-per-sweep tests of mean field."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an operation returns while it is active (``.largest``) and the
    elements of all of them (``.elements``: the work of a forward and backward pass, roughly)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(result):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
                self.elements += t.numel()
        return result
