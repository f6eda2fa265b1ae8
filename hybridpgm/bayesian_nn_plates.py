"""A Bayesian network's forward pass under the caller's vectorized ``pyro.plate`` s.

Inside vectorized plates (the particle plate of ``vectorize_particles=True``, the plate of
``pyro.infer.Predictive(..., parallel=True)``, which ``arviz.from_pyro`` uses for its log-likelihood, or a
plate of the caller's) each weight of a :func:`~hybridpgm.bayesian_nn.bayesianize` d network is drawn with the
plates' dims: with the plates' batch shape :math:`E` (a plate of size :math:`P` at dim ``-2`` gives
:math:`E = (P, 1)`), the weight :math:`W` of a layer is :math:`E \\times \\text{shape}(W)`.  A torch layer applies
one weight, so the network runs once per entry of :math:`E` through :func:`torch.vmap` over the flattened
draws:

.. math:: f_{w_e}(x) \\quad \\text{for every } e \\in E, \\qquad \\text{output } E \\times B,

the draw :math:`w_e` shadowing the layer's :class:`~pyro.nn.PyroSample` attribute for that call only (an entry
of the layer's instance ``__dict__``, which Python reads before ``__getattr__``; Pyro's ``__setattr__`` and
``__delattr__``, which :func:`torch.func.functional_call` goes through, would replace or delete the sample
site).  Each entry equals the network run on that draw alone (to float rounding of batched matrix products),
and the weight sites are the sequential run's: their names, priors and Pyro's broadcasting of them, and only
the weights the forward reads, in the order it reads them (a layer it never calls has no site), which a dry
run without draws finds first (:func:`~hybridpgm.bayesian_nn_reads.weights_read`).
Reference: R. M. Neal, *Bayesian Learning for Neural Networks*, 1996 (the model); the vectorization is
JAX's ``vmap`` idiom, as in :mod:`torch.func`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
from pyro.poutine.runtime import get_plates
from torch import nn

from hybridpgm.bayesian_nn_reads import weights_read
from hybridpgm.errors import HybridPGMError, ModelSpecError

__all__ = ["apply_under_plates", "place_data_dim", "vectorized_plates"]


def vectorized_plates() -> list:
    """The :class:`~pyro.poutine.indep_messenger.CondIndepStackFrame` s of the vectorized plates around the
    caller (empty outside every plate, or inside sequential ones only)."""
    return [f for f in get_plates() if f.vectorized and f.dim is not None]


def _plates_shape(frames: Sequence) -> tuple[int, ...]:
    """:math:`E`: the plates' sizes at their dims, 1 elsewhere, as long as the deepest plate needs."""
    shape = [1] * max(-f.dim for f in frames)
    for f in frames:
        shape[f.dim] = f.size
    return tuple(shape)


def _sites(net: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(path, layer, attribute)`` of every :class:`~pyro.nn.PyroSample` of ``net``, in registration order
    (``path`` the weight's name in ``net``, ``"0.weight"``)."""
    return [(f"{where}.{name}" if where else name, layer, name) for where, layer in net.named_modules()
            for name in getattr(layer, "_pyro_samples", {})]


def _weight_shape(layer: nn.Module, name: str) -> tuple[int, ...]:
    """The shape of one draw of the layer's weight ``name``: its prior's ``weight_shape`` (bayesianize's
    priors), else the prior distribution's batch and event shape."""
    prior = layer._pyro_samples[name]
    if hasattr(prior, "weight_shape"):
        return tuple(prior.weight_shape)
    prior = prior if hasattr(prior, "sample") else prior(layer)
    return tuple(prior.shape())


def _aligned(value: torch.Tensor, shape: tuple[int, ...], plates: tuple[int, ...], site: str,
             frames: Sequence) -> torch.Tensor:
    """``value`` (a draw of ``plates x shape``, or one to broadcast to it) as ``plates x shape``.

    Pyro aligns batch dims on the right.  ``Predictive(..., parallel=True)`` with posterior samples (what
    ``arviz.from_pyro`` runs) reshapes a draw of ``k`` dims to ``(S,) + (1,) * (max_plate_nesting - k) +
    site shape``, one 1 short per event dim (its convention, pyro-ppl/pyro#2123, is draws given with their plate
    dims, ``(S, 1) + shape``; MCMC's ``get_samples`` gives ``(S,) + site shape``), which puts ``S`` on the right
    of the plates' dims.  ``S`` is the size of its plate, the outermost (dim ``-max_plate_nesting - 1``, the
    first of :math:`E`), and the site's own batch dims (a caller's plates around the regressor) stay
    right-aligned: a batch shape ``(S,) + b`` that does not broadcast to :math:`E` on the right is read as
    ``(S,) + (1, ..., 1) + b``, ``S`` first and ``b`` on the right, where that broadcasts (the dims between them
    are those of plates not around the regressor, of size 1 in :math:`E`)."""
    k = len(shape)
    batch = tuple(value.shape[:value.dim() - k]) if value.dim() >= k else None
    if batch is None or tuple(value.shape[value.dim() - k:]) != shape:
        raise ModelSpecError(f"BayesianRegressor: the network's weight {site!r} has shape {tuple(value.shape)}, "
                             f"expected the plates' batch shape {plates} followed by the weight's {shape}")
    if len(batch) <= len(plates) and _broadcasts(batch, plates):
        return value.expand(plates + shape)
    first = batch[:1] + (1,) * (len(plates) - len(batch)) + batch[1:]  # Predictive's S first, b on the right
    if len(batch) < len(plates) and _broadcasts(first, plates):
        return value.reshape(first + shape).expand(plates + shape)
    names = ", ".join(f"{f.name!r} (dim {f.dim}, size {f.size})" for f in frames)
    raise ModelSpecError(f"BayesianRegressor: the network's weight {site!r} has batch shape {batch}, which does not "
                         f"broadcast to the batch shape {plates} of the vectorized plates {names}")


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


@contextlib.contextmanager
def _shadowing(sites: list[tuple[str, nn.Module, str]], values: Sequence[torch.Tensor]) -> Iterator[None]:
    """Each site's attribute reads ``value`` inside the block (an instance-``__dict__`` entry in front of
    :class:`~pyro.nn.PyroModule`'s ``__getattr__``), and samples again after it."""
    try:
        for (_, layer, name), value in zip(sites, values):
            layer.__dict__[name] = value
        yield
    finally:
        for _, layer, name in sites:
            layer.__dict__.pop(name, None)


def _refuse_batch_norm_updates(net: nn.Module, frames: Sequence) -> None:
    """A batch norm in training mode updates its running statistics once per weight draw when the draws run
    in turn; one vectorized pass has no such order (torch refuses the in-place update under ``vmap``)."""
    for path, layer in net.named_modules():
        if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.training and layer.track_running_stats:
            names = [f.name for f in frames]
            raise ModelSpecError(f"BayesianRegressor: the batch norm net.{path} is in training mode inside the "
                                 f"vectorized plate(s) {names}; it would update its running statistics once per "
                                 f"weight draw. Put it in eval mode (net.eval()), or run the draws in turn "
                                 f"(vectorize_particles=False, Predictive(..., parallel=False))")


def apply_under_plates(net: nn.Module, x: torch.Tensor, frames: Sequence) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Sample the weights of the bayesianized ``net`` under the vectorized plates ``frames`` and apply it to
    ``x`` once per draw.  The weights drawn are those its forward reads, in the order it reads them, as when the
    draws run in turn (:func:`~hybridpgm.bayesian_nn_reads.weights_read`); a forward that reads none gives its
    one output for every draw.

    :param net: the :class:`~pyro.nn.PyroModule` of :func:`~hybridpgm.bayesian_nn.bayesianize`, called within
        its supermodule's ``__call__`` (so that each weight is one sample site, cached for the call).
    :param x: ``B x D``, shared by every draw.
    :param frames: :func:`vectorized_plates`, not empty.
    :returns: ``(outputs, E)``: the outputs ``E x B x ...`` (``B x ...`` the network's output for one draw)
        and :math:`E`, the plates' batch shape.
    :raises ModelSpecError: a weight's draw does not have the plates' batch shape, a batch norm of ``net``
        is in training mode, or ``net`` runs on one draw but :func:`torch.vmap` cannot batch its forward (an
        in-place write of a weight-dependent value into a tensor it makes, a host read of one); an error of
        ``net`` on one draw alone is raised as it is."""
    _refuse_batch_norm_updates(net, frames)
    plates = _plates_shape(frames)
    every = _sites(net)
    shapes = {path: _weight_shape(layer, name) for path, layer, name in every}
    sites = weights_read(net, x, every, [shapes[path] for path, _, _ in every])  # a dry run: no draws
    draws = []
    for path, layer, name in sites:  # the sites of the draws in turn, in their order
        value = getattr(layer, name)  # the sample site, as in the sequential forward (cached for this call)
        full = _aligned(value, shapes[path], plates, path, frames)
        draws.append(full.reshape((math.prod(plates),) + shapes[path]))
    if not draws:  # a forward that reads no weight: vmap has nothing to map over, every draw gives its output
        out = net(x)
        return out.expand(plates + tuple(out.shape)), plates

    def one(weights: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        with _shadowing(sites, weights):
            return net(rows)

    # randomness="different": a dropout layer draws its own mask per weight draw, as the draws in turn do
    try:
        out = torch.vmap(one, in_dims=(0, None), randomness="different")(draws, x)
    except RuntimeError as error:  # torch's refusal of a forward it cannot batch (an in-place write, .item())
        if isinstance(error, HybridPGMError):
            raise
        alone = _error_alone(one, draws, x)
        if alone is not None:  # the network fails on one draw too: that error, as the draws in turn give it
            raise alone
        names = [f.name for f in frames]
        first = str(error).strip().split("\n")[0]
        raise ModelSpecError(f"BayesianRegressor: the network runs on one weight draw but not under torch.vmap over "
                             f"the draws of the vectorized plate(s) {names} (torch: {first}); write its forward "
                             f"without in-place writes of weight-dependent values into tensors it makes and "
                             f"without host reads (.item(), bool) of them, or run the draws in turn "
                             f"(vectorize_particles=False, Predictive(..., parallel=False))") from error
    return out.reshape(plates + tuple(out.shape[1:])), plates


def _error_alone(one, draws: list[torch.Tensor], x: torch.Tensor) -> Exception | None:
    """The error of the network run on the first weight draw alone, ``None`` if it runs (an error path: tells a
    forward ``vmap`` cannot batch from one that fails on any draw)."""
    try:
        with torch.no_grad():
            one([d[0] for d in draws], x)
    except Exception as error:
        return error
    return None


def place_data_dim(out: torch.Tensor, plates_dims: int, data_dim: int) -> torch.Tensor:
    """Move the rows of ``out`` (``E x B``, ``E`` of ``plates_dims`` dims) to the data plate's dim.

    The weights vary along the caller's plates only, so :math:`E` is 1 at ``data_dim``; the result has ``B``
    there and :math:`E`'s sizes at the other dims: ``(P, 1) x B -> (P, B)`` for the data plate at dim
    ``-1`` under a plate at ``-2``, ``(G,) x B -> (B, G)`` for the data plate at ``-2`` under one at ``-1``."""
    pad = max(0, -data_dim - plates_dims)
    out = out.reshape((1,) * pad + tuple(out.shape))
    return out.transpose(-1, data_dim - 1).squeeze(-1)
