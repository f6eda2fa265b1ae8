"""Shared plumbing of the objectives that train a Pyro ``model``/``guide`` pair.

:class:`ModelGuideObjective` finds the generative parameters :math:`\\theta`
(those of the model) and the recognition parameters :math:`\\phi` (those of the
guide), builds the ``module`` that :func:`hybridpgm.fit` checkpoints, and turns
a batch into the model's arguments.  Subclasses define :meth:`players` and
:meth:`loss` (see :mod:`hybridpgm.train.objective`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import torch
from pyro.infer.autoguide import AutoGuide
from torch import nn

from hybridpgm.checks import flag
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.infer.autoguide_plates import AutoguideBatchingCheck, check_subsampled_autoguides
from hybridpgm.infer.global_share import share_scope
from hybridpgm.infer.particle_probe import build_autoguides
from hybridpgm.infer.subsample_scale import probe_batch
from hybridpgm.summary_repr import model_guide_text
from hybridpgm.train.objective import elbo_settings

__all__ = ["ModelGuideObjective"]


def _owner(fn) -> nn.Module | None:
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


class ModelGuideObjective(AutoguideBatchingCheck):
    """Base class: a model/guide pair and its two parameter groups.

    Parameters are found, in order of preference, from

    1. ``model_parameters`` / ``guide_parameters`` when given;
    2. the methods ``model_parameters()`` / ``guide_parameters()`` of the module
       that owns both ``model`` and ``guide`` (e.g.
       :class:`~hybridpgm.generative.SigmoidBeliefNet`);
    3. ``parameters()`` of the two different modules owning ``model`` and ``guide``.

    :param callable model: Pyro model called as ``model(*batch)``.
    :param callable guide: Pyro guide called as ``guide(*batch)``.
    :param model_parameters: optional explicit :math:`\\theta`.
    :param guide_parameters: optional explicit :math:`\\phi`.
    :param dict model_kwargs: keyword arguments passed to model and guide on every
        call (for example ``num_data`` for a subsampled plate).
    :param module: the module holding every parameter (found from ``model`` /
        ``guide`` when they are modules or bound methods of modules).
    :param bool per_example: divide each loss by the batch's number of examples :math:`B` (default ``True``,
        as :class:`~hybridpgm.infer.SVIObjective` does), so that a model whose data plate is the batch reports
        nats per example.  Pass ``False`` when the data plate subsamples the batch from a larger data set
        (``model_kwargs={"num_data": N}``, ``pyro.plate("data", N, subsample=...)``): its sites' log-densities
        are then scaled by :math:`N / B`, the loss is already an unbiased full-data estimate, and a further
        division by :math:`B` would make the update depend on the batch size and on ``fit``'s
        ``accumulate``.  With ``per_example=True`` the subclasses' ``loss`` refuses such a plate
        (:meth:`check_per_example`).  With ``per_example=True`` a latent site outside every plate of the batch's
        size (a global latent) counts once per update of ``fit`` where the subclass's estimator allows it
        (:meth:`global_share`: NVIL); VIMCO, RWS and wake-sleep refuse such a site.
    :raises ConfigError: ``model`` or ``guide`` is not callable, ``model_kwargs`` not a dict, ``module`` not a
        module, ``per_example`` not ``True`` or ``False``, or the two parameter groups cannot be told apart
        (or share a parameter).

    A Pyro autoguide (:class:`~pyro.infer.autoguide.AutoNormal`, ...) makes its parameters at its first call:
    :func:`hybridpgm.fit` runs it once through :meth:`setup` before it builds the optimizers, and
    :math:`\\theta` and :math:`\\phi` are listed again then.  Outside ``fit``, call :meth:`setup` on a batch
    before building optimizers from :meth:`players`; the first ``loss`` refuses an autoguide that has not run.
    """

    #: the smallest batch :meth:`check_per_example` has probed (``None``: none yet); a class-level default, so
    #: that an objective pickled before it existed still loads
    _smallest_probed: int | None = None
    #: the sample sites outside the batch's plates, from :meth:`check_per_example`'s first probe (``None``: not
    #: probed yet, or the probe failed); a class-level default, as :attr:`_smallest_probed`
    _global_sites: frozenset[str] | None = None

    def __init__(self, model: Callable, guide: Callable, *,
                 model_parameters: Iterable[nn.Parameter] | None = None,
                 guide_parameters: Iterable[nn.Parameter] | None = None,
                 model_kwargs: dict | None = None, per_example: bool = True,
                 module: nn.Module | None = None):
        if not callable(model) or not callable(guide):
            raise ConfigError("model and guide must be callables (Pyro programs)")
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise ConfigError(f"model_kwargs must be a dict of keyword arguments, got {type(model_kwargs).__name__}")
        if module is not None and not isinstance(module, nn.Module):
            raise ConfigError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.model = model
        self.guide = guide
        self.model_kwargs = dict(model_kwargs or {})
        self.per_example = flag(per_example, f"{type(self).__name__} per_example")
        owner_m, owner_g = _owner(model), _owner(guide)
        owners = [o for i, o in enumerate((owner_m, owner_g)) if o is not None and (i == 0 or o is not owner_m)]
        if module is None and not owners:
            raise ConfigError("neither model nor guide is a torch module (or a method of one): pass module=")
        #: the module :func:`hybridpgm.fit` moves, wraps and checkpoints
        self.module = module if module is not None else owners[0] if len(owners) == 1 else nn.ModuleList(owners)
        #: which groups were given explicitly (the others are found from the owners, again by :meth:`setup`)
        self._explicit = (model_parameters is not None, guide_parameters is not None)
        self._set_groups(model_parameters, guide_parameters)

    #: the groups given explicitly; a class-level default, so that an objective pickled before it existed loads
    #: (and keeps its groups as they are)
    _explicit: tuple[bool, bool] = (True, True)
    #: whether :meth:`check_per_example` has found :attr:`theta` and :attr:`phi` up to date with the programs
    _groups_checked: bool = False

    def _found_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """:math:`(\\theta, \\phi)` as the owners of ``model`` and ``guide`` list them now.

        :raises ConfigError: no owner tells them apart."""
        owner_m, owner_g = _owner(self.model), _owner(self.guide)
        if owner_m is not None and owner_m is owner_g and hasattr(owner_m, "model_parameters"):
            return list(owner_m.model_parameters()), list(owner_m.guide_parameters())
        if owner_m is not None and owner_g is not None and owner_m is not owner_g:
            return list(owner_m.parameters()), list(owner_g.parameters())
        raise ConfigError("cannot tell the model's parameters from the guide's: pass model_parameters= "
                          "and guide_parameters=, or use bound methods of modules")

    def _set_groups(self, model_parameters: Iterable[nn.Parameter] | None,
                    guide_parameters: Iterable[nn.Parameter] | None) -> None:
        """Set :attr:`theta` and :attr:`phi`: those given, the others found from the owners (:meth:`_found_groups`).

        :raises ConfigError: the groups cannot be told apart, share a parameter, or (both found from one owner's
            ``model_parameters()`` / ``guide_parameters()``) leave out one of its trainable parameters."""
        if model_parameters is None or guide_parameters is None:
            theta, phi = self._found_groups()
            model_parameters = theta if model_parameters is None else model_parameters
            guide_parameters = phi if guide_parameters is None else guide_parameters
        self.theta = list(model_parameters)
        self.phi = list(guide_parameters)
        # both groups are the owner's model_/guide_parameters(): what they leave out would silently never be trained
        # (a group given explicitly says what the caller means to train: leaving a layer out freezes it)
        owner_m = _owner(self.model)
        if self._explicit == (False, False) and owner_m is _owner(self.guide) and hasattr(owner_m, "model_parameters"):
            _check_covered(owner_m, self.theta + self.phi)
        shared = {id(p) for p in self.theta} & {id(p) for p in self.phi}
        if shared:
            raise ConfigError(f"{len(shared)} parameter(s) belong to both the model and the guide")

    def setup(self, batch: Any) -> None:
        """Create the parameters of a Pyro autoguide (``model`` or ``guide``) that has not run yet, by running it
        once on ``batch`` (:func:`~hybridpgm.infer.particle_probe.build_autoguides`, as
        :meth:`SVIObjective.setup <hybridpgm.infer.SVIObjective.setup>` does: no random numbers used up, the
        modules' buffers left alone), then list :attr:`theta` and :attr:`phi` again from their owners (a group
        given explicitly stays as given).  :func:`hybridpgm.fit` calls it before it builds the optimizers (and
        before it resumes a checkpoint, whose file then holds the autoguide's parameters); call it yourself
        before building optimizers from :meth:`players` outside ``fit``.

        Before, an autoguide made its parameters at its first call, after the objective had listed
        :math:`\\phi`: the guide was silently never trained, and a resume failed on the parameters the
        checkpoint lacked.

        :param batch: a batch of the data (a tensor ``[B, ...]``, or a tuple of the programs' positional arguments).
        :raises ConfigError: the autoguide's parameters are not in :attr:`module`, or an explicit group was given
            while the autoguide had not run (its parameters did not exist to be listed: run it once on a batch
            before building the objective, or leave the group out), or an autoguide has a latent in a plate that
            subsamples the batch and makes that plate itself or is a joint one
            (:func:`~hybridpgm.infer.autoguide_plates.check_subsampled_autoguides`); also as the constructor.
        :raises DataError: ``batch`` is not a tensor ``[B, ...]`` (or a tuple starting with one)."""
        args, _ = self.batch_args(batch)
        built = build_autoguides(self.model, self.guide, args, self.model_kwargs, self.module, type(self).__name__)
        check_subsampled_autoguides(self.model, self.guide, args, self.model_kwargs, (self.module,),
                                    type(self).__name__)
        self._set_groups(*(None if not given else group for given, group in zip(self._explicit,
                                                                                  (self.theta, self.phi))))
        listed = {id(p) for p in self.theta + self.phi}
        for fn in built:
            left = [name for name, p in fn.named_parameters() if p.requires_grad and id(p) not in listed]
            if left:
                raise ConfigError(
                    f"{type(self).__name__}: the {type(fn).__name__} made its parameters {left} at its first run, so "
                    "the model_parameters= / guide_parameters= given could not list them and they would never be "
                    "trained; run the autoguide once on a batch before building the objective, or leave the "
                    "group out (then found from the autoguide)")
        self._groups_checked = True

    def _check_groups(self) -> None:
        """Refuse :attr:`theta` / :attr:`phi` that no longer list the programs' parameters (an autoguide that has
        not run, or one that ran after the objective listed its groups): an optimizer built from
        :meth:`players` would silently never train them.

        :raises ConfigError: naming the autoguide, or the groups, and the fix (:meth:`setup`)."""
        for fn in (self.model, self.guide):
            if isinstance(fn, AutoGuide) and getattr(fn, "prototype_trace", None) is None:
                raise ConfigError(
                    f"{type(self).__name__}: the {type(fn).__name__} has not run yet, so its parameters do not exist "
                    "and players() leaves them out (an optimizer built from it would never train them); call "
                    "objective.setup(batch) once before building the optimizers (hybridpgm.fit does), or run the "
                    "autoguide once on a batch before building the objective")
        if self._explicit != (True, True):
            found = self._found_groups()
            for given, name, group, now in zip(self._explicit, ("model", "guide"), (self.theta, self.phi), found):
                if not given and [id(p) for p in group] != [id(p) for p in now]:
                    raise ConfigError(
                        f"{type(self).__name__}: the {name}'s parameters changed after the objective listed them "
                        f"({len(group)} then, {len(now)} now: an autoguide run after the objective was built?), so "
                        "players() is out of date; call objective.setup(batch) before building the optimizers "
                        "(hybridpgm.fit does)")
        self._groups_checked = True

    def _autoguide_args(self, batch: Any) -> tuple:
        """The programs' positional arguments for ``batch`` (:meth:`batch_args`, which refuses a batch that is not
        a tensor ``[B, ...]`` or a tuple starting with one)."""
        return self.batch_args(batch)[0]

    @staticmethod
    def batch_args(batch: Any) -> tuple[tuple, int]:
        """The model's positional arguments for ``batch`` and its number of examples.

        :param batch: a tensor ``[B, ...]`` (the one argument), or a tuple or list of arguments whose first is a
            tensor ``[B, ...]``; ``B``, its first dim, is the number of examples.
        :returns: ``(args, B)``, ``args`` the tuple of arguments.
        :raises DataError: ``batch`` is not a tensor ``[B, ...]`` (or a tuple/list starting with one), or
            has no examples.
        """
        args = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch) if isinstance(batch, (tuple, list)) \
            else ()
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() == 0:
            raise DataError(f"a batch must be a tensor [B, ...] or a tuple of them, got {type(batch).__name__}")
        if args[0].shape[0] == 0:
            raise DataError(f"empty batch (shape {tuple(args[0].shape)}); give at least one example")
        return args, args[0].shape[0]

    def check_per_example(self, args: tuple, size: int) -> None:
        """With ``per_example``, refuse a model or guide whose data plate subsamples the batch's ``size`` rows
        from a larger data set (:func:`~hybridpgm.infer.subsample_scale.check_plate_scale`): the loss is then
        already a full-data estimate, and dividing it by ``size`` is wrong.  Probes on the first batch, and
        again only on a batch smaller than any probed before (a plate of ``N`` rows shows no subsampling on a
        batch of all ``N``; it does on a short last batch or a micro-batch of ``accumulate``), as
        :meth:`SVIObjective.loss <hybridpgm.infer.SVIObjective.loss>` does; otherwise one comparison of two
        ints.  The probe uses up no random numbers and leaves the modules' buffers alone.  On the first call it
        also checks that :meth:`players` lists the programs' parameters (every subclass's ``loss`` calls this).

        :param tuple args: the programs' positional arguments (:meth:`batch_args`).
        :param int size: the batch's number of examples :math:`B`.
        :raises ConfigError: such a plate, with ``per_example=True`` (the message names the plate, its sizes
            and the fix ``per_example=False``); or, on the first call, a Pyro autoguide that has not run (its
            parameters do not exist yet) or groups listed before an autoguide ran: call :meth:`setup` first."""
        if not self._groups_checked:  # once per objective: an attribute read on every other step
            self._check_groups()
        if self.per_example:
            probe_batch(self, args, size, type(self).__name__)  # and the global sites, for global_share

    def global_share(self) -> contextlib.AbstractContextManager:
        """The handler that gives the sites outside the batch's plates (found by :meth:`check_per_example`'s first
        probe) the share :math:`m_i / (B R)` of the micro-batch ``fit`` runs in its update
        (:func:`~hybridpgm.infer.global_share.share_scope`), under ``per_example``; else, and for a batch that is
        not split on one process, no handler.  A subclass whose loss is linear in each site's log-density (NVIL's
        ELBO) computes it inside; the importance-weighted ones (VIMCO, RWS, wake-sleep) refuse such sites at any
        ``accumulate`` instead (:mod:`~hybridpgm.infer.global_share`)."""
        return share_scope(self._global_sites) if self.per_example else contextlib.nullcontext()

    def settings(self) -> dict[str, Any]:
        """What defines the objective beyond its parameters, compared when ``fit`` resumes a checkpoint: the
        class and settings of its ELBO (:func:`~hybridpgm.train.objective.elbo_settings`)."""
        elbo = getattr(self, "elbo", None)
        return {} if elbo is None else elbo_settings(elbo)

    def __repr__(self) -> str:
        """``RWS(model=SBN.model, guide=SBN.guide, elbo='...', num_particles=5, ..., per_example=True)``: the
        programs by name, the :meth:`settings` and ``per_example`` (:func:`~hybridpgm.summary_repr.model_guide_text`);
        the networks are left out (``repr(objective.module)`` shows them)."""
        return model_guide_text(self)

    def state_dict(self) -> dict:
        """Extra state kept in checkpoints (none by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`.

        :param dict state: what :meth:`state_dict` returned, read back from a checkpoint by :func:`hybridpgm.fit`
            on resuming; ignored here (there is no extra state to restore)."""


def _check_covered(owner: nn.Module, listed: list[nn.Parameter]) -> None:
    """Refuse an ``owner`` whose ``model_parameters()`` and ``guide_parameters()`` leave out a trainable parameter
    of its own (a subclass's learnable prior mean): no player would train it.

    :raises ConfigError: naming the parameters left out."""
    ids = {id(p) for p in listed}
    left_out = [n for n, p in owner.named_parameters() if p.requires_grad and id(p) not in ids]
    if left_out:
        raise ConfigError(f"{type(owner).__name__}.model_parameters() and guide_parameters() leave out {left_out}, "
                          "which would never be trained: override them in the subclass to list it, or pass the group "
                          "that trains it (model_parameters= or guide_parameters=)")
