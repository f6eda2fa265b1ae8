"""Pyro autoguides and the data plate: whether an autoguide's parameters belong to examples or to positions.

A Pyro autoguide (:class:`~pyro.infer.autoguide.AutoNormal`, ...) sizes its parameters from its first run.  Over a
local latent in ``pyro.plate("data", x.shape[0])`` it makes one parameter per *position* of that first batch: in
:func:`hybridpgm.fit` with ``batch_size`` :math:`B < N`, with ``shuffle``, with ``accumulate`` or on several
processes, position :math:`i` holds other examples at other steps, and one posterior is silently trained for all of
them.  Over a plate that subsamples a fixed data set, ``pyro.plate("data", N, subsample=idx)``, ``AutoNormal`` and
``AutoDelta`` make :math:`N` parameters and pick the batch's rows by ``idx``, but only from a plate given to them
with ``create_plates=``: the plate they make themselves draws its own random indices, not ``idx``.  The joint
autoguides (:class:`~pyro.infer.autoguide.AutoContinuous`: ``AutoDiagonalNormal``,
``AutoLowRankMultivariateNormal``, ...) take no ``create_plates`` (Pyro's ``TypeError``) and keep one joint latent
of the batch's positions: they fit a data plate only full-batch, or as the part over the global latents of an
``AutoGuideList(model, create_plates=...)``.

:func:`check_subsampled_autoguides` refuses, on the first batch, what is wrong whatever the batching;
:func:`check_autoguide_batching` refuses parameters per position under a batching that moves the examples.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoContinuous, AutoGuide, AutoGuideList

from hybridpgm.errors import ConfigError
from hybridpgm.infer.particle_probe import probing

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
        for part, _ in parts:
            for name, site in part.prototype_trace.iter_stochastic_nodes():
                for frame in filter(_subsampled, site["cond_indep_stack"]):
                    if isinstance(part, AutoContinuous) or frame.name not in given:
                        raise ConfigError(_subsample_message(what, part, name, frame))


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


def _longer(args: tuple, rows: int) -> tuple:
    """``args`` with each tensor of ``rows`` leading rows given one more (its first row repeated)."""
    return tuple(torch.cat([a, a[:1]]) if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == rows else a
                 for a in args)


def _latents(master: AutoGuide, args: tuple, kwargs: dict) -> dict[str, dict]:
    """The latent sites of ``master``'s model on ``args``, traced as its prototype is (observed sites hidden)."""
    model = poutine.block(master.model, master._prototype_hide_fn)
    trace = poutine.block(poutine.trace(model).get_trace)(*args, **kwargs)
    return {name: site for name, site in trace.iter_stochastic_nodes()}


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
    row (each tensor of :math:`B` leading rows gets its first row again), traced under
    :func:`~hybridpgm.infer.particle_probe.probing` (no random numbers used up, no buffer changed); a model that
    fails on one more row is judged by its plates' sizes (a plate of :math:`B` follows the batch).

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
            now = _latents(master, args, kwargs)
            try:
                more = _latents(master, _longer(args, rows), kwargs)
            except Exception:  # noqa: BLE001 - judged by the plates' sizes instead
                more = None
        for part, _ in parts:
            for name, _site in part.prototype_trace.iter_stochastic_nodes():
                if name in now:
                    _check_site(what, part, name, now[name], None if more is None else more.get(name), given, rows,
                                num_examples, moves)


def _check_site(what: str, part: AutoGuide, name: str, site: dict, longer: dict | None, given: set[str],
                rows: int, num_examples: int, moves: list[str]) -> None:
    """Refuse ``site`` (traced on the first batch; ``longer``: on one more row, ``None`` if that failed) when a dim
    of its value follows the batch's rows other than through a plate of a fixed data set given by
    ``create_plates`` to an autoguide that indexes its parameters by it."""
    shape = site["value"].shape
    same_rank = longer is not None and len(longer["value"].shape) == len(shape)
    for dim, size in enumerate(shape):
        frame = _frame_of(site, dim)
        if same_rank:
            follows = longer["value"].shape[dim] != size
            other = _frame_of(longer, dim)
            fixed = frame is not None and other is not None and other.full_size == frame.full_size
        else:  # the model failed on one more row: a plate of B rows follows the batch
            follows = frame is not None and frame.size == rows
            fixed = frame is not None and _subsampled(frame)
        if not follows or (fixed and frame.name in given and not isinstance(part, AutoContinuous)):
            continue
        where = f"plate {frame.name!r}" if frame is not None else f"dim {dim} of its value (no plate)"
        raise ConfigError(
            f"{what}: the {type(part).__name__}'s latent site {name!r} in {where} has parameters for each of the "
            f"first batch's {rows} positions, not for each of the N={num_examples} examples, and fit's batches put "
            f"other examples at those positions ({'; '.join(moves)}): one posterior would be trained for several "
            f"examples, silently.  Either {_fix(frame.name if frame is not None else 'data', num_examples)}")


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
