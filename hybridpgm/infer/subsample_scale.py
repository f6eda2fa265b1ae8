"""Refuse a per-example division of a loss that a subsampled data plate already scales to the full data.

An objective with ``per_example=True`` (:class:`~hybridpgm.infer.SVIObjective`'s default) divides its loss by
the batch's :math:`B` examples, taking the model's data plate to be the batch.  A data plate that is a
subsample of :math:`N` rows (``pyro.plate("data", N, subsample=idx)``, ``pyro.plate("data", N,
subsample_size=B)``, ``VAE.model(x, num_data=N)``, :class:`~hybridpgm.bayesian_nn.BayesianRegressor`) has
already multiplied its sites' log-densities by :math:`N / B`, so the loss is an unbiased full-data estimate

.. math:: \\widehat{\\mathcal L} = \\mathrm{KL}_{\\text{global}} + \\frac{N}{B} \\sum_{n=1}^{B} \\ell_n ,

and dividing it by :math:`B` once more gives :math:`\\widehat{\\mathcal L} / B`: the step size then changes with
the batch size, a short last batch of :math:`B'` rows weighs :math:`B / B'` times as much as the others, and
:func:`hybridpgm.fit`'s ``accumulate`` (micro-batch :math:`i` of :math:`m_i` rows weighted by :math:`m_i / B`)
multiplies the data term by about ``accumulate``.  Such an objective wants ``per_example=False``.

:func:`check_plate_scale` looks for that plate in one (guide, model) probe trace pair: a plate frame of a
sample site whose subsample size is the batch's :math:`B` and whose full size is another (Pyro records a
subsampled plate in each site's ``cond_indep_stack`` as a
:class:`~pyro.poutine.indep_messenger.CondIndepStackFrame` with ``size`` the subsample size and ``full_size``
the plate's size).  Not refused:

* a scale that is not a subsampled plate (a KL anneal by :func:`pyro.poutine.scale`, SV-DKL's likelihood);
* a plate that subsamples the data it is given, ``model(x_full)`` with ``pyro.plate("data", N,
  subsample_size=b)``: the batch is then the :math:`N` rows, and dividing by :math:`N` is right;
* a subsampled plate of another size than the batch, or nested inside another plate (words sampled within
  each document of the batch, even where as many words as documents are drawn): only a site's outermost plate
  is taken for the data plate;
* a plate whose subsample is the whole of it (a batch holding the full data set, :math:`N / B = 1`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pyro.poutine as poutine
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.infer.global_share import sites_outside_batch_plates
from hybridpgm.infer.particle_probe import probing
from hybridpgm.infer.row_probe import probe_doubled

__all__ = ["check_plate_scale", "probe_batch", "scaled_batch_plate", "subsample_factor"]


def _as_int(size: Any) -> int | None:
    """A plate size as an ``int`` (a 0-d or one-element tensor under the JIT), ``None`` where it has none."""
    if isinstance(size, torch.Tensor):
        return int(size.item()) if size.numel() == 1 else None
    return int(size) if isinstance(size, int) else None


def subsample_factor(site: dict) -> float:
    """The factor :math:`\\prod N_p / B_p` by which the subsampled plates of ``site`` scale its log-density (1.0
    for a site in no subsampled plate): the part of ``site["scale"]`` that data subsampling put there, without a
    :func:`pyro.poutine.scale` of the user's own (a KL weight) or a mask.

    :param dict site: a sample site of a Pyro trace."""
    factor = 1.0
    for frame in site.get("cond_indep_stack", ()):
        size, full = _as_int(frame.size), _as_int(frame.full_size)
        if size and full is not None and full != size:
            factor *= full / size
    return factor


def scaled_batch_plate(traces: Iterable[tuple[str, poutine.Trace]], batch: int) -> tuple[str, str, int] | None:
    """The first outermost plate of the traces' sample sites that subsamples ``batch`` rows out of a larger full
    size.

    :param traces: ``(program, trace)`` pairs, ``program`` naming the trace in messages (``"model"``).
    :param int batch: :math:`B`, the batch's number of examples.
    :returns: ``(program, plate name, full size)``, or ``None`` when no site sits in such a plate.
    """
    for program, trace in traces:
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            if not site["cond_indep_stack"]:
                continue
            frame = _outermost(site["cond_indep_stack"])  # the data's
            size, full = _as_int(frame.size), _as_int(frame.full_size)
            if size == batch and full is not None and full != size:
                return program, frame.name, full
    return None


def _outermost(stack) -> Any:
    """The outermost plate of a site's ``cond_indep_stack``: the vectorized plate of the leftmost dim (the one
    entered first or not: a feature plate entered outside the data plate at dim -1 is inner all the same; review:
    taking the stack's first entry let such a model divide its full-data loss by the batch size again), else
    the stack's first (sequential plates have no dim)."""
    frames = [frame for frame in stack if frame.vectorized and frame.dim is not None]
    return min(frames, key=lambda frame: frame.dim) if frames else stack[0]


def check_plate_scale(model: Callable, guide: Callable, args: tuple, kwargs: dict, batch: int, *,
                      objective: str, modules: Iterable[torch.nn.Module] = (),
                      tell_rows: bool = False) -> frozenset[str] | None:
    """Raise :class:`~hybridpgm.errors.ConfigError` when ``per_example=True`` would divide a full-data estimate
    by the batch size (see the module docstring).

    Runs the guide on ``args``/``kwargs`` and the model replayed on its trace, once, as the plate-nesting probe
    does (:func:`~hybridpgm.infer.particle_probe.probing`: no random numbers used up, no module buffer changed,
    no handler of the caller sees a site).  A program that fails on the probe is left to the step itself, which
    raises its error with the step's context.

    :param model: the Pyro model.
    :param guide: its guide.
    :param args: the programs' positional arguments (the batch).
    :param kwargs: their keyword arguments.
    :param int batch: :math:`B`, the batch's number of examples (what ``per_example`` divides by).
    :param str objective: the objective's name for the message (``"SVIObjective"``).
    :param modules: modules the programs use besides those behind ``model`` and ``guide``.
    :param bool tell_rows: where a site has a plate or a dimension of ``batch`` elements, run the programs once
        more on the batch's rows twice over, to tell a global latent of ``batch`` elements from the rows'
        (:mod:`~hybridpgm.infer.row_probe`).
    :returns: the sample sites of the probe outside every plate of ``batch`` elements
        (:func:`~hybridpgm.infer.global_share.sites_outside_batch_plates`), ``None`` where the probe failed.
    :raises ConfigError: a sample site of the model or guide lies in a plate of ``batch`` rows subsampled from
        a larger full size; the message names the plate, its sizes and the fix (``per_example=False``).
    """
    try:
        with probing(model, guide, *modules), torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the step runs the same programs and raises their error with its context
        return None
    found = scaled_batch_plate((("model", model_trace), ("guide", guide_trace)), batch)
    if found is None:
        doubled = (lambda: probe_doubled(model, guide, args, kwargs, batch, modules)) if tell_rows else None
        return sites_outside_batch_plates((guide_trace, model_trace), batch, doubled)
    program, plate, full = found
    raise ConfigError(
        f"{objective}: the {program}'s plate {plate!r} subsamples the batch's {batch} row(s) from {full} (its sites' "
        f"log-densities are scaled by {full}/{batch}), so the loss is already a full-data estimate; per_example=True "
        "(the default) would divide it by the batch size again, making the update depend on the batch size and on "
        f"fit's accumulate. Pass per_example=False: {objective}(..., per_example=False)")


def probe_batch(objective: Any, args: tuple, size: int, name: str) -> None:
    """:func:`check_plate_scale` of an objective with ``per_example=True`` (:class:`~hybridpgm.infer.SVIObjective`,
    :class:`~hybridpgm.infer.model_guide_objective.ModelGuideObjective`) on its first batch, and again only on a
    batch smaller than any probed before (a plate of ``num_data`` rows looks unscaled on a batch of all of them and
    shows its :math:`N / B` on a smaller one: a short last batch, a micro-batch of ``accumulate``); otherwise one
    comparison of two ints.  Keeps the smallest size probed in ``objective._smallest_probed`` (not after a
    refusal: the next call refuses again) and the first successful probe's global sites
    (:func:`~hybridpgm.infer.global_share.sites_outside_batch_plates`, the largest batch's mostly; told from the
    rows' by a second probe on the rows twice over, :mod:`~hybridpgm.infer.row_probe`) in
    ``objective._global_sites``, which :func:`~hybridpgm.infer.global_share.share_scope` scales.

    :param objective: has ``model``, ``guide``, ``model_kwargs`` and ``module``.
    :param tuple args: the programs' positional arguments (the batch).
    :param int size: the batch's number of examples :math:`B`.
    :param str name: the objective's name for the message.
    :raises ConfigError: as :func:`check_plate_scale`."""
    smallest = getattr(objective, "_smallest_probed", None)
    if smallest is not None and size >= smallest:
        return
    first = getattr(objective, "_global_sites", None) is None
    sites = check_plate_scale(objective.model, objective.guide, args, objective.model_kwargs, size, objective=name,
                              modules=(objective.module,), tell_rows=first)
    if first:
        objective._global_sites = sites
    objective._smallest_probed = size
