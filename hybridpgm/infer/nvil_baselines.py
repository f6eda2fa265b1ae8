"""NVIL's input-dependent baselines and running statistics, and how they reach Pyro.

:class:`NVILBaselines` holds, per latent site :math:`h_l` of the guide, a baseline network
:math:`C_{\\psi_l}(x)` and the running mean :math:`c_l` and variance :math:`v_l` of the centred learning
signal :math:`\\ell_l - C_{\\psi_l}(x)` that :class:`~hybridpgm.infer.nvil_elbo.NVIL_ELBO` centres and scales
with [1].  :class:`_AttachBaselines` hands the networks to Pyro's
:class:`~pyro.infer.TraceGraph_ELBO` through each site's ``infer["baseline"]``, and
:func:`_register_baselines` puts their parameters in Pyro's param store so that plain
:class:`pyro.infer.SVI` trains them; :func:`_check_baseline_shape` refuses a baseline that would enlarge its
site's cost.

Under :func:`hybridpgm.fit` with ``accumulate = M`` the statistics belong to the optimizer update, not to
the micro-batch (:meth:`NVILBaselines.update`); on several ranks (``torchrun``) they pool the signals of
every rank's micro-batches, as one process does on the union batch.

References:

1. A. Mnih, K. Gregor, *Neural Variational Inference and Learning in Belief
   Networks*, ICML 2014.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterator, Sequence

import pyro
import torch
import torch.distributed as dist
from pyro.params import param_with_module_name
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin

from hybridpgm.checks import close_match, positive_int, positive_real, shown_items
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.graphs.mrf_tables import table_key
from hybridpgm.network_checks import refuse_uninitialized
from hybridpgm.train.update_scope import current_update

__all__ = ["BASELINES_MODULE_NAME", "NVILBaselines", "SiteNets"]

#: The name under which :class:`NVIL_ELBO` registers the baseline networks with ``pyro.module``, so that
#: plain :class:`pyro.infer.SVI` trains them: their parameters are ``"nvil_baselines$$$<site>.<param>"``
#: in Pyro's param store (e.g. ``"nvil_baselines$$$h1.0.weight"``; ``<site>`` escaped as in :class:`SiteNets`).
BASELINES_MODULE_NAME = "nvil_baselines"

#: an escape ``%XX`` of :func:`~hybridpgm.graphs.mrf_tables.table_key` (every ``%`` of a key begins one)
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


class SiteNets(nn.ModuleDict):
    """The baseline networks, a :class:`~torch.nn.ModuleDict` looked up by *site name*, each held under the key
    :func:`~hybridpgm.graphs.mrf_tables.table_key` gives the site (as :class:`~hybridpgm.graphs.MarkovNet` holds
    its tables).

    An ordinary site name is its own key, so ``state_dict()`` and Pyro's param store name the network of
    ``"h1"`` ``nets.h1.0.weight`` and ``nvil_baselines$$$h1.0.weight``, as before this class existed.  A name torch
    would refuse as a module's -- an attribute of this class (``"type"``, ``"train"``, ``"to"``, ``"training"``,
    ``"keys"``, ``"update"``), or one holding ``.`` or ``%`` -- is escaped one-to-one (``"type"`` is held as
    ``%74ype``).  Indexing, ``in``, iteration, :meth:`keys` and :meth:`items` speak site names; only the
    registered names are escaped.

    A network put in place of a built one (``nets["h1"] = net``) takes the baseline input ``[B, input_dim]`` and
    returns one value per datapoint, ``[B]`` (:func:`_check_baseline_shape`); it may hold no parameters, or a lazy
    module, which its first run initialises (a call of ``NVIL.loss``; :func:`hybridpgm.fit` and plain SVI, which
    need the parameters before, refuse it until then)."""

    def __getitem__(self, site: str) -> nn.Module:
        return self._modules[table_key(site, _EMPTY)]

    def __setitem__(self, site: str, module: nn.Module) -> None:
        self.add_module(table_key(site, _EMPTY), module)

    def __delitem__(self, site: str) -> None:
        del self._modules[table_key(site, _EMPTY)]

    def __contains__(self, site: object) -> bool:
        return isinstance(site, str) and table_key(site, _EMPTY) in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """The site names, in the order of :attr:`NVILBaselines.sites`."""
        return [_ESCAPE.sub(lambda m: chr(int(m[1], 16)), key) for key in self._modules]

    def items(self) -> list[tuple[str, nn.Module]]:
        """``(site name, network)`` pairs."""
        return list(zip(self.keys(), self._modules.values()))


_EMPTY = SiteNets()  # its attributes (a ModuleDict's "keys", "update" ... too) are the names escaped


def _register_baselines(baselines: NVILBaselines) -> None:
    """Register the trainable parameters of the networks of ``baselines`` with ``pyro.param``, each under
    ``"<BASELINES_MODULE_NAME>$$$<site>.<param>"`` (the names ``pyro.module`` gives).

    Called by :class:`NVIL_ELBO` inside the guide it runs, so that the param capture of
    :class:`pyro.infer.SVI` sees the baselines' parameters and its optimizer steps them.  Entries of that
    name left in the store by *other* baselines (an earlier ``NVIL_ELBO`` in the same session) are
    replaced by these: Pyro would otherwise hand back the old tensors, and SVI would step those while these
    baselines, which compute the loss, never changed.

    :raises ConfigError: a network holds parameters of a lazy module never run (``nn.LazyLinear``), naming them
        (:func:`~hybridpgm.network_checks.refuse_uninitialized`, as :func:`hybridpgm.fit` refuses them): the
        parameters are registered before the networks run, and running them earlier would be a second forward pass
        (batch-norm statistics, dropout) the loss does not ask for.

    Frozen parameters (``requires_grad=False``) are not registered.  ``pyro.module`` is not used: it warns
    about each frozen one (advising ``.train(False)``, a switch that would also stop the baselines' running
    statistics), and silencing that with :func:`warnings.catch_warnings` on every step reset Python's record
    of the warnings already shown, so that a warning of the user's model printed at every step.
    """
    store = pyro.get_param_store()
    for local, param in baselines.nets.named_parameters():
        if not param.requires_grad:
            continue
        if isinstance(param, UninitializedTensorMixin):  # Pyro's store would fail on it with torch's raw error
            refuse_uninitialized(baselines.nets, f"NVIL: baselines.nets (registered with pyro.param as "
                                 f"{BASELINES_MODULE_NAME}$$$... for plain SVI)", ConfigError)
        name = param_with_module_name(BASELINES_MODULE_NAME, local)
        if name in store and store.param_name(param) != name:
            del store[name]
        pyro.param(name, param)


def _check_baseline_shape(node: str, baseline: torch.Size, cost: torch.Size) -> None:
    """Raise unless a baseline of shape ``baseline`` broadcasts *into* the site's cost of shape ``cost``: their
    broadcast shape is ``cost`` itself, or ``cost`` with leading dims of size 1 (``(1,)`` against a 0-d cost),
    which hold the same values (:func:`torch.broadcast_shapes`'s rule, in plain Python, ten times faster).
    A ``[B]`` baseline against a ``[P, B]`` cost (vectorized particles) is fine; a ``[B, 1]`` one against ``[B]``
    would broadcast to ``[B, B]`` and add up ``B`` copies of every score-function term (Pyro's
    :class:`~pyro.infer.TraceGraph_ELBO` demands equal shapes).  Shapes only: no host read.

    :raises ObjectiveError: naming the site and both shapes."""
    if baseline == cost:
        return
    extra = len(baseline) - len(cost)  # the baseline's dims left of the cost's must be 1; the others 1 or the cost's
    lead, tail = (baseline[:extra], baseline[extra:]) if extra > 0 else ((), baseline)
    if any(size != 1 for size in lead) or any(b != 1 and b != c for b, c in zip(reversed(tail), reversed(cost))):
        raise ObjectiveError(f"NVIL: the baseline of site {node!r} has shape {tuple(baseline)}, which does not "
                             f"broadcast to the shape {tuple(cost)} of the site's downstream cost (it must hold one "
                             f"value per datapoint, e.g. [B] for a cost [B] or [P, B]; a network ending in "
                             f"nn.Linear(n, 1) returns [B, 1]: end it with nn.Flatten(-2) or .squeeze(-1))")


def _ranks() -> int:
    """The number of ranks whose signals one :func:`hybridpgm.fit` update pools: the world size of
    ``torch.distributed`` inside an update (:func:`~hybridpgm.train.update_scope.current_update` not ``None``),
    else 1."""
    if current_update() is None or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def _chan(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Pool two sets of ``(count, mean, sum of squared deviations)`` (tensors of one shape, counts may be 0) as
    in Chan et al.'s parallel variance:

    .. math:: n = n_a + n_b, \\qquad \\bar s = \\bar s_a + \\frac{n_b}{n} (\\bar s_b - \\bar s_a), \\qquad
              M = M_a + M_b + \\frac{n_a n_b}{n} (\\bar s_b - \\bar s_a)^2.

    Where both counts are 0 the result is ``(0, 0, 0)``."""
    (count_a, mean_a, squares_a), (count_b, mean_b, squares_b) = a, b
    count = count_a + count_b
    safe = count.clamp(min=1)
    delta = mean_b - mean_a
    return count, mean_a + delta * (count_b / safe), squares_a + squares_b + delta.pow(2) * (count_a * count_b / safe)


class NVILBaselines(nn.Module):
    """Input-dependent baselines :math:`C_{\\psi_l}(x)` and running statistics per latent site.

    :param sites: names of the guide's latent sites, each once.  Any name Pyro allows but ``""``: the networks are
        held by :class:`SiteNets`, which escapes the names torch refuses (``"type"``, ``"train"``, ``"to"``, one
        with a ``.`` ...), so that ordinary names keep their state-dict keys (``nets.h1.0.weight``).
    :param int input_dim: size of the baseline input :math:`x` (``[B, input_dim]``).
    :param int hidden_dim: width of each baseline's hidden layer (0: linear).
    :param float decay: decay :math:`\\alpha` of the running mean and variance.
    :param dtype: the floating dtype the networks' initial weights are drawn in and the statistics held in
        (``None``: torch's default dtype).  They are drawn on the host, from torch's global CPU stream, whatever
        torch's default device: a seed gives the same baselines on every device; move them with ``.to(...)``.
    :raises ConfigError: no site names (or a string instead of a sequence of them), the empty site name, a site
        named twice, a size that is not a positive integer (``hidden_dim`` may be 0), or ``decay`` outside
        ``[0, 1)``; the message names the site.
    """

    #: the ``fit`` update (:func:`~hybridpgm.train.update_scope.current_update`) the buffers hold so far, the
    #: buffers ``(mean, var)`` before it, and per site index the pooled ``(count, mean, sum of squared
    #: deviations)`` of its signals; class-level defaults, so that an instance pickled before they existed loads
    _update: object | None = None
    _before: tuple[torch.Tensor, torch.Tensor] | None = None
    _pooled: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}  # replaced, never mutated, per instance
    #: on several ranks, the update's pooled ``(count, mean, sum of squared deviations)`` of all ranks, ``[S]`` each
    _pooled_ranks: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    #: the width of the baseline input; ``None`` in an instance pickled before it was kept (:meth:`input_width`)
    input_dim: int | None = None

    def __init__(self, sites: Sequence[str], input_dim: int, hidden_dim: int = 100, decay: float = 0.8, *,
                 dtype: torch.dtype | None = None):
        super().__init__()
        if isinstance(sites, (str, bytes)) or not sites or not all(isinstance(s, str) for s in sites):
            raise ConfigError(f"NVILBaselines sites must be a non-empty sequence of site names, got {sites!r}")
        if "" in sites:  # no escape makes "" a module name (torch's refusal was a bare KeyError)
            raise ConfigError(f"NVILBaselines: a site name is the empty string '' (sites: {shown_items(sites)})")
        twice = [site for site, count in Counter(sites).items() if count > 1]
        if twice:  # one network and one pair of statistics per site: the second slot would never be used
            raise ConfigError(f"NVILBaselines: site(s) {shown_items(twice)} named more than once; give each latent "
                              f"site once (sites: {shown_items(sites)})")
        input_dim = positive_int(input_dim, "NVIL input_dim")
        hidden_dim = positive_int(hidden_dim, "NVIL hidden_dim", minimum=0)
        decay = positive_real(decay, "NVIL decay", allow_zero=True)
        if decay >= 1.0:
            raise ConfigError(f"NVIL decay must be in [0, 1), got {decay!r}")
        self.sites = list(sites)
        self.decay = decay
        self.input_dim = input_dim

        factory = {"dtype": torch.get_default_dtype() if dtype is None else dtype, "device": "cpu"}

        def net():
            if hidden_dim:
                return nn.Sequential(nn.Linear(input_dim, hidden_dim, **factory), nn.Tanh(),
                                     nn.Linear(hidden_dim, 1, **factory), nn.Flatten(-2))
            return nn.Sequential(nn.Linear(input_dim, 1, **factory), nn.Flatten(-2))

        self.nets = SiteNets({name: net() for name in self.sites})  # escaped keys (ordinary names: themselves)
        self.register_buffer("mean", torch.zeros(len(self.sites), **factory))
        self.register_buffer("var", torch.ones(len(self.sites), **factory))
        self._update, self._before, self._pooled, self._pooled_ranks = None, None, {}, None

    def index(self, site: str) -> int:
        """The position ``l`` of ``site`` in :attr:`sites` (its network and statistics).

        :param str site: a site name of :attr:`sites`.
        :raises ConfigError: ``site`` is not one of :attr:`sites` (the message names it and the sites; a
            :class:`ValueError`, as ``list.index`` raised before)."""
        try:
            return self.sites.index(site)
        except ValueError:
            raise ConfigError(f"NVILBaselines has no baseline for site {site!r:.80}{close_match(site, self.sites)} "
                              f"(its sites: {shown_items(self.sites)})") from None

    def reference(self) -> torch.Tensor:
        """A floating-point parameter of the networks (the first): their dtype and device; where the networks hold
        none (networks put in place of the built ones may have no parameters), the buffer :attr:`mean`, which
        follows the module's conversions and moves."""
        return next((p for p in self.nets.parameters() if p.is_floating_point()), self.mean)

    def input_width(self) -> int | None:
        """The width ``input_dim`` the networks take (the last dim of their input ``[B, input_dim]``): the
        constructor's, kept by the instance; for an instance pickled before it was kept, the input width of the
        first network's first weight if that is a matrix, else ``None`` (unknown)."""
        if self.input_dim is not None:
            return self.input_dim
        ref = self.reference()
        unknown = ref is self.mean or isinstance(ref, UninitializedTensorMixin)
        return ref.shape[1] if not unknown and ref.dim() == 2 else None

    def statistics(self, site: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The running mean :math:`c_l` and variance :math:`v_l` to centre and scale ``site``'s signal with.

        Outside :func:`hybridpgm.fit` (:func:`~hybridpgm.train.update_scope.current_update` is ``None``) and
        for the first micro-batch of an update, the buffers ``mean[l]`` and ``var[l]``; for the later
        micro-batches of an update, their values from before it (the buffers already hold the update's
        signals so far).

        :param str site: a site name of :attr:`sites`.
        :returns: two scalar tensors (copies), in the buffers' dtype and on their device.
        :raises ConfigError: ``site`` is not one of :attr:`sites` (:meth:`index`).
        """
        i = self.index(site)
        update = current_update()
        if update is not None and update is self._update:
            mean, var = self._before
        else:
            mean, var = self.mean, self.var
        return mean[i].clone(), var[i].clone()

    @torch.no_grad()
    def update(self, site: str, signal: torch.Tensor) -> None:
        """Fold the centred signal :math:`s = \\ell_l - C_{\\psi_l}(x)` (any shape, e.g. ``[B]`` or
        ``[P, B]``) into the running statistics:

        .. math:: c_l \\leftarrow \\alpha c_l + (1 - \\alpha)\\,\\bar s, \\qquad
                  v_l \\leftarrow \\alpha v_l + (1 - \\alpha)\\,\\overline{(s - \\bar s)^2}.

        Outside :func:`hybridpgm.fit` each call is one such step.  Within one optimizer update of ``fit``
        (:func:`~hybridpgm.train.update_scope.current_update`), the signals of all its micro-batches are
        pooled (count, mean and sum of squared deviations, combined as in Chan et al.'s parallel variance)
        and the buffers hold one step from their values before the update with the pooled mean and
        (biased) variance: after the last micro-batch, exactly the step ``accumulate=1`` takes on the whole
        batch.  On several ranks (``torchrun``), see :meth:`_update_across_ranks`: the buffers pool the signals of
        every rank, as one process does on the union of the ranks' batches.

        :param str site: a site name of :attr:`sites`.
        :param signal: the centred signals :math:`s` of ``site``.  They are only read: the method runs under
            :func:`torch.no_grad`, so a signal that requires grad is never backpropagated into, and the buffers
            and pooled statistics hold no graph (the caller need not detach it).
        :raises ConfigError: ``site`` is not one of :attr:`sites` (:meth:`index`).
        """
        i = self.index(site)
        a = self.decay
        update = current_update()
        if update is None:
            self.mean[i] = a * self.mean[i] + (1 - a) * signal.mean()
            self.var[i] = a * self.var[i] + (1 - a) * signal.var(unbiased=False)
            return
        if update is not self._update:  # the first micro-batch of this update: keep the statistics before it
            self._update, self._before = update, (self.mean.clone(), self.var.clone())
            self._pooled, self._pooled_ranks = {}, None
        n = signal.numel()
        mean = signal.mean()
        squares = (signal - mean).pow(2).sum()
        ranks = _ranks()
        if ranks > 1:
            self._update_across_ranks(i, n, mean, squares, ranks)
            return
        if i in self._pooled:
            count, pooled_mean, pooled_squares = self._pooled[i]
            total = count + n
            delta = mean - pooled_mean
            mean = pooled_mean + delta * (n / total)
            squares = pooled_squares + squares + delta.pow(2) * (count * n / total)
            n = total
        self._pooled[i] = (n, mean, squares)
        before_mean, before_var = self._before
        self.mean[i] = a * before_mean[i].to(self.mean) + (1 - a) * mean
        self.var[i] = a * before_var[i].to(self.var) + (1 - a) * squares / n

    def _update_across_ranks(self, i: int, n: int, mean: torch.Tensor, squares: torch.Tensor, ranks: int) -> None:
        """:meth:`update` inside a ``fit`` update on :math:`R > 1` ranks: pool this micro-batch's statistics of
        site ``i`` with those of the other ranks' calls.

        The ranks call :meth:`update` equally often in an update, but not necessarily for the sites in the
        same order (NVIL visits them in an order that depends on Python's per-process string hashing).  So
        every call sends a ``[S, 3]`` table -- this rank's ``(count, mean, sum of squared deviations)`` in row
        ``i``, zeros elsewhere -- and one ``all_gather`` hands every rank all :math:`R` tables.  Their rows
        are pooled per site, in rank order, into the update's ``[S]`` triples (:func:`_chan`; a zero count
        changes nothing), and every site that has signals gets the step of :meth:`update` from its value before
        the update.  After the update's last call every rank has folded every rank's signals, in the same
        order: the buffers are identical on all ranks and equal (up to rounding) those of one process on the
        union batch.  Everything stays on the signals' device (no host synchronisation).
        """
        local = torch.zeros(len(self.sites), 3, dtype=mean.dtype, device=mean.device)
        local[i, 0], local[i, 1], local[i, 2] = n, mean, squares
        tables = [torch.empty_like(local) for _ in range(ranks)]
        dist.all_gather(tables, local)
        pooled = self._pooled_ranks
        for table in tables:
            pooled = tuple(table.unbind(-1)) if pooled is None else _chan(pooled, tuple(table.unbind(-1)))
        self._pooled_ranks = pooled
        count, pooled_mean, pooled_squares = pooled
        a = self.decay
        before_mean, before_var = (t.to(self.mean) for t in self._before)
        seen = count > 0
        self.mean.copy_(torch.where(seen, a * before_mean + (1 - a) * pooled_mean.to(self.mean), before_mean))
        variance = (pooled_squares / count.clamp(min=1)).to(self.var)
        self.var.copy_(torch.where(seen, a * before_var + (1 - a) * variance, before_var))


class _AttachBaselines(Messenger):
    """Sets ``infer["baseline"]`` of the guide's latent sites to the NVIL networks."""

    def __init__(self, baselines: NVILBaselines, baseline_input: torch.Tensor):
        super().__init__()
        self.baselines = baselines
        self.baseline_input = baseline_input

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["name"] not in self.baselines.nets:
            return
        if "baseline" in msg["infer"]:
            raise ObjectiveError(f"guide site {msg['name']!r} already sets infer['baseline']; NVIL sets its own")
        msg["infer"] = dict(msg["infer"], baseline={"nn_baseline": self.baselines.nets[msg["name"]],
                                                    "nn_baseline_input": self.baseline_input})


