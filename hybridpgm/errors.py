"""Exception and warning types raised by hybridpgm.

Every error subclasses :class:`HybridPGMError` and one of the built-in
:class:`ValueError` (bad input given by the caller) or :class:`RuntimeError`
(something that went wrong while running), so ``except ValueError`` keeps
working in user code.  Messages name the node, site, shape or file at fault.
The built-in base of each kind:

- :class:`ValueError`: :class:`ModelSpecError`, :class:`EvidenceError`, :class:`DataError`,
  :class:`ConfigError` (a malformed or unsupported ``device`` name too), :class:`ObjectiveError`;
- :class:`RuntimeError`: :class:`DeviceError` (a device this machine does not have),
  :class:`TrainingDivergedError`, :class:`CheckpointError`, :class:`CollectiveTimeoutError`;
- :class:`ValueError` and :class:`FileNotFoundError`: :class:`DataNotFoundError` (a :class:`DataError`);
- :class:`RuntimeError` and :class:`FileNotFoundError`: :class:`CheckpointNotFoundError` (a
  :class:`CheckpointError`);
- :class:`ValueError` and :class:`AttributeError`: :class:`FixedOptionError` (a :class:`ConfigError`);
- :class:`NotImplementedError` (a :class:`RuntimeError`): :class:`UnsupportedQueryError`;
- :class:`KeyboardInterrupt`: :class:`TrainingInterrupted` (not a :class:`HybridPGMError`, see there).

A file or folder that does not exist (a model file, a checkpoint, a BIF file, a data set) raises the
``...NotFoundError`` of its family, so ``except CheckpointError`` / ``except DataError`` and ``except
FileNotFoundError`` / ``except OSError`` all catch it; its ``errno`` is ``None`` and ``str()`` is the message.
An assignment to an option fixed once set (:class:`hybridpgm.options.Option`) raises :class:`FixedOptionError`,
which both ``except ConfigError`` and ``except AttributeError`` (Python's error for a read-only attribute) catch.
Every error survives :mod:`pickle`, :func:`copy.copy` and :func:`copy.deepcopy` with its type, message and
attributes, so it reaches the parent of a process pool as itself.

Warnings subclass :class:`HybridPGMWarning` and the one built-in category they had before (:class:`UserWarning`
or :class:`RuntimeWarning`), so filters on :class:`UserWarning` / :class:`RuntimeWarning` catch what they did and
``warnings.filterwarnings("ignore", category=HybridPGMWarning)`` silences hybridpgm's warnings alone.  They point
at the caller's line, so a ``module=`` filter sees the caller's module, not hybridpgm's: filter by category.

- :class:`TrainingWarning` (:class:`UserWarning`): :func:`hybridpgm.fit` runs, but not as the caller may think;
- :class:`DivergenceWarning` (:class:`RuntimeWarning`): a loss exploded during a fit;
- :class:`EstimateWarning` (:class:`UserWarning`): an estimate (AIS's log Z) is unreliable;
- :class:`DiagnosticsWarning` (:class:`UserWarning`): a diagnostic leaves something out.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "CollectiveTimeoutError",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "DeviceError",
    "DiagnosticsWarning",
    "DivergenceWarning",
    "EstimateWarning",
    "EvidenceError",
    "FixedOptionError",
    "HybridPGMError",
    "HybridPGMWarning",
    "ModelSpecError",
    "ObjectiveError",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "TrainingWarning",
    "UnsupportedQueryError",
]


def _rebuild(cls: type, args: tuple, keywords: dict):
    """``cls(*args, **keywords)``: how :mod:`pickle` and :mod:`copy` rebuild an error whose ``__init__`` takes
    keyword-only arguments (``BaseException.__reduce__`` passes back ``args`` alone)."""
    return cls(*args, **keywords)


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


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder (a BIF file, a data set's files) does not exist.  The message names the path (and,
    for a data set, where it looked and how to get it).  It is also a :class:`FileNotFoundError` (an
    :class:`OSError`, with ``errno`` ``None``)."""


class ConfigError(HybridPGMError, ValueError):
    """An option of :func:`hybridpgm.fit`, an objective or the command line is
    invalid (for example ``accumulate=0``, an unknown optimizer or a malformed
    device name such as ``device="gpu"``)."""


class FixedOptionError(ConfigError, AttributeError):
    """An option that is fixed once set was assigned: one that decides a model's parameters (``vae.x_dim``,
    ``rbm.visible_type``) or an engine's state (``PersistentCD.num_chains``).  The message names the class, the
    option and its value, and says to build a new object instead (:class:`hybridpgm.options.Option`).  It is
    also an :class:`AttributeError`, Python's error for an attribute that cannot be set, so ``except
    AttributeError`` and ``except ConfigError`` both catch it."""


class DeviceError(HybridPGMError, RuntimeError):
    """A device was asked for that this machine does not have (for example
    ``device="cuda"`` without CUDA), or a tensor is on another device than the
    model.  A malformed device name is a :class:`ConfigError`."""


class UnsupportedQueryError(HybridPGMError, NotImplementedError):
    """A query a model does not answer: a property torch's interface declares that has no meaning for it (the
    ``mean`` of a :class:`~hybridpgm.graphs.LinearChainCRF`'s label sequences).  The message names the model and
    the query, and says what to use instead.  It is a :class:`NotImplementedError`, what torch raises for a
    query a distribution does not define, so ``except NotImplementedError`` keeps catching it."""


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

    def __reduce__(self):
        return _rebuild, (type(self), self.args, {"step": self.step, "player": self.player}), self.__dict__


class CheckpointError(HybridPGMError, RuntimeError):
    """A checkpoint cannot be read, or does not belong to the run that tries to
    resume from it.  The message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A model file or checkpoint does not exist.  The message names the path.  It is also a
    :class:`FileNotFoundError` (an :class:`OSError`, with ``errno`` ``None``), as :func:`torch.load` raises."""


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

    def __reduce__(self):
        return _rebuild, (type(self), self.args, {"ranks": self.ranks}), self.__dict__


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

    def __reduce__(self):
        keywords = {"signum": self.signum, "step": self.step, "checkpoint": self.checkpoint}
        return _rebuild, (type(self), self.args, keywords), self.__dict__


class HybridPGMWarning(Warning):
    """Base class of every warning hybridpgm issues; ``warnings.filterwarnings("ignore",
    category=HybridPGMWarning)`` silences them and no one else's.  Each subclass is also the built-in category
    its warnings had before these classes existed (:class:`UserWarning` or :class:`RuntimeWarning`), and only
    that one, so a filter on either catches exactly what it caught before."""


class TrainingWarning(HybridPGMWarning, UserWarning):
    """:func:`hybridpgm.fit` runs, but not as the caller may expect: layers whose output on a row depends on the
    other rows when the batch is split (``accumulate > 1`` or several ranks), state a resume could not restore,
    or, under ``precision="fp16"``, a gradient scaler that skipped
    :data:`~hybridpgm.train.scaler_step.SKIPS_BEFORE_WARNING` steps of a player in a row (its gradients overflow
    float16, so its parameters are not moving: :mod:`hybridpgm.train.scaler_step`)."""


class DivergenceWarning(HybridPGMWarning, RuntimeWarning):
    """A player's loss exploded during :func:`hybridpgm.fit` (see ``FitResult.loss_explosions``).  A
    :class:`RuntimeWarning`, as before this class existed, and not a :class:`UserWarning` (a filter on
    ``UserWarning`` does not hide it)."""


class EstimateWarning(HybridPGMWarning, UserWarning):
    """An estimate is unreliable (AIS's log Z: its starts disagree or their effective sample size is small); the
    result says so too (``reliable=False``)."""


class DiagnosticsWarning(HybridPGMWarning, UserWarning):
    """A diagnostic leaves part of its input out or cannot be read as usual (NaN k-hats not drawn, placeholder or
    local latent sites, draws with identical log-likelihoods)."""
