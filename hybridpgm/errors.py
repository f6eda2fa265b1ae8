"""Exception types raised by hybridpgm.

Every error subclasses :class:`HybridPGMError` and one of the built-in
:class:`ValueError` (bad input given by the caller) or :class:`RuntimeError`
(something that went wrong while running), so ``except ValueError`` keeps
working in user code.  Messages name the node, site, shape or file at fault.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CollectiveTimeoutError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "EvidenceError",
    "HybridPGMError",
    "ModelSpecError",
    "ObjectiveError",
    "TrainingDivergedError",
    "TrainingInterrupted",
]


class HybridPGMError(Exception):
    """Base class of every exception raised on purpose by hybridpgm."""


class ModelSpecError(HybridPGMError, ValueError):
    """A model is declared wrongly: a cycle, an unknown parent, a table of the
    wrong shape or one whose rows do not sum to one, mismatched layer sizes.
    The message names the node, factor or layer."""


class EvidenceError(HybridPGMError, ValueError):
    """Evidence or a query names an unknown variable, holds a value outside a
    variable's range, or has probability zero under the model."""


class DataError(HybridPGMError, ValueError):
    """A data set is missing (the message says where it looked and how to get
    it), holds NaN/inf, or has a shape the model does not accept (the message
    gives the expected and the actual shape)."""


class ConfigError(HybridPGMError, ValueError):
    """An option of :func:`hybridpgm.fit`, an objective or the command line is
    invalid (for example ``accumulate=0`` or an unknown optimizer)."""


class DeviceError(HybridPGMError, RuntimeError):
    """A device was asked for that this machine does not have (for example
    ``device="cuda"`` without CUDA)."""


class ObjectiveError(HybridPGMError, ValueError):
    """A Pyro model/guide pair does not fit the objective it is trained with
    (for example a non-reparameterizable site under :class:`~hybridpgm.infer.IWAE`).
    The message names the site."""


class TrainingDivergedError(HybridPGMError, RuntimeError):
    """A loss became NaN or infinite.  The run stops before the optimizer
    applies the bad step, so the last checkpoint on disk stays good.

    :ivar int step: the optimizer step (0-based) at which the loss diverged.
    :ivar str player: the player whose loss diverged.
    """

    def __init__(self, message: str, *, step: int, player: str):
        super().__init__(message)
        self.step = step
        self.player = player


class CheckpointError(HybridPGMError, RuntimeError):
    """A checkpoint cannot be read, or does not belong to the run that tries to
    resume from it.  The message names the file."""


class CollectiveTimeoutError(HybridPGMError, RuntimeError):
    """A collective operation of a multi-process run timed out or failed.  The
    message names the ranks that stopped progressing (read from the ranks'
    heartbeats), not only the rank that noticed.

    :ivar list ranks: the ranks found to have stopped (may be empty when the
        heartbeats could not tell).
    """

    def __init__(self, message: str, *, ranks: list[int]):
        super().__init__(message)
        self.ranks = list(ranks)


class TrainingInterrupted(KeyboardInterrupt):
    """:func:`hybridpgm.fit` stopped on SIGINT or SIGTERM after finishing its
    current step and writing its checkpoint (or at once, on a second signal).

    It subclasses :class:`KeyboardInterrupt`, not :class:`HybridPGMError`, on
    purpose: an interruption is not an error of the program, and code that
    catches ``Exception`` must not swallow the user's Ctrl-C.

    :ivar int signum: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
    :ivar step: optimizer steps completed and saved, or ``None`` when a second
        signal stopped the run at once.
    :ivar checkpoint: the checkpoint written, or ``None``.
    :ivar int exit_code: the conventional exit status, ``128 + signum``
        (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, *, signum: int, step: int | None = None, checkpoint=None):
        super().__init__(message)
        self.signum = int(signum)
        self.step = step
        self.checkpoint = checkpoint
        self.exit_code = 128 + self.signum
