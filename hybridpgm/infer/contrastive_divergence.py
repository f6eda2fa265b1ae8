r"""Contrastive divergence (CD-k) and persistent CD (PCD) as :func:`hybridpgm.fit` objectives.

The log-likelihood gradient of an energy model :math:`p(v) = e^{-F(v)}/Z` is

.. math::

    \nabla_\theta \log p(v) = -\nabla_\theta F(v) + \mathbb E_{p(v')}\big[\nabla_\theta F(v')\big].

CD-k [1] replaces the model expectation by samples :math:`\tilde v` after
``k`` block-Gibbs sweeps started at the data; PCD [2] keeps ``num_chains``
persistent chains that each step advances by ``k`` sweeps.  Both are
minimised through the *surrogate loss*

.. math::

    \mathcal L = \frac1B \sum_{b} F(v_b) - \frac1{S} \sum_{s} F(\operatorname{sg}[\tilde v_s]),

whose gradient is exactly the negative CD/PCD gradient (``sg`` stops the
gradient through the samples).  Its value is *not* a log-likelihood: monitor
:meth:`~ContrastiveDivergence.monitor` (reconstruction error,
pseudo-log-likelihood) or AIS.  Weight decay and momentum are options of the
optimizer (``functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=2e-4)``).

The objectives are generic over models with the *chain protocol* (RBM, DBM):
``positive_phase(v) -> (energy[B], state clamped to v)``, ``negative_phase(state)
-> energy[S]``, ``init_chains(n) -> state`` and ``gibbs_chain(state, k) -> state``,
where a state is a tuple of tensors; a model may add ``clamped_state(v) ->
(state, cache)`` and ``contrastive_gap(v, negative_state, cache) -> loss`` to
compute :math:`\mathcal L` with its gradient in closed form (the RBM does,
:mod:`hybridpgm.energy.free_energy_gap`), and ``contrastive_gap_and_gradients`` to write that gradient
out.  The fast surrogate is used only where it stands for the protocol: a subclass that overrides
``positive_phase`` or ``negative_phase`` but not ``contrastive_gap`` trains through its phases, and one that
overrides ``contrastive_gap`` but not ``contrastive_gap_and_gradients`` is differentiated by autograd
(``hybridpgm.method_owners.goes_with``).  For a DBM the positive phase is the
energy at the mean-field posterior and the negative phase the free energy of
the even layers [3].

References:

1. G. E. Hinton, "Training products of experts by minimizing contrastive
   divergence", Neural Computation, 2002.
2. T. Tieleman, "Training restricted Boltzmann machines using approximations
   to the likelihood gradient", ICML 2008.
3. R. Salakhutdinov, G. Hinton, "Deep Boltzmann machines", AISTATS 2009.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from hybridpgm.checks import check_empty, check_player, flag, positive_int
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.method_owners import goes_with
from hybridpgm.options import Option
from hybridpgm.train.update_scope import current_update

__all__ = ["ContrastiveDivergence", "PersistentCD"]

_PROTOCOL = ("positive_phase", "negative_phase", "init_chains", "gibbs_chain")


_PHASES = ("positive_phase", "negative_phase")


def _closed_form(model: nn.Module) -> tuple[bool, bool]:
    """``(gap, written)``: whether ``model``'s optional fast surrogate stands for its chain protocol, and whether
    its gradients written out stand for that surrogate.

    ``gap``: the model has ``clamped_state(v) -> (state, cache)`` and ``contrastive_gap(v, negative_state,
    cache=None) -> loss`` (the RBM's), and the class that defines ``contrastive_gap`` is the class that defines
    ``positive_phase`` and ``negative_phase`` or a subclass of it
    (:func:`~hybridpgm.method_owners.goes_with`): a subclass that overrides a phase and not the gap is
    trained through its phases.  ``written``: ``gap``, and ``contrastive_gap_and_gradients`` goes with
    ``contrastive_gap`` in the same sense: a subclass that overrides ``contrastive_gap`` alone is
    differentiated by autograd.  Methods set on the instance count as the most derived: a phase set there
    turns the surrogate off, a ``contrastive_gap`` set there is used (with a ``contrastive_gap_and_gradients``
    only if one is set there too).
    """
    if not (hasattr(model, "contrastive_gap") and hasattr(model, "clamped_state")):
        return False, False
    own = getattr(model, "__dict__", {})
    if any(name in own for name in _PHASES):
        return False, False
    if "contrastive_gap" in own:
        return True, "contrastive_gap_and_gradients" in own
    cls = type(model)
    if not all(goes_with(cls, "contrastive_gap", phase) for phase in _PHASES):
        return False, False
    return True, ("contrastive_gap_and_gradients" in own
                  or goes_with(cls, "contrastive_gap_and_gradients", "contrastive_gap"))


def _as_visible(batch: Any) -> torch.Tensor:
    """The visible data of a batch: the tensor itself or the first element of a tuple (labels are ignored)."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise DataError(f"a contrastive-divergence batch is a tensor or a tuple (x, ...), got an empty "
                            f"{type(batch).__name__}")
        return batch[0]
    return batch


class ContrastiveDivergence(nn.Module):
    """CD-k objective with one player, ``"model"``.

    The objective is itself the ``module`` that :func:`~hybridpgm.fit` moves,
    data-parallelises and checkpoints (it holds the model as ``self.model``).

    :param model: an :class:`~hybridpgm.energy.RBM` or :class:`~hybridpgm.energy.DBM`
        (anything with the chain protocol).
    :param int k: Gibbs sweeps per step.
    :param bool check_data: validate every batch with ``model.check_visible``.
    :raises ModelSpecError: ``model`` lacks the chain protocol.
    :raises ConfigError: ``k`` is not a positive integer (``bool`` and floats included), or ``check_data`` is not
        ``True`` or ``False``.  Both are attributes (:class:`~hybridpgm.options.Option`):
        assigning one raises the same (``k = 0`` would train nothing).

    :meth:`loss` raises :class:`~hybridpgm.errors.ConfigError` for an unknown player and
    :class:`~hybridpgm.errors.DataError` for an empty batch.

    After each :meth:`loss` call of CD-1, ``last_reconstruction_error`` gives the mean
    squared difference between the batch and its sampled one-sweep reconstruction
    (PCD chains do not start at the data).
    """

    player = "model"
    k = Option(lambda self, value: positive_int(value, f"{type(self).__name__} k"))
    check_data = Option(lambda self, value: flag(value, f"{type(self).__name__} check_data"))

    def __init__(self, model: nn.Module, k: int = 1, *, check_data: bool = True):
        super().__init__()
        missing = [m for m in _PROTOCOL if not hasattr(model, m)]
        if missing:
            raise ModelSpecError(f"{type(model).__name__} cannot be trained by contrastive divergence: "
                                 f"it lacks {missing}")
        self.k, self.check_data = k, check_data
        self.model = model
        self._last_pair: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def last_reconstruction_error(self) -> torch.Tensor | None:
        """Mean squared difference between the last batch and its one-sweep reconstruction
        (CD-1 only; ``None`` otherwise), computed on access."""
        if self._last_pair is None:
            return None
        v, neg = self._last_pair
        return ((neg - v) ** 2).sum(-1).mean().detach()

    @property
    def module(self) -> nn.Module:
        return self

    def players(self) -> dict[str, list[nn.Parameter]]:
        """``"model"``: every parameter of the model."""
        return {self.player: list(self.model.parameters())}

    def settings(self) -> dict[str, Any]:
        """What defines the objective beyond its parameters, compared when ``fit`` resumes a checkpoint: the
        Gibbs sweeps ``k``."""
        return {"k": self.k}

    def _visible(self, player: str, batch: Any) -> torch.Tensor:
        check_player(player, (self.player,), type(self).__name__)
        v = _as_visible(batch)
        if self.check_data:
            v = self.model.check_visible(v, "batch")
        if isinstance(v, torch.Tensor):
            check_empty(v, f"{type(self).__name__} batch")
        return v

    def negative_samples(self, start: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Chain states after ``k`` sweeps from ``start`` (no gradient).

        :param start: the chain state, one tensor per layer (``(v, h)`` of an RBM, as its phases give)."""
        with torch.no_grad():
            return self.model.gibbs_chain(start, self.k)

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The surrogate loss (see the module docstring) on ``batch`` (0-d).

        :param str player: ``"model"``.
        :param batch: the data ``B x V``, or a tuple ``(x, y)`` whose labels are ignored."""
        return self._surrogate(player, batch, gradients=False)

    def loss_and_gradients(self, player: str, batch: Any) -> tuple[torch.Tensor, dict | None]:
        """The surrogate loss of :meth:`loss` and its gradients, ``(loss, {parameter: gradient})``, where
        the model writes them out (``contrastive_gap_and_gradients``: the RBM's Bernoulli units), without
        autograd; ``(loss, None)`` otherwise, the loss then differentiable.  :func:`hybridpgm.fit` takes
        this path (the optional member of :class:`hybridpgm.train.Objective`): one sampling, the same
        numbers, no graph to build and traverse.

        :param str player: ``"model"``.
        :param batch: the data, as for :meth:`loss`."""
        return self._surrogate(player, batch, gradients=True)

    def _surrogate(self, player: str, batch: Any, gradients: bool):
        v = self._visible(player, batch)
        gap, written = _closed_form(self.model)
        if gap:
            start, cache = self.model.clamped_state(v)
            negative = self.negative_samples(start)
            self._last_pair = (v, negative[0]) if self.k == 1 else None
            return self._gap(v, negative, cache, gradients, written)
        positive, start = self.model.positive_phase(v)
        negative = self.negative_samples(start)
        self._last_pair = (v, negative[0]) if self.k == 1 else None
        loss = positive.mean() - self.model.negative_phase(negative).mean()
        return (loss, None) if gradients else loss

    def _gap(self, v: torch.Tensor, negative: tuple[torch.Tensor, ...], cache, gradients: bool, written: bool):
        """The model's surrogate: its value with gradients written out (``gradients`` and ``written``: its
        ``contrastive_gap_and_gradients`` goes with its ``contrastive_gap``, see :func:`_closed_form`; where
        that returns ``None`` the value is differentiable), or differentiable ``(loss, None)`` (``gradients``)
        or the loss alone."""
        if gradients and written:
            out = self.model.contrastive_gap_and_gradients(v, negative, cache)
            if out is not None:
                return out
        loss = self.model.contrastive_gap(v, negative, cache)
        return (loss, None) if gradients else loss

    def forward(self, batch: Any) -> torch.Tensor:
        """``loss("model", batch)``: the objective called as a module (what data parallelism runs).

        :param batch: the data, as for :meth:`loss`."""
        return self.loss(self.player, batch)

    @torch.no_grad()
    def monitor(self, v: torch.Tensor) -> dict[str, float]:
        """``{"reconstruction_error", "pseudo_log_likelihood"}`` of ``v`` (per example, averaged);
        pass it to :class:`~hybridpgm.train.EvaluateEvery`: ``EvaluateEvery(100, lambda o: o.monitor(x_valid))``.

        :param v: ``batch x V`` visible data (held-out data, typically); a metric the model lacks is left out."""
        out = {}
        if hasattr(self.model, "reconstruction_error"):
            out["reconstruction_error"] = float(self.model.reconstruction_error(v))
        if hasattr(self.model, "pseudo_log_likelihood") and not getattr(self.model, "gaussian", False):
            out["pseudo_log_likelihood"] = float(self.model.pseudo_log_likelihood(v).mean())
        return out

    def extra_repr(self) -> str:
        """``k=...``, shown by ``repr`` before the model."""
        return f"k={self.k}"


class PersistentCD(ContrastiveDivergence):
    """Persistent contrastive divergence (PCD-k) objective with one player, ``"model"``.

    The ``num_chains`` persistent chains are registered buffers (``chain_0``,
    ``chain_1``, ...), so they move with the module and are saved in checkpoints.
    They also follow the model alone: after ``model.double()`` or ``model.to(device)`` the next
    :meth:`loss` (or a read of :attr:`chains`) converts them to the dtype and device of the model's
    parameters, values kept (binary states are exact in every floating dtype), and a checkpoint loads into
    chains already in the model's dtype, so a run resumes exactly after such a move.
    Under ``torchrun`` each of the :math:`R` ranks keeps its own ``num_chains`` chains: they start from rank 0's
    (``fit`` broadcasts the buffers at a fresh start) and then move with each rank's own random numbers, so the
    negative phase averages :math:`R \\cdot` ``num_chains`` fantasy particles; checkpoints hold every rank's
    chains (:mod:`hybridpgm.train.rank_states`).

    :param model: as for :class:`ContrastiveDivergence`.
    :param int k: Gibbs sweeps per step (per optimizer step: under ``fit(accumulate=M)`` the M micro-batches
        share one negative phase).
    :param int num_chains: persistent fantasy particles.
    :param bool check_data: validate every batch with ``model.check_visible`` (as for
        :class:`ContrastiveDivergence`).
    :raises ConfigError: ``k`` or ``num_chains`` is not a positive integer, or ``check_data`` is not ``True`` or
        ``False``.  ``k`` and ``check_data`` may be assigned later (checked the same); ``num_chains`` is fixed at
        construction (the chains are the buffers, and :meth:`settings` reports it): an assignment raises
        :class:`~hybridpgm.errors.FixedOptionError` (a :class:`ConfigError`).
    """

    num_chains = Option(
        lambda self, value: positive_int(value, "PersistentCD num_chains"),
        fixed=lambda self, value: f"PersistentCD num_chains is fixed at construction: its {self.num_chains} "
                                  f"persistent chains are the buffers chain_0 ... (saved in checkpoints); build a "
                                  f"new PersistentCD(model, k, num_chains=...) for another number of chains")

    def __init__(self, model: nn.Module, k: int = 1, num_chains: int = 100, *, check_data: bool = True):
        super().__init__(model, k, check_data=check_data)
        self.num_chains = num_chains
        num_chains = self.num_chains
        with torch.no_grad():
            state = model.init_chains(num_chains)
        self.num_states = len(state)
        for i, tensor in enumerate(state):
            self.register_buffer(f"chain_{i}", tensor.detach().clone())
        self._advanced_in = None  # the fit update whose k sweeps the chains have had

    def settings(self) -> dict[str, Any]:
        """``k`` and the number of persistent chains."""
        return {**super().settings(), "num_chains": self.num_chains}

    @property
    def chains(self) -> tuple[torch.Tensor, ...]:
        """The persistent chain states (``num_chains x`` layer width each), in the dtype and on the device of
        the model's parameters (converted on access where the model moved by itself)."""
        self._follow_model()
        return tuple(getattr(self, f"chain_{i}") for i in range(self.num_states))

    def _follow_model(self) -> None:
        """Convert the chain buffers to the floating dtype and the device of the model's first floating-point
        parameter (or buffer) where they differ, values kept: the model moved by itself (``model.double()``,
        ``model.to("cuda")``) leaves the objective's buffers behind.  Integer chain states keep their dtype and
        only change device.  Only tensor metadata is compared: no host synchronisation, no copy when nothing
        moved."""
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        like = next((t for t in tensors if t.is_floating_point()), None)
        if like is None:
            return
        for i in range(self.num_states):
            name = f"chain_{i}"
            chain = getattr(self, name)
            dtype = like.dtype if chain.is_floating_point() else chain.dtype
            if chain.dtype != dtype or chain.device != like.device:
                setattr(self, name, chain.detach().to(device=like.device, dtype=dtype))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Load the chains into buffers already in the model's dtype and on its device (``_follow_model``):
        saved chains of a model moved to ``float64`` resume in ``float64``, not rounded through the ``float32``
        the objective's buffers were built in."""
        self._follow_model()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _surrogate(self, player: str, batch: Any, gradients: bool):
        v = self._visible(player, batch)
        gap, written = _closed_form(self.model)
        if gap:
            negative = self._advance_chains()
            return self._gap(v, negative, None, gradients, written)
        positive, _ = self.model.positive_phase(v)
        negative = self._advance_chains()
        loss = positive.mean() - self.model.negative_phase(negative).mean()
        return (loss, None) if gradients else loss

    def _advance_chains(self) -> tuple[torch.Tensor, ...]:
        """The persistent chains after ``k`` more sweeps (stored back in the buffers), once per optimizer step:
        the micro-batches of one update under ``fit(accumulate=M)`` share one negative phase
        (:func:`~hybridpgm.train.update_scope.current_update`), as one step on the whole batch would; outside
        ``fit`` every call is a step."""
        update = current_update()
        if update is not None and self._advanced_in is update:
            return self.chains
        negative = self.negative_samples(self.chains)
        for i, tensor in enumerate(negative):
            getattr(self, f"chain_{i}").copy_(tensor)
        self._advanced_in = update
        return self.chains

    def extra_repr(self) -> str:
        """``k=..., num_chains=...``, shown by ``repr`` before the model."""
        return f"k={self.k}, num_chains={self.num_chains}"
