"""Custom datasets whose ``__getitems__`` returns a ready batch (not torch's list of examples), shared by the
data-loader and batch-stream tests."""

import torch


class TupleBatch(torch.utils.data.Dataset):
    """Six rows; ``__getitems__`` returns the tuple ``(x[idx], y[idx])``."""

    def __init__(self):
        self.x, self.y = torch.arange(12.0).reshape(6, 2), torch.arange(6)

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        return self.x[idx], self.y[idx]


class DictBatch(TupleBatch):
    """The same rows; ``__getitems__`` returns the dict ``{"x": x[idx], "y": y[idx]}``."""

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        return {"x": self.x[idx], "y": self.y[idx]}
