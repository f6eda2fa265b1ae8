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

A call that fails in such a layer leaves its checkpoint a run on two sets of features, which the next call
resumes after finding the layers below finished (they train no step, so nothing in that call says the features
changed).  Each layer above the first therefore keeps a record beside its checkpoint (:func:`record_path`,
``<checkpoint>.features.json``, written atomically by :meth:`GreedyStages.record`): the step of the layer below
whose features its run is on, written when the layer starts afresh and again when its fit returns (a finished
run was warned of, if at all, in the call that finished it).  A layer that resumes its checkpoint while the layer
below is at another step than the recorded one is warned of too.  A checkpoint without a record (written before
the record was kept) resumes without that comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Sequence

from hybridpgm.errors import TrainingWarning
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["GreedyStages", "record_path", "worded_for"]

#: what a layer's record file adds to its checkpoint's path (:func:`record_path`)
RECORD_SUFFIX = ".features.json"


def record_path(checkpoint: str | os.PathLike) -> Path:
    """The record kept beside a layer's ``checkpoint`` (``~`` expanded, as :func:`hybridpgm.fit` reads it):
    ``<checkpoint>.features.json``, holding
    ``{"layer_below_step": s}``, the step of the layer below whose features the checkpoint's run is on."""
    return Path(f"{os.path.expanduser(os.fspath(checkpoint))}{RECORD_SUFFIX}")

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
        self.steps: dict[int, int] = {}  # layer -> the steps its fit in this call ended at (its checkpoint's)

    def _resumed_steps(self, path: dict) -> int | None:
        """The steps of the checkpoint ``fit`` will resume for a stage (``None``: it starts afresh)."""
        checkpoint = path.get("checkpoint")
        if (checkpoint is None or self.fit_kwargs.get("overwrite") or self.fit_kwargs.get("resume", "auto")
                in (False, "never") or not os.path.isfile(os.path.expanduser(checkpoint))):
            return None
        from hybridpgm.train.checkpoint import load_checkpoint

        return int(load_checkpoint(os.path.expanduser(checkpoint))["step"])

    def _is_main(self) -> bool:
        """Whether this process is rank 0 (or alone), as :func:`hybridpgm.fit` will see it."""
        from hybridpgm.train import distributed

        return distributed.current(self.fit_kwargs.get("collective_timeout")).is_main

    def _recorded(self, layer: int) -> int | None:
        """The step of the layer below that ``layer``'s record holds (``None``: no record, or none readable)."""
        try:
            value = json.loads(record_path(self.paths[layer]["checkpoint"]).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        value = value.get("layer_below_step") if isinstance(value, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def record(self, layer: int) -> None:
        """Write ``layer``'s record (:func:`record_path`): the step the layer below ended at in this call, whose
        features ``layer`` trains on.  Nothing for the first layer, a layer without a checkpoint, a layer whose
        layer below did not run through :meth:`fit` in this call, or a rank other than 0.  :meth:`fit` calls it;
        a caller that fits a stage itself calls it when that fit returns (and passes ``record=True`` to
        :meth:`check_resume` before).

        :raises CheckpointError: the file cannot be written (naming it and the OS reason)."""
        from hybridpgm.train.atomic_write import write_text_atomically

        checkpoint, below = self.paths[layer].get("checkpoint"), self.steps.get(layer - 1)
        if checkpoint is None or below is None or not self._is_main():
            return
        write_text_atomically(record_path(checkpoint), json.dumps({"layer_below_step": below}) + "\n",
                              "greedy stage record")

    def check_resume(self, layer: int, *, record: bool = False) -> int | None:
        """Warn where ``layer`` will resume its checkpoint while a layer below trained in this call, or while the
        layer below is at another step than ``layer``'s record holds (see the module's docstring); for a stage its
        caller trains itself (the top RBM of ``hybridpgm train dbn``).  Under ``torchrun`` rank 0 alone warns, as
        :func:`hybridpgm.fit`'s messages do (every rank resumes the same checkpoint).

        :param bool record: where the stage starts afresh, write its record (:meth:`record`) now, before its fit.
        :returns: the steps of the checkpoint the stage resumes (``None``: it starts afresh).
        """
        path = self.paths[layer]
        before = self._resumed_steps(path)
        if before is None:
            checkpoint = path.get("checkpoint")
            fresh = checkpoint is not None and (self.fit_kwargs.get("overwrite")
                                                or not os.path.isfile(os.path.expanduser(checkpoint)))
            if record and fresh:  # (a checkpoint that fit will refuse to overwrite keeps its record)
                self.record(layer)
            return None
        inputs = self._other_inputs(layer)
        if inputs is None or not self._is_main():
            return before
        command, advice = _WORDING.get() or (f"{self.model}.pretrain",
                                             "remove their checkpoints (overwrite=True retrains every layer)")
        warnings.warn(f"{command}: layer {layer} resumes its checkpoint {str(path['checkpoint'])!r} (step {before}), "
                      f"{inputs}: it goes on from there on other inputs, which no greedy pretraining does; to retrain "
                      f"the layers above on the new features, {advice}", TrainingWarning, stacklevel=users_stacklevel())
        return before

    def _other_inputs(self, layer: int) -> str | None:
        """How the run of ``layer``'s checkpoint is on other features than the layer below gives now, for the
        warning: a layer below trained in this call, or the layer below is at another step than the record holds
        (``None``: neither, or no record)."""
        this = "call" if _WORDING.get() is None else "run"
        if self.trained_below is not None:
            return (f"a run on the features of layer {self.trained_below} as they were before this {this} trained "
                    "that layer further")
        recorded, now = self._recorded(layer), self.steps.get(layer - 1)
        if recorded is None or now is None or recorded == now:
            return None
        return (f"a run on the features of layer {layer - 1} at its step {recorded}, which an earlier {this} trained "
                f"further (to step {now})")

    def fit(self, layer: int, objective: Any, data: Any, **kwargs: Any) -> Any:
        """:func:`hybridpgm.fit` of ``objective`` on ``data`` for ``layer``, warning first when it resumes a
        checkpoint on features other than its run's (:meth:`check_resume`), and keeping ``layer``'s record
        (:meth:`record`) when it starts afresh and when the fit returns.

        :returns: the :class:`~hybridpgm.train.FitResult`.
        """
        from hybridpgm.train.progress import labelled
        from hybridpgm.train.trainer import fit

        before = self.check_resume(layer, record=True)
        with labelled(f"{self.model} layer {layer} of {len(self.paths)}"):  # the bar names the layer, from 0
            result = fit(objective, data, **kwargs)
        if self.trained_below is None and result.steps > (before or 0):
            self.trained_below = layer
        self.steps[layer] = result.steps
        self.record(layer)  # the run finished on the features the layer below has now
        return result
