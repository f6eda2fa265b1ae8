"""The training loop: :func:`fit`, checkpoints, callbacks, data parallelism."""

from hybridpgm.train.callbacks import Callback, EarlyStopping, EvaluateEvery, FitStart, StepInfo
from hybridpgm.train.checkpoint import load_checkpoint, save_checkpoint
from hybridpgm.train.history import FitResult, History
from hybridpgm.train.objective import Objective
from hybridpgm.train.trainer import fit

__all__ = [
    "Callback",
    "EarlyStopping",
    "EvaluateEvery",
    "FitResult",
    "FitStart",
    "History",
    "Objective",
    "StepInfo",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]
