"""Pyro autoguides and the data plate: whether an autoguide's parameters belong to examples or to positions.

A Pyro autoguide (:class:`~pyro.infer.autoguide.AutoNormal`, ...) sizes its parameters from its first run.  Over a
local latent in ``pyro.plate("data", x.shape[0])`` it makes one parameter per *position* of that first batch: in
:func:`hybridpgm.fit` with ``batch_size`` :math:`B < N`, with ``shuffle``, with ``accumulate`` or on several
processes, position :math:`i` holds other examples at other steps, and one posterior is silently trained for all of
them.  Over a plate that subsamples a fixed data set, ``pyro.plate("data", N, subsample=idx)``, ``AutoNormal`` and
``AutoDelta`` make :math:`N` parameters and pick the batch's rows by ``idx``, but only from a plate given to them
with ``create_plates=``: the plate they make themselves draws its own random indices, not ``idx`` (a model
drawing its indices itself, ``subsample_size=``, takes the guide's: Pyro's own subsampling).  The joint
autoguides (:class:`~pyro.infer.autoguide.AutoContinuous`: ``AutoDiagonalNormal``,
``AutoLowRankMultivariateNormal``, ...) take no ``create_plates`` (Pyro's ``TypeError``) and keep one joint latent
of the batch's positions: they fit a data plate only full-batch, or as the part over the global latents of an
``AutoGuideList(model, create_plates=...)``.

:func:`check_subsampled_autoguides` refuses, on the first batch, what is wrong whatever the batching;
:func:`check_autoguide_batching` refuses parameters per position under a batching that moves the examples.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoContinuous, AutoGuide, AutoGuideList
from pyro.poutine.util import site_is_subsample

from hybridpgm.errors import ConfigError, TrainingWarning
from hybridpgm.infer.particle_probe import probing
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["AutoguideBatchingCheck", "check_autoguide_batching", "check_subsampled_autoguides"]


def _fix(plate: str, num_examples: int | str) -> str:
    """The ways out, for a data plate ``plate`` of ``num_examples`` examples."""
    return (f"make the latent global, or give the model pyro.plate({plate!r}, {num_examples}, subsample=idx) with the "
            f"examples' indices idx as data and an amortized guide (an encoder of x) or AutoNormal / AutoDelta(model, "
            f"create_plates=lambda idx, x: pyro.plate({plate!r}, {num_examples}, subsample=idx)) (a joint autoguide, "
            "such as AutoDiagonalNormal, only as the part over the global latents of AutoGuideList(model, "
            "create_plates=...)), or train full-batch: batch_size >= N, shuffle=False, accumulate=1, one process")


def _parts(fn: Any) -> list[tuple[AutoGuide, AutoGuide]]:
    """``(part, master)`` for each run autoguide of ``fn``: itself, or each part of an ``AutoGuideList``."""
    if not isinstance(fn, AutoGuide) or getattr(fn, "prototype_trace", None) is None:
        return []
    if isinstance(fn, AutoGuideList):
        return [(part, fn) for part in fn if isinstance(part, AutoGuide)
                and getattr(part, "prototype_trace", None) is not None]
    return [(fn, fn)]


def _given_plates(master: AutoGuide, args: tuple, kwargs: dict) -> set[str]:
    """The names of the plates ``master``'s ``create_plates`` returns for ``args`` (the others it makes itself)."""
    if getattr(master, "create_plates", None) is None:
        return set()
    plates = master.create_plates(*args, **kwargs)
    return {p.name for p in ([plates] if isinstance(plates, pyro.plate) else plates)}


def _subsampled(frame: Any) -> bool:
    return frame.vectorized and frame.full_size is not None and frame.full_size != frame.size


def check_subsampled_autoguides(model: Callable, guide: Callable, args: tuple, kwargs: dict,
                                modules: Iterable[torch.nn.Module], what: str) -> None:
    """Refuse a run autoguide among ``model`` and ``guide`` with a latent site in a plate that subsamples the batch
    from a larger data set (``pyro.plate("data", N, subsample=idx)``, :math:`B < N` here) when the autoguide
    makes that plate itself (no ``create_plates=`` returning it: its own plate draws random indices, not ``idx``:
    ``AutoNormal``'s locations of 8 examples trained on batches of 4 all ended near the data's mean, 7.5 to 8.5,
    against exact posterior means 0 to 16.8) or is a joint autoguide (one latent over the batch's positions).
    A plate whose indices the model draws itself (``pyro.plate("data", x.shape[0], subsample_size=4) as ind``,
    its data picked by ``ind``) is Pyro's own subsampling and passes: the ELBO replays the autoguide's indices into
    the model (a full batch in order trained each location to its exact posterior mean).

    :param args: the programs' positional arguments (a batch).
    :param kwargs: their keyword arguments.
    :param modules: modules whose buffers the call of ``create_plates`` must leave alone.
    :param str what: the objective, as the message names it.
    :raises ConfigError: naming the autoguide, the site, the plate, its sizes and the fix."""
    for fn in (model, guide):
        parts = _parts(fn)
        if not parts:
            continue
        with probing(model, guide, *modules), torch.no_grad():
            given = _given_plates(parts[0][1], args, kwargs)
        own: dict[str, bool] | None = None  # plate name -> whether the model draws that plate's indices itself
        for part, master in parts:
            for name, site in part.prototype_trace.iter_stochastic_nodes():
                for frame in filter(_subsampled, site["cond_indep_stack"]):
                    if isinstance(part, AutoContinuous):
                        raise ConfigError(_subsample_message(what, part, name, frame))
                    if frame.name in given:
                        continue
                    if own is None:
                        with probing(model, guide, *modules), torch.no_grad():
                            own = _self_drawn_plates(master, args, kwargs)
                    if not own.get(frame.name, False):
                        raise ConfigError(_subsample_message(what, part, name, frame))


def _self_drawn_plates(master: AutoGuide, args: tuple, kwargs: dict) -> dict[str, bool]:
    """For each subsampling plate of ``master``'s model on ``args``: whether the model draws its indices itself
    (``pyro.plate(name, size, subsample_size=s)``: Pyro's ELBOs replay the guide's indices into the model, which
    picks its data by them) rather than taking them given (``subsample=idx``), from the plate's ``_Subsample``
    site in a plain trace of the model."""
    trace = poutine.block(poutine.trace(master.model).get_trace)(*args, **kwargs)
    return {name: getattr(site["fn"], "subsample_size", None) is not None
            for name, site in trace.nodes.items() if site_is_subsample(site)}


def _subsample_message(what: str, part: AutoGuide, name: str, frame: Any) -> str:
    kind = type(part).__name__
    head = (f"{what}: the {kind}'s latent site {name!r} lies in plate {frame.name!r}, which subsamples {frame.size} "
            f"of {frame.full_size} examples")
    if isinstance(part, AutoContinuous):
        return (f"{head}; a joint autoguide ({kind}) keeps one latent over the batch's {frame.size} positions, not "
                "the examples, and takes no create_plates= (Pyro's TypeError): use AutoNormal or AutoDelta(model, "
                f"create_plates=...) for the local latents, or AutoGuideList(model, create_plates=...) with the "
                f"{kind} over the global latents only (poutine.block(model, expose=[...])) and AutoNormal over "
                "the local ones")
    return (f"{head}, and the {kind} makes that plate itself, drawing its own random indices instead of the "
            f"batch's: pass {kind}(model, create_plates=fn), fn taking the model's arguments and returning "
            f"pyro.plate({frame.name!r}, {frame.full_size}, subsample=idx) with the model's idx")


def _resized(args: tuple, rows: int, new_rows: int) -> tuple:
    """``args`` with each tensor of ``rows`` leading rows given ``new_rows``, row :math:`i` its row
    :math:`i \\bmod` ``rows`` (one more: its first row repeated; one fewer: its last left out; twice: repeated)."""
    return tuple(a[torch.arange(new_rows, device=a.device) % rows]
                 if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == rows else a for a in args)


def _probe(master: AutoGuide, args: tuple, kwargs: dict, rows: int) -> tuple[dict[str, dict] | None, list[str]]:
    """The latent sites of ``master``'s model on ``args`` resized to :math:`B + 1`, else :math:`B - 1` (for
    :math:`B \\ge 2`), else :math:`2B` rows (a model may take only some numbers of rows: at most ``num_data``,
    an even number), and the model's errors on the sizes it failed on (``None`` and all of them if it failed on
    each)."""
    errors = []
    for new_rows in (rows + 1, rows - 1, 2 * rows):
        if new_rows < 1:
            continue
        try:
            return _latents(master, _resized(args, rows, new_rows), kwargs), errors
        except Exception as error:  # noqa: BLE001 - the next size, then the plates' sizes instead
            message = (str(error).splitlines() or [""])[0][:200]  # Pyro appends the trace's shapes
            errors.append(f"{type(error).__name__}: {message} on {new_rows} rows")
    return None, errors


def _latents(master: AutoGuide, args: tuple, kwargs: dict) -> dict[str, dict]:
    """The latent sites of ``master``'s model on ``args``, traced as its prototype is (observed sites hidden)."""
    model = poutine.block(master.model, master._prototype_hide_fn)
    trace = poutine.block(poutine.trace(model).get_trace)(*args, **kwargs)
    return {name: site for name, site in trace.iter_stochastic_nodes()}


def _prototype_latents(parts: list[tuple[AutoGuide, AutoGuide]], args: tuple, kwargs: dict) -> dict[str, dict] | None:
    """The latent sites of the autoguides' prototype traces when each was traced on these very arguments (the same
    objects: :func:`hybridpgm.fit`'s ``setup`` has just run the autoguide on this batch), as :func:`_latents` would
    trace them again; ``None`` when one was traced on others (the autoguide ran before ``fit``)."""
    latents = {}
    for part, _ in parts:
        given = part.prototype_trace.nodes.get("_INPUT")
        if given is None or len(given["args"]) != len(args) or any(a is not b for a, b in zip(given["args"], args)) \
                or given["kwargs"].keys() != kwargs.keys() or any(given["kwargs"][k] is not kwargs[k] for k in kwargs):
            return None
        latents.update(part.prototype_trace.iter_stochastic_nodes())
    return latents


def _frame_of(site: dict, dim: int) -> Any:
    """The vectorized plate frame of ``site`` at position ``dim`` of its value's shape, or ``None``."""
    batch_dims = len(site["value"].shape) - site["fn"].event_dim
    return next((f for f in site["cond_indep_stack"] if f.vectorized and batch_dims + f.dim == dim), None)


def check_autoguide_batching(model: Callable, guide: Callable, args: tuple, kwargs: dict,
                             modules: Iterable[torch.nn.Module], what: str, *, num_examples: int, shuffle: bool,
                             accumulate: int = 1, world_size: int = 1) -> None:
    """Refuse a run autoguide among ``model`` and ``guide`` whose parameters follow the batch's positions (a latent
    site whose shape follows the batch's number of rows, other than through a plate of a fixed data set that the
    autoguide gets from ``create_plates=``) when :func:`hybridpgm.fit`'s batching puts other examples at those
    positions: ``batch_size`` :math:`B < N`, ``shuffle`` (of :math:`N > 1` examples), ``accumulate > 1`` or
    several processes.  Full-batch, unshuffled, on one process, every step sees the same rows in the same
    positions, and nothing is refused.

    Which dims follow the batch is learnt from the model's latent sites on ``args`` and on ``args`` with one more
    row (each tensor of :math:`B` leading rows gets its first row again), or, if the model fails on that, one
    fewer, or twice as many, traced under :func:`~hybridpgm.infer.particle_probe.probing` (no random numbers used
    up, no buffer changed): a dim whose size changes follows the batch, and so does a plate subsampling a set
    whose size changes (``pyro.plate("data", x.shape[0], subsample_size=s)``: the autoguide makes one parameter
    per row of the first batch).  For a model that fails on all three only its plates' sizes are known, and a
    global plate may have the batch's size: a latent in a plate of :math:`B` rows is then warned of
    (:class:`~hybridpgm.errors.TrainingWarning`, naming the model's errors), not refused.

    :param args: the programs' positional arguments: the first batch, whose first tensor has :math:`B` rows.
    :param kwargs: their keyword arguments.
    :param modules: modules whose buffers the probe must leave alone.
    :param str what: the objective, as the message names it.
    :param int num_examples: :math:`N`, the examples of the data set.
    :param bool shuffle: whether each epoch's batches are drawn in a new order.
    :param int accumulate: micro-batches per batch.
    :param int world_size: processes, each taking its own rows.
    :raises ConfigError: naming the autoguide, the site, the plate, :math:`B`, :math:`N` and the fix."""
    rows = next((a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim()), None)
    moves = [reason for moved, reason in (
        (rows is not None and rows < num_examples, f"batch_size={rows} < N={num_examples}"),
        (shuffle and num_examples > 1, "shuffle=True reorders the examples every epoch"),
        (accumulate > 1, f"accumulate={accumulate} splits each batch"),
        (world_size > 1, f"{world_size} processes each take other examples")) if moved]
    if rows is None or not moves:
        return
    for fn in (model, guide):
        parts = _parts(fn)
        if not parts:
            continue
        master = parts[0][1]
        with probing(model, guide, *modules), torch.no_grad():
            given = _given_plates(master, args, kwargs)
            now = _prototype_latents(parts, args, kwargs)
            if now is None:
                now = _latents(master, args, kwargs)
            other, errors = _probe(master, args, kwargs, rows)
        for part, _ in parts:
            for name, _site in part.prototype_trace.iter_stochastic_nodes():
                if name in now:
                    _check_site(what, part, name, now[name], None if other is None else other.get(name), given, rows,
                                num_examples, moves, errors)


def _check_site(what: str, part: AutoGuide, name: str, site: dict, probed: dict | None, given: set[str],
                rows: int, num_examples: int, moves: list[str], errors: list[str]) -> None:
    """Refuse ``site`` (traced on the first batch; ``probed``: on another number of rows, ``None`` if the model
    failed on each, ``errors`` its errors) when a dim of its value follows the batch's rows other than through a
    plate of a fixed data set given by ``create_plates`` to an autoguide that indexes its parameters by it."""
    shape = site["value"].shape
    same_rank = probed is not None and len(probed["value"].shape) == len(shape)
    for dim, size in enumerate(shape):
        frame = _frame_of(site, dim)
        if same_rank:
            other = _frame_of(probed, dim)
            resized = frame is not None and other is not None and other.full_size != frame.full_size
            follows = probed["value"].shape[dim] != size or (resized and _subsampled(frame))
            fixed = frame is not None and other is not None and not resized
        else:  # no probe: a plate of B rows, or subsampling a set of B, follows the batch
            follows = frame is not None and rows in (frame.size, frame.full_size)
            fixed = frame is not None and _subsampled(frame) and frame.full_size != rows
        if not follows or (fixed and frame.name in given and not isinstance(part, AutoContinuous)):
            continue
        where = f"plate {frame.name!r}" if frame is not None else f"dim {dim} of its value (no plate)"
        fix = _fix(frame.name if frame is not None else 'data', num_examples)
        if probed is None and errors:  # only the plates' sizes to go by: a global plate may be the batch's size
            warnings.warn(
                f"{what}: could not tell whether the {type(part).__name__}'s latent site {name!r} in {where} follows "
                f"the batch: the model raised {'; '.join(errors)}, and the plate has the batch's {rows} rows.  If it "
                f"is a local latent, its parameters belong to the first batch's {rows} positions, not to the "
                f"N={num_examples} examples, and fit's batches put other examples at those positions "
                f"({'; '.join(moves)}): one posterior would be trained for several examples.  Then {fix}",
                TrainingWarning, stacklevel=users_stacklevel())
            return
        raise ConfigError(
            f"{what}: the {type(part).__name__}'s latent site {name!r} in {where} has parameters for each of the "
            f"first batch's {rows} positions, not for each of the N={num_examples} examples, and fit's batches put "
            f"other examples at those positions ({'; '.join(moves)}): one posterior would be trained for several "
            f"examples, silently.  Either {fix}")


class AutoguideBatchingCheck:
    """Mixin: :meth:`check_batching` for an objective holding ``model``, ``guide``, ``model_kwargs`` and ``module``
    (:class:`~hybridpgm.infer.SVIObjective`, :class:`~hybridpgm.infer.model_guide_objective.ModelGuideObjective`)."""

    def _autoguide_args(self, batch: Any) -> tuple:
        """The programs' positional arguments for ``batch``: a tuple or list is the arguments, anything else the
        one argument (an objective that checks its batches overrides this)."""
        return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)

    def check_batching(self, batch: Any, *, num_examples: int, shuffle: bool, accumulate: int = 1,
                       world_size: int = 1) -> None:
        """Refuse an autoguide whose parameters belong to the positions of the batch (a local latent in
        ``pyro.plate("data", x.shape[0])``) when :func:`hybridpgm.fit`'s batches put other examples at those
        positions (:func:`check_autoguide_batching`); ``fit`` calls it after ``setup``, with the same batch.

        :param batch: the first batch (as for ``setup``).
        :param int num_examples: the examples :math:`N` of the data set.
        :param bool shuffle: whether the batches are drawn in a new order every epoch.
        :param int accumulate: micro-batches per batch.
        :param int world_size: processes.
        :raises ConfigError: naming the autoguide, the site, the plate, :math:`B`, :math:`N` and the fixes.
        :raises DataError: ``batch`` is not a batch the objective takes (as its ``setup``)."""
        check_autoguide_batching(self.model, self.guide, self._autoguide_args(batch), self.model_kwargs,
                                 (self.module,), type(self).__name__, num_examples=num_examples, shuffle=shuffle,
                                 accumulate=accumulate, world_size=world_size)
