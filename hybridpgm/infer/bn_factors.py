"""The factors of an exact Bayesian-network query: CPD tables conditioned on evidence rows.

For evidence :math:`e_n` the query contracts, over named dims,

.. math:: Z_n = \\sum_{x \\setminus e} \\prod_{v \\in R} p(x_v \\mid x_{\\mathrm{pa}(v)})\\big|_{e_n}
          \\prod_{u \\in P} \\lambda_{n}(x_u),

where :math:`R` is the ancestral closure of the observed and queried nodes
(the rest is *barren* and sums to one [1]), observed dims are indexed away
(adding the row dim ``n``), and :math:`\\lambda_n` are the per-row likelihood
vectors of nodes observed in some rows or softly [2].  :func:`factor_dims`
gives the dims without building a tensor (for choosing a plan);
:func:`factors` builds them in log or probability space.  A table that needs
no gradient (none in reverse mode, and no forward-mode tangent:
:func:`~hybridpgm.tensor_tracking.carries_tangent`) is normalised once per
version of its logits and of its ``support`` mask (identity, and
:func:`~hybridpgm.tensor_tracking.value_key`: version, storage, shape, strides, dtype) and reused, so a repeated
query costs only the indexing; the cache entry holds the storages it read
(:func:`~hybridpgm.tensor_tracking.held_storages`), so that data put in place by ``.data =`` cannot take the old
data's address and key, and the strides tell ``logits.data = logits.t()`` (a square table's transpose, at the same
address and version) from the table cached.

**References**

[1] R. D. Shachter, *Bayes-Ball: The Rational Pastime*, 1998.

[2] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.
"""

from __future__ import annotations

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.cpd import Table
from hybridpgm.graphs.cpd_gaussian import check_gaussian_parameters
from hybridpgm.infer.bn_evidence import BATCH, Evidence, NetworkFacts
from hybridpgm.infer.bn_spaces import PROBABILITY_FLOOR
from hybridpgm.tensor_tracking import carries_tangent, held_storages, kept_by_a_cache, unversioned
from hybridpgm.train.deferred_checks import read_checks_once

__all__ = ["ScaledFactors", "condition", "factor_dims", "factors", "node_table", "relevant"]


def relevant(facts: NetworkFacts, targets) -> frozenset:
    """Ancestral closure of ``targets`` (everything else is barren and sums to 1), memoised per target set; the
    memo starts afresh when it holds as many sets as the split estimates' (``row_groups._MAX_ESTIMATES``, 4096), so
    queries on ever new node sets (a long session) do not grow it without bound."""
    key = frozenset(targets)
    keep = facts.relevant.get(key)
    if keep is None:
        from hybridpgm.infer.row_groups import _MAX_ESTIMATES  # the estimates' bound (row_groups imports this module)

        if len(facts.relevant) >= _MAX_ESTIMATES:
            facts.relevant.clear()
        seen, stack = set(), list(key)
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(facts.parents[v])
        keep = facts.relevant[key] = frozenset(seen)
    return keep


def _raw_dims(facts: NetworkFacts, v: str) -> tuple:
    cpd = facts.cpds[v]
    disc = facts.discrete[v]
    if facts.cards[v] is None:
        return (BATCH, *disc)
    return ((BATCH,) if cpd.is_batched else ()) + disc + (v,)


def factor_dims(facts: NetworkFacts, observed, partial, keep) -> list[tuple]:
    """The dims of :func:`factors`' tensors for evidence observing ``observed`` in every row and ``partial``
    in some (names only): what a plan is chosen from."""
    out = []
    for v in facts.nodes:
        if v not in keep:
            continue
        dims = _raw_dims(facts, v)
        if any(d in observed for d in dims):
            dims = (BATCH, *[d for d in dims if d not in observed and d != BATCH])
        out.append(dims)
    out += [(BATCH, v) for v in partial if v in keep]
    return out


def condition(t: torch.Tensor, dims: tuple, ev: Evidence):
    """Index the observed dims of a factor with each row's value (adds the batch dim)."""
    obs = [d for d in dims if d in ev.observed]
    if not obs:
        return t, dims
    batched = dims and dims[0] == BATCH
    rest = [d for d in dims if d not in ev.observed and d != BATCH]
    order = ([BATCH] if batched else []) + obs + rest
    perm = [dims.index(d) for d in order]
    if perm != list(range(len(perm))):
        t = t.permute(perm)
    idx = tuple(ev.observed[d] for d in obs)
    if batched:
        idx = (torch.arange(ev.n, device=t.device),) + idx
    return t[idx], (BATCH, *rest)


def node_table(facts: NetworkFacts, v: str, values, prob: bool) -> torch.Tensor:
    """The (log-)table of ``v``, ``[(N,) *discrete_parent_cards, card]`` (``N`` for a CPD with continuous inputs
    ``values``); a :class:`~hybridpgm.graphs.cpd.Table` needing no gradient is cached."""
    cpd = facts.cpds[v]
    if type(cpd) is Table:
        logits = cpd._parameters.get("logits")
        if logits is None:
            logits = cpd._buffers.get("logits")
        # an inference tensor (a table built under torch.inference_mode) has no version counter, and a tensor of
        # a torch.func transform (vmap over the weights) no storage of its own: neither is cached (unversioned);
        # nor are logits with a forward-mode tangent (a forward_ad dual passed through functional_call), which
        # the detached cache would drop
        support = cpd._buffers.get("support")
        if logits is not None and support is not None and not (logits.requires_grad and torch.is_grad_enabled()) \
                and not unversioned(logits) and not unversioned(support) and not carries_tangent(logits):
            cache = facts.tables
            hit = cache.get(v)
            # the log-table is the logits masked by the support: both are keyed.  The version counts in-place
            # updates (load_state_dict too); the storage pointer catches `.data =` (as `module.to` does), the
            # entry holding the storages (no replacement can be allocated at a held address), and the shape,
            # strides and dtype a view of the same storage (`.data = logits.t()`); the tensors are held, so a
            # replaced one (`table.support = mask`) is told by its identity
            # (tensor_tracking.value_key of both, written out: this runs for every table of every query)
            key = (logits._version, logits.data_ptr(), logits.shape, logits.stride(), logits.dtype,
                   support._version, support.data_ptr(), support.shape, support.stride(), support.dtype)
            if hit is None or hit[0] is not logits or hit[1] is not support or hit[2] != key:
                if shared_on_cpu(logits) or shared_on_cpu(support):  # another process may write it unseen
                    log = cpd.log_table().detach()
                    return log.exp() if prob else log  # (share_memory_() moves the storage: a new key, a miss)
                with kept_by_a_cache():  # usable by a later query that autograd records (not an inference tensor)
                    log = cpd.log_table().detach()
                    hit = cache[v] = (logits, support, key, log, log.exp(), held_storages((logits, support)))
            return hit[4] if prob else hit[3]
    t = cpd.log_table(values)
    return t.exp() if prob else t


def shared_on_cpu(t: torch.Tensor) -> bool:
    """Whether ``t`` is in CPU shared memory (``share_memory_()``, a tensor received through a multiprocessing
    queue), where another process's writes move no version counter here.  ``is_shared()`` is always true for a
    CUDA tensor, whose caching this must not stop."""
    return t.device.type == "cpu" and t.is_shared()


class ScaledFactors(list):
    """The tensors of :func:`factors`, with ``log_scale``: the ``[N]`` :math:`c_{f,n}` of each factor scaled in
    log space, whose sum is :math:`\\log Z_n - \\log \\tilde Z_n` (added back by the queries:
    :func:`~hybridpgm.infer.bn_spaces.factor_shifts`, :func:`~hybridpgm.infer.bn_spaces.with_shift`).  In log
    space only the soft-evidence likelihoods' are there (``ev.shifts``)."""

    def __init__(self, tensors, log_scale: list):
        super().__init__(tensors)
        self.log_scale = log_scale


def _log_scaled(log_t: torch.Tensor, scales: list) -> torch.Tensor:
    """``exp(log_t - c_n)`` with :math:`c_n` the detached largest entry of row ``n`` of ``log_t`` (``0`` in a row
    with none finite); :math:`c_n` (``[N]``) appended to ``scales``.  The shift is taken in log space,
    before any entry is exponentiated, so the factor keeps its digits however far its values lie from one (a
    float32 density of :math:`e^{-103}` or a likelihood of :math:`10^{-300}`)."""
    c = log_t.detach()
    c = c.amax(tuple(range(1, c.dim()))) if c.dim() > 1 else c
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    scales.append(c)
    return (log_t - c.reshape(-1, *([1] * (log_t.dim() - 1)))).exp()


def _log_shifted(log_t: torch.Tensor, scales: list, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``log_t - c_n`` with :math:`c_n` the detached largest entry of row ``n`` of ``log_t`` (``0`` in a row with
    none finite), the difference taken in at least float32 and rounded once to ``log_t``'s dtype; :math:`c_n`
    (``[N]``, in that wider dtype) appended to ``scales``.

    For the networks contracted in log space only (float16, bfloat16: not in
    :data:`~hybridpgm.infer.bn_spaces.PROBABILITY_FLOOR`): a log-entry :math:`\\ell` carries a rounding error of
    up to :math:`\\epsilon |\\ell| / 2`, so a row of hard evidence on an unlikely state (:math:`\\log 10^{-23}
    \\approx -53`, float16's spacing :math:`2^{-5}` there, bfloat16's :math:`2^{-2}`) entered every sum of the
    contraction with a relative error of up to 1.6% (float16) or 12% (bfloat16).  Shifted, the row's largest entry
    is exactly 0 and the entries that matter (within a few nats of it) keep the dtype's relative precision; the
    shift is added back to :math:`\\log p(e_n)` in the wider dtype (:func:`~hybridpgm.infer.bn_spaces.with_shift`).
    Entries of magnitude that dominate a sum without being shifted (a small entry of an unobserved node's table
    that the evidence makes likely) still carry their :math:`\\epsilon |\\ell| / 2`.

    :param dtype: the dtype the difference is rounded to (default ``log_t``'s: a factor already widened, the
        indicator of :func:`_columns_shifted`, passes the network's)."""
    wide = torch.promote_types(log_t.dtype, torch.float32)
    c = log_t.detach().to(wide)
    c = c.amax(tuple(range(1, c.dim()))) if c.dim() > 1 else c
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    scales.append(c)
    return (log_t.to(wide) - c.reshape(-1, *([1] * (log_t.dim() - 1)))).to(log_t.dtype if dtype is None else dtype)


def _columns_shifted(log_t: torch.Tensor, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_t - c, c)``: the log-table ``[(N,) *pa, card]`` of a node with hard evidence in some rows only,
    less :math:`c_{(n,) k}`, the detached largest entry of each of its own states ``k`` over the parents'
    states (``0`` where none is finite), the difference taken in at least float32 and rounded once to
    ``log_t``'s dtype; ``c`` (``[(N,) card]``, in that wider dtype) is added to the node's indicator.

    For half precision only (:func:`factors`).  Such a node keeps its own dim (the rows that leave it
    unobserved sum over it), so its table cannot be shifted row by row as an observed node's is
    (:func:`_log_shifted`); each column is shifted instead, and the shift moves into the node's per-row
    indicator :math:`\\log \\lambda_n(x_v)` (``0`` / ``-inf`` in a row that observes the node, ``0`` in a row
    that does not), whose sum with the table's entries, :math:`\\log p(x_v \\mid x_{\\mathrm{pa}(v)}) +
    \\log \\lambda_n(x_v)`, is unchanged.  That indicator, :math:`\\log \\lambda_n + c`, is then shifted by
    its row maximum (:func:`_log_shifted`): :math:`c_{k_n}` in a row observing state :math:`k_n`, so its
    entry there is exactly 0 and the table's entries on :math:`k_n` that matter (within a few nats of their
    largest) keep the dtype's relative precision, as in a fully observed column; :math:`\\max_k c_k` in a row
    that observes nothing, whose two parts (both :math:`\\le 0`, summing to :math:`\\log p - \\max_k c_k`)
    round no worse than :math:`\\log p` did."""
    wide = torch.promote_types(log_t.dtype, torch.float32)
    c = log_t.detach().to(wide)
    over = tuple(range(1 if batched else 0, c.dim() - 1))  # the parents' dims
    c = c.amax(over) if over else c
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    lead = (c.shape[0],) if batched else ()
    shifted = (log_t.to(wide) - c.reshape(*lead, *([1] * len(over)), c.shape[-1])).to(log_t.dtype)
    return shifted, c


@read_checks_once  # the parameters' check and the continuous inputs' NaN checks of every node: one host read
def factors(facts: NetworkFacts, ev: Evidence, keep, space: str = "log") -> tuple[list, list]:
    """Conditioned factors ``(tensors, dims)`` of the kept nodes plus the partial evidence.

    A factor of soft evidence, in either space, and in probability space that of a continuous density, is
    scaled row by row in log space, :math:`\\phi_f(\\cdot; e_n) = \\exp(\\log \\phi_f - c_{f,n})` with
    :math:`c_{f,n}` its row's largest log-entry (detached), so that its largest entry is one (its largest
    log-entry 0) whatever the scale of the likelihood or density: the contraction then gives
    :math:`\\tilde Z_n = Z_n / \\exp(\\sum_f c_{f,n})` (:math:`Z_n` is linear in each factor; marginals are
    unchanged): the tensors come as :class:`ScaledFactors`, whose ``log_scale`` holds the ``[N]``
    :math:`c_{f,n}`.  A soft-evidence likelihood was scaled so by
    :func:`~hybridpgm.infer.soft_evidence.soft_likelihood` in its working precision, before it was narrowed to
    the network's dtype (its :math:`c_{f,n}` is ``ev.shifts[node]``, in that precision).  In log space, for the
    dtypes contracted there only (float16, bfloat16), the factors whose own variable was observed (hard evidence,
    indexed away) and continuous densities are shifted row by row the same way, in log space
    (:func:`_log_shifted`), so that half-precision queries keep the dtype's relative precision however unlikely
    the evidence; the table of a node with hard evidence in some rows only is shifted column by column, the
    shift moved into its indicator and that shifted by its row maximum (:func:`_columns_shifted`).

    :param str space: ``"log"`` (log-probabilities) or ``"prob"`` (probabilities; a soft-evidence likelihood
        given as probabilities is taken from ``ev.likelihoods``, not exponentiated back from its logarithm, for
        its exact gradient at a zero entry).
    """
    prob = space == "prob"
    check_gaussian_parameters(facts.cpds[v] for v in facts.nodes if v in keep)  # every density's parameters
    narrow = not prob and ev.dtype not in PROBABILITY_FLOOR  # a half-precision network, contracted in log space
    tensors, dims_list, scales = [], [], []
    columns = {}  # half precision: node with hard evidence in some rows -> its table's column shift
    for v in facts.nodes:
        if v not in keep:
            continue
        cpd = facts.cpds[v]
        dims = _raw_dims(facts, v)
        continuous = facts.cards[v] is None
        if continuous:
            if v not in ev.values:
                raise EvidenceError(f"continuous node '{v}' must be observed for exact inference")
            # exponentiated once conditioned and scaled; the evidence is checked (no NaN), the parameters above
            t = cpd.log_density(ev.values[v], ev.values, checked=True)
        else:
            t = node_table(facts, v, ev.values, prob)
        if dims and dims[0] == BATCH and t.shape[0] != ev.n:
            t = t.expand(ev.n, *t.shape[1:])
        t, dims = condition(t, dims, ev)
        if continuous and prob:
            t = _log_scaled(t, scales)
        elif narrow and dims and dims[0] == BATCH and v not in dims:  # a row of hard evidence (or a density)
            t = _log_shifted(t, scales)
        elif narrow and v in ev.partial and v not in ev.soft:  # hard evidence in some rows
            t, columns[v] = _columns_shifted(t, bool(dims) and dims[0] == BATCH)
        tensors.append(t)
        dims_list.append(dims)
    for v, lik in ev.partial.items():
        if v in keep:
            lik = lik.to(ev.dtype)
            if v in columns:  # 0 / -inf, exact in any dtype: plus the column shift, less its row maximum
                lik = _log_shifted(lik.to(columns[v].dtype) + columns[v], scales, ev.dtype)
            if v in ev.soft:  # its row maxima, taken out in the working precision (a soft log_lik's largest is 0)
                scales.append(ev.shifts[v])
            if prob:  # soft evidence given as probabilities enters as it is: exact gradients at a zero entry
                given = ev.likelihoods.get(v)
                lik = lik.exp() if given is None else given  # hard evidence's 0 / 1, or a largest entry of one
            tensors.append(lik)
            dims_list.append((BATCH, v))
    return ScaledFactors(tensors, scales), dims_list
