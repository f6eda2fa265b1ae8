"""Training and evaluation modes, put back as they were.

``module.train(mode)`` sets every sub-module to one mode, so code that
switches a model to ``eval()`` for a moment and then calls ``train()``
unfreezes the parts the user froze (a pretrained batch norm in ``eval()``
inside a model being fine-tuned: its running statistics then move).
:func:`keeping_modes` records each sub-module's own flag and restores it.

It does so holding hybridpgm's process-wide lock
(:func:`~hybridpgm.global_state_lock.holding_global_state`): two threads querying one model at once (a
:class:`~hybridpgm.gp.DeepKernelGP` in training mode) each recorded the modes the other had set for its query,
and the last restore left the model in ``eval()``.  :func:`hybridpgm.fit` keeps the modes of its model for the
whole run and gives the lock up between its steps.

:func:`train_models_in_eval` is ``fit``'s rule for a model in ``eval()`` as a whole (it trains in training mode);
the warning it returns names the parts the caller froze that the switch puts in training too (their batch norm's
running statistics move, their dropout is on), with the calls that keep them in ``eval()``.
"""

from __future__ import annotations

import contextlib
import keyword
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from hybridpgm.global_state_lock import holding_global_state

__all__ = ["keeping_modes", "train_models_in_eval"]


@contextlib.contextmanager
def keeping_modes(*modules: nn.Module) -> Iterator[None]:
    """Restore the ``training`` flag of every sub-module of ``modules`` on exit, also by an exception.

    Each module's flag is set directly (``m.training = flag``), so no step of the restore flips a module that is
    to stay as it was (a parent's recursive ``train(True)`` would unfreeze a frozen batch norm until its own turn
    came).  A module whose class overrides :meth:`~torch.nn.Module.train` and whose mode changed first gets its
    own ``train(flag)`` call, while its flag still differs, for its side effects (GPyTorch's modules drop their
    caches on a change of mode), after which every flag is set.  The restore finishes also when one of those
    calls, or an interrupt, raises: the exception is re-raised after it.  The whole scope holds hybridpgm's
    process-wide lock (see the module's docstring).
    """
    with holding_global_state():  # from the snapshot to the restore: no other thread's call in between
        modes = [(m, m.training) for module in modules for m in module.modules()]  # pre-order: parents first
        try:
            yield
        finally:
            _restore(modes)


def _overrides_train(module: nn.Module) -> bool:
    return type(module).train is not nn.Module.train


def _set_flags(modes: list[tuple[nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training


def _restore(modes: list[tuple[nn.Module, bool]]) -> None:
    """Put every recorded flag back (see :func:`keeping_modes`); the first exception is re-raised at the end."""
    error: BaseException | None = None
    hooks = [(m, training) for m, training in modes if m.training != training and _overrides_train(m)]
    for _attempt in range(3):  # an interrupt anywhere below: all steps are idempotent, start again
        try:
            # the overriding train() first, while the module's flag still differs: GPyTorch clears its caches
            # (a variational strategy's Cholesky factor) only on a change of mode, which setting the flag
            # first would hide (review C: an SVGP left in eval() predicted from the factor of before fit's step)
            for m, training in hooks:
                if m.training != training:  # not done by an earlier attempt or by a parent's call
                    try:
                        m.train(training)
                    except BaseException as e:  # the other modules first, re-raised below
                        if error is None:
                            error = e
            _set_flags(modes)  # every flag, including what those calls set on their descendants
            break
        except BaseException as e:
            if error is None:
                error = e
    if error is not None:
        raise error


def train_models_in_eval(module: nn.Module) -> str | None:
    """Switch to training mode a model that is in ``eval()`` as a whole (straight from :func:`hybridpgm.load`, or
    after an evaluation), as :func:`hybridpgm.fit` trains it; a model in training mode keeps the parts the caller
    froze in ``eval()`` (a pretrained batch norm) as they are.  An objective's own container of models (an
    :class:`~torch.nn.ModuleDict` or :class:`~torch.nn.ModuleList` itself, not a subclass, which is a user's model
    whose frozen parts stay frozen: a GAN's generator and discriminator, NVIL's
    model and baselines, a model and a guide of two modules) is not a model: the rule applies to each model it
    holds, each judged as a whole (the container is always in training mode, so a loaded generator inside it
    trained in ``eval()``: batch norm on its running statistics, which never moved, and dropout off).

    A switched model may hold a part the caller froze (every parameter ``requires_grad=False``, after
    :func:`hybridpgm.load`: ``model.encoder.requires_grad_(False)``) whose layers act differently in training
    mode; the switch moves that part's batch-norm running statistics and turns its dropout on, which the caller
    cannot have asked for.  The warning returned names each such part (by dotted path) and how to keep it in
    ``eval()``.

    :param module: the objective's ``module``.
    :returns: the warning :func:`hybridpgm.fit` gives (once per call), or ``None``.
    """
    notes: list[str] = []
    _train_models(module, None, None, notes)
    return "fit: " + "; and ".join(notes) if notes else None


def _train_models(module: nn.Module, key: str | None, accessor: str | None, notes: list[str]) -> None:
    """:func:`train_models_in_eval` of ``module``, held under ``key`` (``None``: the objective's module itself) and
    reached by the expression ``accessor`` (``"objective.module['generator']"``)."""
    kind = type(module)
    if kind in (nn.ModuleDict, nn.ModuleList):  # exactly: a user's subclass is a model (review D)
        module.training = True
        holder = accessor or "objective.module"
        for child_key, child in module.named_children():
            index = child_key if kind is nn.ModuleList else repr(child_key)  # objective.module[1], ['generator']
            _train_models(child, child_key, f"{holder}[{index}]", notes)
    elif not module.training:
        note = _frozen_parts_note(module, key, accessor)
        if note is not None:
            notes.append(note)
        module.train()


#: layers whose output depends on the mode, with what training mode does to them
_MODE_LAYERS = ((_NormBase, "the running statistics of its {} will move"), (_DropoutNd, "its {} will be on"))


def _mode_layers(part: nn.Module) -> list[str]:
    """What training mode changes in ``part``: its batch norm (tracking running statistics) and dropout
    (``p > 0``) layers now in ``eval()``, each kind once, by class name."""
    found: dict[str, str] = {}
    for layer in part.modules():
        if layer.training:
            continue
        for kind, effect in _MODE_LAYERS:
            if isinstance(layer, kind) and (layer.track_running_stats if kind is _NormBase else layer.p > 0):
                found.setdefault(type(layer).__name__, effect.format(type(layer).__name__))
    return list(found.values())


def _frozen_parts(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The outermost sub-modules of ``model`` (dotted paths) all of whose parameters, at least one, are frozen."""
    for name, child in model.named_children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            yield prefix + name, child
        else:
            yield from _frozen_parts(child, f"{prefix}{name}.")


def _accessor(variable: str, path: str) -> str:
    if all(part.isidentifier() and not keyword.iskeyword(part) for part in path.split(".")):
        return f"{variable}.{path}"
    return f"{variable}.get_submodule({path!r})"


def _frozen_parts_note(model: nn.Module, key: str | None = None, accessor: str | None = None) -> str | None:
    """What switching ``model`` (in ``eval()``) to training mode does to its frozen parts, or ``None``: each
    outermost sub-module whose parameters are all frozen and that holds batch norm or dropout in ``eval()``, by
    dotted path, with what changes and the calls that keep it in ``eval()``: on ``model`` for the objective's
    module, on the expression that reaches a model of the objective's container from the objective given to fit
    (``objective.module['generator'].train()``, ``objective.module[1].train()`` for the guide's module of a model
    and a guide: the caller may hold the model under any name, or not at all).

    :param model: a model about to be switched by :func:`train_models_in_eval`.
    :param key: its key in the objective's container (``None``: the model is the objective's module).
    :param accessor: the expression that reaches it from the objective (``None``: the objective's module).
    """
    parts = [(path, effects) for path, part in _frozen_parts(model) if (effects := _mode_layers(part))]
    if not parts:
        return None
    variable = "model" if accessor is None else accessor
    what = f"the model ({type(model).__name__})" if key is None else \
        f"the objective's model {key!r} ({type(model).__name__})"
    named = "; ".join(f"{path!r} ({', '.join(effects)})" for path, effects in parts)
    keep = "; ".join(f"{_accessor(variable, path)}.eval()" for path, _ in parts)
    given = "" if accessor is None else "objective being the objective given to fit; "
    return (f"{what} is in eval() as a whole (as a model from hybridpgm.load is), so fit puts it in training mode "
            f"for the run, and with it its frozen part{'s' if len(parts) > 1 else ''} {named}; to keep "
            f"{'them' if len(parts) > 1 else 'it'} in eval(), call {variable}.train(); {keep} before fit ({given}fit "
            "leaves the parts of a model in training mode in the modes they are in)")
