"""The conditional probability table :class:`~hybridpgm.graphs.cpd.Table` of a discrete node.

:math:`p(x \\mid \\mathrm{pa}(x)) = \\theta_{\\mathrm{pa}(x), x}`, parameterised by logits (so gradient steps keep
every row on the simplex), with structural zeros that stay zero under training and an optional Dirichlet prior
for MAP learning.  Import it from :mod:`hybridpgm.graphs.cpd` (``cpd.Table``), the name under which it is
documented and saved in model files.  The checks of its probabilities live in
:mod:`~hybridpgm.graphs.cpd_table_checks`.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Iterable, Sequence

import torch
from torch import nn

from hybridpgm.checks import generator_or_none, positive_real, torch_readable
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.graphs.cpd_base import CPD, _set_plain
from hybridpgm.graphs.cpd_table_checks import built_outside_vmap, screened, table_problem, table_shape
from hybridpgm.serialization import serializable
from hybridpgm.tensor_tracking import held_storages, unversioned, value_key

__all__ = ["Table"]


#: the tables :meth:`Table.many` screened, ``(id(probs), parents) -> (probs, atol)``: a :class:`Table` built from one
#: of them (that very tensor, those parents, that ``atol``, no prior) while it runs knows it has no problem without
#: checking it again
_SCREENED: ContextVar[dict | None] = ContextVar("hybridpgm_screened_tables", default=None)


def _scoring() -> bool:
    """Whether :meth:`BayesNet.log_prob` is tracing the model (imported late: ``bn_checks`` is a sibling module)."""
    from hybridpgm.graphs.bn_checks import _SCORING

    return _SCORING.get()


@serializable
class Table(CPD):
    """A conditional probability table over a discrete node of any cardinality.

    :param probs: ``[*parent_cards, cardinality]`` table; entry ``[j..., k]`` is
        :math:`p(x = k \\mid \\mathrm{pa} = j)`.  Rows must be non-negative and sum to 1.
    :param parents: names of the (discrete) parents, in the order of the leading dims.
    :param bool learnable: store the logits as a parameter (else a buffer).  The zeros of ``probs`` are
        structural: they stay zero under training (the stored logits stay finite, so the table can be
        trained by :func:`hybridpgm.fit` and saved).  The bool buffer ``support`` (false at the zeros) is in
        the state dict, so loading it into another table (a skeleton built by :meth:`uniform`, say) gives it
        the same zeros; an older state dict without ``support`` loads too, the receiving table keeping its own.
    :param prior: optional Dirichlet concentration :math:`\\alpha > 0` (scalar or
        broadcastable to ``probs``); the Pyro model then adds
        :math:`\\log \\mathrm{Dir}(\\theta_j; \\alpha)` for every row, giving MAP estimates: with
        :math:`n_{jk}` the count of state :math:`k` in the rows with parents :math:`j`, the optimum is the mode
        :math:`\\hat\\theta_{jk} = (n_{jk} + \\alpha_{jk} - 1) / (n_j + \\sum_k \\alpha_{jk} - K)`, so
        :math:`\\alpha - 1` are pseudo-counts (pgmpy's ``BayesianEstimator(prior_type="dirichlet",
        pseudo_counts=alpha - 1)``; :math:`\\alpha = 1` is maximum likelihood).  An :math:`\\alpha < 1` (on a state
        of the support) can be declared, saved and loaded, and plays no part in exact queries or sampling, but it
        has no MAP: the objective :math:`(\\alpha - 1) \\log \\theta` then has no maximum (it grows without
        bound as a state without data goes to probability 0), so :meth:`log_prior` -- the prior term of the
        Pyro model, hence of fitting -- raises a :class:`ModelSpecError` naming the node.
    :param float atol: tolerance of the row-sum check; it is widened to
        :math:`K \\cdot \\epsilon` of the table's dtype where that is larger
        (``float16`` / ``bfloat16`` tables cannot sum to 1 more closely).

    The table is on the device :func:`torch.as_tensor` gives ``probs`` (torch's default device, as
    :func:`torch.set_default_device` sets it, for a list or array; there for a tensor too once a default device
    is set).

    A malformed table (wrong number of dims, a dim of size 0, a negative, NaN
    or infinite entry, a row that does not sum to 1, a prior that is not
    finite and positive or does not broadcast to the table, a table on the meta
    device, which holds no values) is reported when it is
    declared as a node, :meth:`BayesNet.add` raising a :class:`ModelSpecError`
    that names the node; a table built as ``bn.add("B", Table(...))`` cannot
    know its node before then.  Using a malformed table that belongs to no
    network (``probs``, ``log_table``) raises the same error without a node.

    Exact queries keep the log-table of a table that needs no gradient and recompute it when the version counter
    of the logits or of the ``support`` mask moves (an optimizer step, ``logits.copy_(...)`` under
    :func:`torch.no_grad`, ``load_state_dict``) or either is replaced.  An edit through ``logits.data`` moves no
    counter that the table can see, so queries keep the old table: edit the logits themselves, or call
    ``bn.plan_cache.clear()`` after such an edit.

    :raises ModelSpecError: at once, for ``probs`` that are not a real-valued
        (float or integer) array.
    :raises ConfigError: for an ``atol`` that is not a finite number >= 0, or a table built inside
        :func:`torch.func.vmap` from batched probabilities (its checks read them on the host: build the tables
        outside ``vmap``; :func:`~hybridpgm.graphs.cpd_table_checks.built_outside_vmap`).
    """

    # the module named in saved model files and pickles, and where the class is documented: it moved out of
    # :mod:`hybridpgm.graphs.cpd`, which re-exports it, so files saved before the split load unchanged
    __module__ = "hybridpgm.graphs.cpd"

    def __init__(self, probs, parents: Sequence[str] = (), *, learnable: bool = True,
                 prior=None, atol: float = 1e-4):
        super().__init__(parents)
        atol = positive_real(atol, "Table atol", error=ConfigError, allow_zero=True)
        try:
            probs = torch.as_tensor(torch_readable(probs))
        except (TypeError, ValueError, RuntimeError) as e:
            raise ModelSpecError(f"Table probs must be a numeric array, got {type(probs).__name__}: {e}") from None
        if probs.dtype == torch.bool or probs.is_complex():
            raise ModelSpecError(f"Table probs must be real numbers, got dtype {probs.dtype}")
        if not torch.is_floating_point(probs):
            probs = probs.to(torch.get_default_dtype())
        passed = _SCREENED.get()
        known = passed.get((id(probs), self.parents)) if passed is not None and prior is None else None
        with built_outside_vmap("Table"):  # the checks read the table: under vmap, a ConfigError saying so
            problem = None if known is not None and known[0] is probs and known[1] == atol else \
                self._find_problem(probs, prior, atol)
        support = probs > 0 if problem is None else torch.ones_like(probs, dtype=torch.bool)
        # structural zeros stay exactly zero (no gradient reaches them), while the stored logits stay finite: a
        # parameter holding -inf could be neither trained by fit nor saved.  The mask is saved with the logits
        logits = probs.log().masked_fill(~support, 0.0)
        _set_plain(self, _problem=problem, cardinality=int(probs.shape[-1]) if probs.dim() else 1,
                   # the memos below hold the tensors they were read from (compared by identity: a freed mask's
                   # address may be reused by its replacement, at the same version) and their storages then (the
                   # pointers' addresses: a `.data =` replacement cannot land there while they are held)
                   _zeros=None,  # (support, value_key of it, whether it has a zero, its storage)
                   _below=None,  # ((prior, support), their value_keys, why alpha < 1 or None, storages)
                   _shape=tuple(probs.shape))
        self.register_buffer("support", support)
        if learnable:
            self.register_parameter("logits", nn.Parameter(logits))
        else:
            self.register_buffer("logits", logits)
        if prior is not None and problem is None:
            prior = torch.as_tensor(prior, dtype=probs.dtype, device=probs.device)
            self.register_buffer("prior", prior.expand(probs.shape).clone())
            self._prior_below_one()  # the host read is done here, so log_prior adds none per step
        else:
            _set_plain(self, prior=None)

    @classmethod
    def many(cls, tables: Iterable[tuple], *, learnable: bool = True, atol: float = 1e-4) -> list["Table"]:
        """``[cls(probs, parents, learnable=learnable, atol=atol) for probs, parents in tables]``, the tables'
        checks run in a few vectorised passes over all of them rather than table by table.

        The rows of every floating-point tensor whose dims match its parents are screened together, one pass per
        dtype, device and cardinality :math:`K`: a row passes when every entry is :math:`\\ge 0` (NaN fails) and
        :math:`|\\sum_k p_k - 1| \\le \\max(\\mathrm{atol}, K\\epsilon) - K\\epsilon` (an infinite entry fails:
        the sum is infinite or NaN; the margin :math:`K\\epsilon` covers another order of summation than the
        table's own).  A table with a failing row, and any other input (an array, a list, an integer or
        malformed tensor), is checked as :class:`Table` checks it alone, so the errors -- raised when the table is
        declared as a node, naming the node -- and every table built are the same as the comprehension's.  A
        subclass that checks its tables otherwise (its own ``_find_problem``) has every table checked alone.

        :param tables: pairs ``(probs, parents)``.
        :raises ModelSpecError: as :class:`Table` does (probs that are not a real-valued array).
        :raises ConfigError: as :class:`Table` does (``atol``; batched probabilities inside :func:`torch.func.vmap`).
        """
        tables = [(probs, parents) for probs, parents in tables]
        atol = positive_real(atol, "Table atol", error=ConfigError, allow_zero=True)
        if cls._find_problem is not Table._find_problem:  # a subclass's own checks: the screen does not know them
            return [cls(probs, parents, learnable=learnable, atol=atol) for probs, parents in tables]
        with built_outside_vmap("Table.many"):
            token = _SCREENED.set(screened(tables, atol))
        try:
            return [cls(probs, parents, learnable=learnable, atol=atol) for probs, parents in tables]
        finally:
            _SCREENED.reset(token)

    def _find_problem(self, probs: torch.Tensor, prior, atol: float) -> str | None:
        """What is wrong with the table (``None`` if nothing); reported by :meth:`validate` with the node's name
        (:func:`~hybridpgm.graphs.cpd_table_checks.table_problem`)."""
        return table_problem(probs, self.parents, prior, atol)

    def _prior_below_one(self) -> str | None:
        """Why the prior has no MAP (an alpha < 1 on a state of the support), else ``None``.  Read from the
        device once per change of ``prior`` or ``support`` (construction, a load, a copy, a move), not on every
        call of :meth:`log_prior`.  Keyed on the tensors and their :func:`~hybridpgm.tensor_tracking.value_key`
        (versions, data pointers, shapes, strides: ``prior.data = prior.t()`` is another prior at the same address
        and version), holding their storages (:func:`~hybridpgm.tensor_tracking.held_storages`: a ``.data =``
        replacement cannot take a held address)."""
        prior, support = self.prior, self.support
        if unversioned(prior) or unversioned(support):  # no version counter or storage: read each time
            key = None
        else:
            key = (value_key(prior), value_key(support))
        held = self._below
        if key is None or held is None or held[0][0] is not prior or held[0][1] is not support or held[1] != key:
            below = prior.expand(support.shape)[support]  # a structural zero's alpha is left out of its row
            problem = None
            if below.numel() and bool((below < 1).any()):
                problem = (f"Dirichlet prior concentration {below.min().item():.6g} < 1 (argument prior): the MAP "
                           "objective (alpha - 1) log theta has no maximum for alpha < 1 (it grows without bound as "
                           "a state without data goes to probability 0), so the table cannot be fitted with it; "
                           "use alpha >= 1 (alpha = 1 + pseudo-counts, alpha = 1 is maximum likelihood)")
            if key is None:
                return problem
            self._below = ((prior, support), key, problem, held_storages((prior, support)))
        return self._below[2]

    def _apply(self, fn, recurse=True):
        """:meth:`torch.nn.Module._apply` (``to``, ``cuda``, ``double``, ``share_memory`` ...), then the memos
        dropped: they hold the tensors and storages they were read from, which a move replaces, so the old memory
        would stay until the next read of the memo (a move's ``.data =`` keeps the version counters; the keys would
        tell the new tensors anyway)."""
        super()._apply(fn, recurse)
        _set_plain(self, _zeros=None, _below=None)
        return self

    def __setstate__(self, state: dict) -> None:
        """A copy or an unpickled table reads its memos afresh: their keys name the original's data pointers, which
        a copy's own data (or, once the original is freed, data put in place by ``.data =``) may take."""
        super().__setstate__(state)
        _set_plain(self, _zeros=None, _below=None)

    def validate(self, node: str) -> None:
        if self._problem is not None:
            raise ModelSpecError(f"node '{node}': {self._problem}")

    def _valid(self) -> None:
        if self._problem is not None:
            where = f"node '{self.node}'" if self.node else "a Table not added to any network"
            raise ModelSpecError(f"{where}: {self._problem}")

    @classmethod
    def uniform(cls, cardinality: int, parent_cards: Sequence[int] = (), parents: Sequence[str] = (),
                **kwargs) -> "Table":
        """A uniform table (a starting point for learning): every row :math:`1 / K`, shape
        ``[*parent_cards, cardinality]``.

        :param int cardinality: :math:`K`, the node's number of states (a positive integer).
        :param parent_cards: the parents' cardinalities (positive integers), in the order of ``parents``.
        :param parents: the parents' names.
        :param kwargs: passed to :class:`Table` (``learnable``, ``prior``, ...).
        :raises ModelSpecError: ``cardinality`` or an entry of ``parent_cards`` is not a positive integer.
        """
        shape = table_shape(cardinality, parent_cards, "Table.uniform")
        return cls(torch.full(shape, 1.0 / shape[-1]), parents, **kwargs)

    @classmethod
    def random(cls, cardinality: int, parent_cards: Sequence[int] = (), parents: Sequence[str] = (),
               *, concentration: float = 1.0, generator: torch.Generator | None = None, **kwargs) -> "Table":
        """A table with rows drawn from :math:`\\mathrm{Dir}(\\alpha \\mathbf 1)`.

        :param int cardinality: :math:`K`, the node's number of states (a positive integer).
        :param parent_cards: the parents' cardinalities (positive integers), in the order of ``parents``.
        :param parents: the parents' names.
        :param float concentration: :math:`\\alpha > 0`.
        :param generator: the draws' (CPU) generator (else torch's global one), for every ``concentration``,
            drawn on its device whatever torch's default device (the table then moved as :class:`Table` places it):
            torch's gamma sampler takes none, so for :math:`\\alpha \\neq 1` it seeds torch's CPU generator from
            one draw of it inside a fork of that generator (no CUDA generator is seeded or queued a seed), so the
            caller's global streams are left as they were, holding hybridpgm's process-wide lock meanwhile
            (:func:`~hybridpgm.global_state_lock.holding_global_state`: no other thread's call reseeds it).
        :param kwargs: passed to :class:`Table` (``learnable``, ``prior``, ...).
        :raises ModelSpecError: ``concentration`` is not a finite number > 0, or ``cardinality`` or an entry of
            ``parent_cards`` is not a positive integer.
        :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``.
        """
        concentration = positive_real(concentration, "Table.random concentration", error=ModelSpecError)
        shape = table_shape(cardinality, parent_cards, "Table.random")
        generator = generator_or_none(generator, "Table.random generator")
        # with a generator, drawn on its device (whatever torch's default device), then moved as any table is
        on = None if generator is None else generator.device
        if concentration == 1.0:  # Dir(1) rows: normalised Exp(1) draws
            g = torch.empty(shape, device=on).exponential_(generator=generator)
            return cls(g / g.sum(-1, keepdim=True), parents, **kwargs)
        if generator is None:
            alpha = torch.full(shape, concentration)  # on the meta device no rows can be drawn: the table reports it
            return cls(alpha if alpha.is_meta else torch.distributions.Dirichlet(alpha).sample(), parents, **kwargs)
        seed = int(torch.randint(2**62, (), generator=generator, device=on))
        dirichlet = torch.distributions.Dirichlet(torch.full(shape, concentration, device="cpu"))
        with holding_global_state(), torch.random.fork_rng(devices=[]):  # the caller's global stream left as it was
            torch.default_generator.manual_seed(seed)  # the CPU generator alone: torch.manual_seed seeds CUDA too
            rows = dirichlet.sample().to(on)  # on the CPU, which the seed drives; then where the generator is
        return cls(rows, parents, **kwargs)

    def bind(self, node, parent_cards):
        self.validate(node)
        super().bind(node, parent_cards)
        for i, p in enumerate(self.parents):
            card = parent_cards[p]
            if card is None:
                raise self._err(f"a Table cannot have the continuous parent '{p}' (use Neural)")
            if self._shape[i] != card:
                raise self._err(f"table dim {i} has size {self._shape[i]} but parent '{p}' has cardinality {card}")

    def log_table(self, values=None) -> torch.Tensor:
        """``[*parent_cards, cardinality]`` normalised log-probabilities (``-inf`` at the structural zeros of
        the table it was built from)."""
        self._valid()
        return self._logits().log_softmax(-1)

    @property
    def probs(self) -> torch.Tensor:
        self._valid()
        return self._logits().softmax(-1)

    def _logits(self) -> torch.Tensor:
        return self.logits.masked_fill(~self.support, float("-inf")) if self._has_zero() else self.logits

    def _has_zero(self) -> bool:
        """Whether ``support`` has a structural zero; read from the device once per change of the mask (a load,
        a copy, a move, a new mask assigned, ``support.data = mask``), not on every call: keyed on the mask and its
        :func:`~hybridpgm.tensor_tracking.value_key`, holding its storage
        (:func:`~hybridpgm.tensor_tracking.held_storages`)."""
        support = self.support
        if unversioned(support):  # no version counter or storage (a torch.func tensor): read the mask each time
            return not bool(support.all())
        key = value_key(support)
        if self._zeros is None or self._zeros[0] is not support or self._zeros[1] != key:
            self._zeros = (support, key, not bool(support.all()), held_storages((support,)))
        return self._zeros[2]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Load the logits and the ``support`` mask of a saved table.  A state dict without ``support`` (older
        than the saved mask) keeps this table's own mask, without a missing key; a mask with a row of no
        possible state is an error of ``load_state_dict`` naming the key (and is not copied)."""
        key = prefix + "support"
        saved = state_dict.get(key)
        refused = isinstance(saved, torch.Tensor) and tuple(saved.shape) == tuple(self.support.shape) and \
            saved.numel() > 0 and not bool(saved.any(-1).all())
        if refused:
            error_msgs.append(f"{key}: a row of the table's support mask has no possible state (every entry "
                              "False), so the table could not be normalised")
            state_dict = {k: v for k, v in state_dict.items() if k != key}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if (saved is None or refused) and key in missing_keys:  # an older state dict: the table's own mask stands
            missing_keys.remove(key)

    def log_prior(self) -> torch.Tensor:
        """:math:`\\sum_j \\log \\mathrm{Dir}(\\theta_j; \\alpha_j)` (0 without a prior), each row's Dirichlet over
        its support: a structural zero is not a state of the row (a row with one possible state has density 1).

        :raises ModelSpecError: naming the node, for an :math:`\\alpha < 1` on a state of the support (the MAP
            objective has no maximum, so fitting with it is refused); checked on the host once per change of the
            prior or the support.  Where the term cannot be optimised -- under :func:`torch.no_grad` (as
            :meth:`BayesNet.sample` runs the model) or while :meth:`BayesNet.log_prob` scores rows (which leaves
            the prior out) -- its value is returned instead."""
        self._valid()
        if self.prior is None:
            return self.logits.new_zeros(())
        below = self._prior_below_one()
        if below is not None and torch.is_grad_enabled() and not _scoring():
            where = f"node '{self.node}'" if self.node else "a Table not added to any network"
            raise ModelSpecError(f"{where}: {below}")
        lp = self.log_table()
        alpha = self.prior.expand_as(lp)
        if self._has_zero():  # the zeros' -inf and their alphas left out: the Dirichlet of the remaining states
            support = self.support
            lp = lp.masked_fill(~support, 0.0)
            alpha = alpha.masked_fill(~support, 0.0)
            log_gamma = torch.lgamma(alpha.masked_fill(~support, 1.0))  # lgamma(1) = 0 at the zeros
        else:
            log_gamma = torch.lgamma(alpha)
        norm = torch.lgamma(alpha.sum(-1)) - log_gamma.sum(-1)
        return (norm + ((alpha - 1).masked_fill(alpha == 0, 0.0) * lp).sum(-1)).sum()

