"""The stages of a greedy layer-wise pretraining (:meth:`~hybridpgm.energy.DBN.pretrain`,
:meth:`~hybridpgm.energy.DBM.pretrain`): one :func:`hybridpgm.fit` per layer, each on the features of the layers
below, each with a checkpoint of its own.

Layer :math:`l + 1` trains on the hidden probabilities of layer :math:`l`, so its checkpoint is a run on the
features the layers below had when it was written.  A pretraining that is preempted resumes in the layer it stopped
in, the finished layers below loading as they were, so those features are the same.  A pretraining called again to
train further (more ``epochs``) trains layer 0 on, and then resumes the checkpoints above on the features of the
*new* layer 0: each such layer continues a run begun on other inputs, ending somewhere no greedy pretraining
reaches.  :class:`GreedyStages` warns of that once per layer (a :class:`~hybridpgm.errors.TrainingWarning`
naming the layer, its checkpoint and the layer below that trained), and says how to retrain the layers above:
with ``overwrite=True`` for a call of ``pretrain``, in the words of a command's own flags inside
:func:`worded_for` (``hybridpgm train dbn|dbm --resume`` says ``--overwrite``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from contextvars import ContextVar
from typing import Any, Iterator, Sequence

from hybridpgm.errors import TrainingWarning
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["GreedyStages", "worded_for"]

#: ``(command, advice)`` of the warning while a command trains the stages (:func:`worded_for`); ``None``: a call
_WORDING: ContextVar[tuple[str, str] | None] = ContextVar("hybridpgm_greedy_stages_wording", default=None)


@contextlib.contextmanager
def worded_for(command: str, advice: str) -> Iterator[None]:
    """Word the warnings of the :class:`GreedyStages` run inside for a command rather than a call of
    ``pretrain``: they begin with ``command`` (``"train dbm --resume"``), say "this run" for "this call", and end
    with ``advice`` on how to retrain the layers above (in the command's flags).  Restored on exit.

    :param str command: what the warning begins with, in place of ``"DBN.pretrain"``.
    :param str advice: what follows "to retrain the layers above on the new features, ".
    """
    token = _WORDING.set((command, advice))
    try:
        yield
    finally:
        _WORDING.reset(token)


class GreedyStages:
    """One checkpoint per layer (:func:`~hybridpgm.energy.dbn.layer_checkpoints`) and the fit of each layer in turn.

    :param checkpoints: one path per layer, or ``None``.
    :param int layers: the number of layers.
    :param str model: ``"DBN"`` or ``"DBM"``, for messages.
    :param fit_kwargs: the keywords passed on to :func:`hybridpgm.fit` (``overwrite``, ``resume`` decide whether a
        checkpoint is resumed).
    :raises ConfigError: as :func:`~hybridpgm.energy.dbn.layer_checkpoints`.
    """

    def __init__(self, checkpoints: Sequence[str | os.PathLike] | None, layers: int, model: str,
                 fit_kwargs: dict[str, Any]):
        from hybridpgm.energy.dbn import layer_checkpoints

        self.paths = layer_checkpoints(checkpoints, layers, model, fit_kwargs)
        self.model, self.fit_kwargs = model, fit_kwargs
        self.trained_below: int | None = None  # the lowest layer that ran steps in this call

    def _resumed_steps(self, path: dict) -> int | None:
        """The steps of the checkpoint ``fit`` will resume for a stage (``None``: it starts afresh)."""
        checkpoint = path.get("checkpoint")
        if (checkpoint is None or self.fit_kwargs.get("overwrite") or self.fit_kwargs.get("resume", "auto")
                in (False, "never") or not os.path.isfile(checkpoint)):
            return None
        from hybridpgm.train.checkpoint import load_checkpoint

        return int(load_checkpoint(checkpoint)["step"])

    def check_resume(self, layer: int) -> int | None:
        """Warn where ``layer`` will resume its checkpoint while a layer below trained in this call (see the
        module's docstring); for a stage its caller trains itself (the top RBM of ``hybridpgm train dbn``).  Under
        ``torchrun`` rank 0 alone warns, as :func:`hybridpgm.fit`'s messages do (every rank resumes the same
        checkpoint).

        :returns: the steps of the checkpoint the stage resumes (``None``: it starts afresh).
        """
        from hybridpgm.train import distributed

        before = self._resumed_steps(self.paths[layer])
        if (before is not None and self.trained_below is not None
                and distributed.current(self.fit_kwargs.get("collective_timeout")).is_main):
            command, advice = _WORDING.get() or (f"{self.model}.pretrain",
                                                 "remove their checkpoints (overwrite=True retrains every layer)")
            warnings.warn(
                f"{command}: layer {layer} resumes its checkpoint {str(self.paths[layer]['checkpoint'])!r} (step "
                f"{before}), a run on the features of layer {self.trained_below} as they were before this "
                f"{'call' if _WORDING.get() is None else 'run'} trained that layer further: it goes on from there on "
                f"other inputs, which no greedy pretraining does; to retrain the layers above on the new features, "
                f"{advice}", TrainingWarning, stacklevel=users_stacklevel())
        return before

    def fit(self, layer: int, objective: Any, data: Any, **kwargs: Any) -> Any:
        """:func:`hybridpgm.fit` of ``objective`` on ``data`` for ``layer``, warning first when it resumes a
        checkpoint while a layer below trained in this call (:meth:`check_resume`).

        :returns: the :class:`~hybridpgm.train.FitResult`.
        """
        from hybridpgm.train.trainer import fit

        before = self.check_resume(layer)
        result = fit(objective, data, **kwargs)
        if self.trained_below is None and result.steps > (before or 0):
            self.trained_below = layer
        return result
