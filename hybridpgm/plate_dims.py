"""Which plate holds a tensor dim in Pyro's plate-dim allocator, and the refusal of a caller's plate where a model
opens a data plate of its own at dim ``-1``.

:meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` and ``MarkovNet.model`` join a caller's plate at dim ``-1``
(:class:`~hybridpgm.graphs.bn_plate.DataPlate`).  :meth:`VAE.model <hybridpgm.VAE.model>` / ``guide``,
:meth:`SigmoidBeliefNet.model <hybridpgm.generative.SigmoidBeliefNet.model>` / ``guide`` / ``enumerated_model`` and
:meth:`SVDeepKernelGP.model <hybridpgm.gp.SVDeepKernelGP.model>` / ``guide`` (whose data plate GPyTorch's likelihood
opens) always open their own plate over the rows at dim ``-1``: inside a caller's plate there, Pyro raised its raw
``ValueError: at plates "vae_data" and "data", collide at dim=-1``.  :func:`refuse_caller_plate` raises a
:class:`~hybridpgm.errors.ModelSpecError` before that, naming both plates and what to do.
"""

from __future__ import annotations

from pyro.poutine import runtime

from hybridpgm.errors import ModelSpecError

__all__ = ["plate_holding", "refuse_caller_plate"]


def plate_holding(dim: int) -> str | None:
    """The name of the plate that holds tensor dim ``dim`` (``< 0``) in Pyro's plate-dim allocator, ``None`` where
    it is free; a plate taken off the handler stack by :func:`~pyro.poutine.plate_messenger.block_plate` still
    holds its dim there.

    :param int dim: the dim, from the right (``-1`` the rightmost)."""
    held = getattr(runtime._DIM_ALLOCATOR, "_stack", None) or []  # read at the call: outside_handlers swaps the list
    return held[-1 - dim] if -dim <= len(held) else None


def refuse_caller_plate(what: str, own: str) -> None:
    """Refuse a call of ``what``, which is about to open its own data plate ``own`` at dim ``-1``, where another
    plate already holds that dim (a caller's ``pyro.plate`` at dim ``-1``), or a plate named ``own`` is entered.

    :param str what: the method named in the message (``"VAE.model"``).
    :param str own: the name of the plate it opens (``prefix + "data"``).
    :raises ModelSpecError: dim ``-1`` held by another plate, naming it, ``own`` and the remedies: call the model
        outside that plate (its rows get the plate ``own``; same-size plates at dim ``-1`` count as one data index
        for ``IWAE`` and ``check_vi``), or give a plate over something else (groups, particles) ``dim=-2``; or a
        plate named ``own`` already entered, naming it and ``prefix=``.
    """
    held = plate_holding(-1)
    if held is not None:
        raise ModelSpecError(
            f"{what} is called inside the plate {held!r}, which holds dim -1, where {what} opens its own plate "
            f"{own!r} over its rows (Pyro's plates would collide at dim=-1): this model does not join a caller's "
            f"plate; call it outside the plate {held!r} (its rows then get the plate {own!r}; same-size plates at "
            f"dim -1 count as one data index for IWAE and check_vi), or, where {held!r} is over something else "
            f"(groups, particles), give it another dim: pyro.plate({held!r}, ..., dim=-2), with max_plate_nesting=2")
    if own in (getattr(runtime._DIM_ALLOCATOR, "_stack", None) or []):
        raise ModelSpecError(
            f"{what} opens the plate {own!r}, but a plate of that name is already entered (Pyro refuses a "
            f"duplicate plate): give the model another prefix= or rename the caller's plate")
