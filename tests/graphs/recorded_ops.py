"""A dispatch mode that records the names of the aten operations run inside it, for the tests that count the work
a query or a loss does (``.ops``)."""

from torch.utils._python_dispatch import TorchDispatchMode


class RecordedOps(TorchDispatchMode):
    """Records the aten operations run while it is active, by name, in order (``.ops``)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))
