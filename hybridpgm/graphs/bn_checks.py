"""The checks :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` makes of its data before Pyro sees it.

:class:`BayesNetChecks` is a mixin of :class:`~hybridpgm.graphs.bn_data.BayesNetData`:

* rows that are impossible under the model -- an observed state of probability 0 (a structural zero of a
  :class:`~hybridpgm.graphs.cpd.Table`) given the parents' observed values and, under enumeration, whatever the
  values of its missing parents -- are refused, naming the rows and the nodes, without a host read inside
  :func:`hybridpgm.fit`'s step (:func:`~hybridpgm.train.deferred_checks.check_or_defer`);
  :meth:`BayesNet.log_prob <hybridpgm.graphs.BayesNet.log_prob>` scores them ``-inf`` instead (:data:`_SCORING`);
* rows impossible only through several tables together, which no one-table check sees, are named on
  :func:`hybridpgm.fit`'s error path, once the loss is infinite (:meth:`BayesNetChecks.explain_nonfinite_loss`,
  by the rows' exact log-evidence);
* a node named like a site the model derives from another node's name is refused;
* the empty guide refuses data with missing discrete entries when no enumeration is active.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
from pyro.poutine.block_messenger import BlockMessenger
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger

from hybridpgm.data.validation import describe_origin
from hybridpgm.errors import ConfigError, DataError, ModelSpecError, ObjectiveError
from hybridpgm.graphs.bn_values import _missing
from hybridpgm.handler_scope import DiscreteSitesDrawnExactly
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.train.deferred_checks import check_or_defer
from hybridpgm.train.traced_checks import validation_as_called

__all__ = ["BayesNetChecks"]

#: set while :meth:`BayesNet.log_prob` traces the model: a row of probability 0 then scores ``-inf``, not an error
_SCORING: contextvars.ContextVar[bool] = contextvars.ContextVar("hybridpgm_bn_scoring", default=False)
#: the note of a compiled missing-pattern refusal: the batch is valid, the trace is out of date
_PATTERN_NOTE = ("not a data error: the compiled function was traced on another missing pattern; trace a new JIT ELBO "
                 "on such data or use TraceEnum_ELBO")


class _Enumerated(Messenger):
    """Records the sample sites that Pyro's enumeration (``EnumMessenger``) gave every value of their support: the
    site has an enumeration dim and its value spans it (a value replayed from a guide or conditioned, as under
    Gibbs, is one draw per row and is not recorded).  Entered by :meth:`BayesNet.model` around its plate.

    It also runs the checks of impossible rows that :meth:`BayesNetChecks._check_possible` leaves in ``pending``
    (site name -> check), once the site's message has passed every handler: its ``msg["mask"]`` is then the one
    Pyro scores the site with (the model's own ``obs_mask`` and the masks of the caller's
    :func:`pyro.poutine.mask`, ANDed; not those outside a :func:`pyro.poutine.block` that hides the site).  Sites
    are known by the names the model gave them, read before the caller's handlers (``poutine.scope``) rename them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.pending: dict = {}
        self._site: tuple = (None, None)  # (the message being processed, its name as the model gave it)

    def _pyro_sample(self, msg) -> None:
        self._site = (msg, msg["name"])  # the inner handlers (the plate, the obs_mask's mask) rename nothing

    def _pyro_post_sample(self, msg) -> None:
        site, name = self._site
        self._site = (None, None)
        if site is not msg:
            name = msg["name"]
        dim = msg["infer"].get("_enumerate_dim")
        if dim is not None and not msg["is_observed"] and msg["value"].dim() >= -dim:
            self.names.add(name)
        check = self.pending.pop(name, None)
        if check is not None:
            check(msg["mask"])


class BayesNetChecks:
    """Mixin of :class:`~hybridpgm.graphs.bn_data.BayesNetData`: the data checks of :meth:`BayesNet.model`."""

    def _check_site_names(self, observed: dict, prefix: str = "") -> None:
        """Refuse a node named like a site :meth:`model` derives from another node's name for these data (Pyro
        refuses two sites of one name): ``"<v>_prior"`` (the prior factor of a node with a Dirichlet prior),
        ``"<v>_observed"`` and ``"<v>_unobserved"`` (a column with some entries missing).  Every site carries
        the model's ``prefix``, so the clash is the same whatever it is; the message names the prefixed site.

        :raises ModelSpecError: naming the node, the (prefixed) site and the node it derives from.
        """
        derived = {f"{v}_prior": v for v, c in self.cpds.items() if getattr(c, "prior", None) is not None}
        for v, (_, mask) in observed.items():
            if isinstance(mask, torch.Tensor):
                derived.update({f"{v}_observed": v, f"{v}_unobserved": v})
        clash = next((site for site in derived if site in self.cpds), None)
        if clash is not None:
            v = derived[clash]
            why = "its prior factor" if clash.endswith("_prior") else "its sites for a column with missing entries"
            own = f" (its site {prefix + clash!r} under prefix {prefix!r})" if prefix else ""
            raise ModelSpecError(f"BayesNet.model: node {clash!r}{own} has the name of the Pyro site "
                                 f"{prefix + clash!r} of node {v!r} ({why}); Pyro refuses two sites of one name, so "
                                 f"rename node {clash!r}")

    @staticmethod
    @contextlib.contextmanager
    def _scoring():
        """Within the block :meth:`_check_possible` lets impossible rows through (their score is ``-inf``)."""
        token = _SCORING.set(True)
        try:
            yield
        finally:
            _SCORING.reset(token)

    def _zero_checks(self) -> _Enumerated | None:
        """The recorder of enumerated sites :meth:`_check_possible` needs (entered around the model's plate), or
        ``None`` where no check runs: while scoring, without Pyro's validation, or without structural zeros.
        Inside :func:`torch.jit.trace` the validation flag is the one the JIT ELBO was called under (Pyro's JIT
        ELBOs turn validation off while they trace; :func:`~hybridpgm.train.traced_checks.validation_as_called`):
        the check, compiled in where the eager code makes it, then judges every later batch."""
        if _SCORING.get() or not validation_as_called() \
                or not any(c._has_zero() for c in self.cpds.values()):
            return None
        return _Enumerated()

    def _check_possible(self, v: str, fn, obs: torch.Tensor, seen: torch.Tensor | None, observed: dict,
                        enumerated: _Enumerated | None, prefix: str = "") -> None:
        """Refuse rows in which ``v`` is observed in a state of probability 0 whatever the values of its parents
        that the row leaves open (a structural zero of a :class:`~hybridpgm.graphs.cpd.Table`): the row's
        likelihood :math:`p(x_{\\rm obs}) = \\sum_{x_{\\rm mis}} \\prod_u p(x_u \\mid x_{\\mathrm{pa}(u)})` is 0 and its
        loss ``+inf`` (:meth:`BayesNet.log_prob` scores such a row ``-inf``).

        A parent observed in the row takes its value; a parent missing in the row counts only where Pyro's
        enumeration gave it every value (``enumerated`` recorded its site, as under
        :class:`~pyro.infer.TraceEnum_ELBO`): the row is refused when :math:`p(x_v \\mid \\mathrm{pa}) = 0` for every
        completion of its missing parents.  A missing parent whose value is one draw (replayed from a guide,
        conditioned as under Gibbs) leaves the row unjudged.  The check is local to ``v``'s table: a row made
        impossible only by several tables together (a missing node that one observed child rules out in one
        state and another in the other) is not named here; its loss is ``+inf`` (``bn.log_evidence`` of the row
        is ``-inf``), and :func:`hybridpgm.fit`'s :class:`~hybridpgm.errors.TrainingDivergedError` names it
        (:meth:`explain_nonfinite_loss`, on that error path only).  It costs one ``log_prob`` of ``v``'s
        distribution, already built, and is deferred inside :func:`hybridpgm.fit`'s step
        (:func:`~hybridpgm.train.deferred_checks.check_or_defer`): no extra host read.

        Rows that the site's mask leaves out are not judged: the check is left in ``enumerated.pending`` and made
        when the site's message has passed Pyro's handlers (:class:`_Enumerated`), on the rows its
        ``msg["mask"]`` keeps (``poutine.mask(bn.model, mask=keep)`` over padding rows of probability 0 gives the
        loss of the kept rows, as a hand-written model does); a mask with dims besides the rows' keeps a row
        where it keeps any of its entries.

        :param seen: ``[N]`` where ``v`` is observed (``None``: every row).
        :param observed: :meth:`_observed_columns` of the data (whose masks say where the parents are observed).
        :param enumerated: :meth:`_zero_checks`' recorder (``None``: no check).
        :param prefix: the model's ``prefix`` (the recorder holds prefixed site names).
        :raises DataError: naming the rows, the node and the missing parents involved; inside
            :func:`hybridpgm.fit` the rows are numbered within the micro-batch (or rank shard) that the message
            names with its step (:func:`~hybridpgm.data.validation.describe_origin`, read when the check is made,
            since a deferred error is built after the step) and, under several ranks, the rank; outside it, within
            the data given to the model.
        """
        if enumerated is None or not self.cpds[v]._has_zero():
            return
        site = prefix + v if seen is None else f"{prefix}{v}_observed"  # the site bn.model samples v's rows at
        open_parents = []  # missing in some rows and enumerated: every completion is tried
        for p in self.cpds[v].discrete_parents:
            parent_seen = observed.get(p, (None, False))[1]
            if parent_seen is None:
                continue
            if prefix + p in enumerated.names or f"{prefix}{p}_unobserved" in enumerated.names:
                open_parents.append((p, parent_seen))
                continue
            if parent_seen is False:
                return
            seen = parent_seen if seen is None else seen & parent_seen
        lp = fn.log_prob(obs)  # [*enumeration dims, N]
        impossible = (lp == float("-inf")).reshape(-1, lp.shape[-1]).all(0)
        if seen is not None:
            impossible = impossible & seen
        # read now: a deferred error is built after the step, outside fit's batch_origin of this micro-batch
        origin = describe_origin()[2:-1]
        if origin and torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:  # fit's ranks: each holds a shard of the batch
            origin += (f", the shard of rank {torch.distributed.get_rank()} of "
                       f"{torch.distributed.get_world_size()}")
        numbered = f" ({origin}; rows numbered from 0 within it)" if origin else ""

        def check(mask) -> None:  # called with the site's msg["mask"] (_Enumerated)
            kept = _kept(impossible, mask)
            if kept is None:
                return

            def error():
                rows = kept.nonzero().flatten().tolist()
                shown = rows[:10] + (["..."] if len(rows) > 10 else [])
                plural = len(rows) > 1
                flagged = torch.zeros_like(kept)
                flagged[rows] = True
                missing = [p for p, m in open_parents if m is False or bool((flagged & ~m).any())]
                given = (f"given its observed parents' values and whatever the values of its missing parent"
                         f"{'s' if len(missing) > 1 else ''} {missing}" if missing else "given its parents' values")
                return DataError(f"BayesNet.model: row{'s' if plural else ''} {shown} of the data{numbered} "
                                 f"{'are' if plural else 'is'} impossible under the model: node '{v}' is "
                                 f"observed in a state of probability 0 (a structural zero of its table) {given} in "
                                 f"that row, so the likelihood is 0 and the loss +inf; fix or drop the "
                                 f"row{'s' if plural else ''}, or give that table entry a non-zero probability")
            check_or_defer(~kept.any(), error, f"BayesNet.model: a row of the data is impossible under the model: "
                           f"node '{v}' is observed in a state of probability 0 (a structural zero of its table) "
                           f"given its parents' values")
        enumerated.pending[site] = check

    @staticmethod
    def _missing_pattern(split: dict, passed: torch.Tensor | None = None) -> tuple[list, bool]:
        """Per column ``[any entry missing, every entry missing]`` (bools), read from the device once for all columns,
        and ``passed`` (a 0-d bool flag: the columns' own checks, read in the same read; ``True`` when ``None``).

        Inside :func:`torch.jit.trace` that read is frozen into the compiled function, which keeps the sites of the
        traced batch (:meth:`~hybridpgm.graphs.bn_data.BayesNetData._observed_columns`) and would score a later
        missing entry as an observed value (a column traced complete) or ignore a later observed one (a column
        traced missing in every row); there the compiled function checks that every later batch keeps such a
        column so (:func:`~hybridpgm.train.deferred_checks.check_or_defer`).  A column traced with some entries
        missing takes any pattern.

        :param split: node -> ``(filled values, missing mask)``, :meth:`_fill_missing` of each column.
        :returns: ``(flags, passed)``.
        """
        stacked = torch.stack([torch.stack([m.any(), m.all()]) for _, m in split.values()]).reshape(-1)
        if passed is not None:  # one read for both
            stacked = torch.cat([stacked, passed.reshape(1).to(stacked.device)])
        read = stacked.tolist()
        passed = bool(read.pop()) if passed is not None else True
        flags = [read[i:i + 2] for i in range(0, len(read), 2)]
        if not torch.jit.is_tracing():
            return flags, passed
        for (v, (_, m)), (some, every) in zip(split.items(), flags):
            if some and not every:
                continue
            keep = m.all() if every else ~m.any()
            state = "missing in every row" if every else "complete (no missing entry)"
            effect = "ignore its observed entries" if every else "score its missing entries as observed values"
            what = (f"BayesNet.model was traced (torch.jit.trace) on data whose column '{v}' was {state}, and this "
                    f"batch's is not: the compiled function keeps the traced batch's sites and would {effect}")
            check_or_defer(keep, lambda: ObjectiveError(what), what, ObjectiveError, note=_PATTERN_NOTE)
        return flags, passed

    @renamed_keyword(inputs="context")
    def explain_nonfinite_loss(self, data=None, mask=None, context=None, **model_kwargs) -> str | None:
        """The rows of ``data`` whose likelihood under the network is 0 (or NaN), with their observed values:
        why the loss of :meth:`model` on them is not finite.

        Each row's exact log-evidence :math:`\\log p(x_{\\rm obs}) = \\log \\sum_{x_{\\rm mis}} \\prod_u
        p(x_u \\mid x_{\\mathrm{pa}(u)})` is computed (:meth:`log_evidence`, the missing entries summed out), so
        a row that several tables make impossible only together is named too (a missing node ruled out in one
        state by one observed child and in the other by another), which the one-table check of :meth:`model`
        (:meth:`_check_possible`) cannot see.  :class:`~hybridpgm.infer.SVIObjective` over :meth:`model` calls it
        on :func:`hybridpgm.fit`'s error path, when a loss is not finite, and the
        :class:`~hybridpgm.errors.TrainingDivergedError` quotes it; it costs one exact query of the batch.

        :param data: :meth:`model`'s ``data`` (see :meth:`columns`), ``mask`` and ``context``;
            ``model_kwargs`` (``num_data``, ``prefix``) play no part.
        :param mask: :meth:`model`'s ``mask``, read with ``data`` by :meth:`columns` (not read without data).
        :param context: :meth:`model`'s ``context`` inputs, joined to the data's columns as the evidence of
            :meth:`log_evidence`.
        :returns: a sentence naming the rows (numbered from 0 in ``data``, at most 10 shown) and their observed
            values, or ``None`` when every row has a finite log-evidence (or ``data`` is ``None``).
        :raises DataError: data :meth:`columns` refuses; :class:`~hybridpgm.errors.EvidenceError`: evidence the
            exact query refuses (a continuous node with a missing entry).
        """
        if data is None:
            return None
        cols = self.columns(data, mask)
        with torch.no_grad():
            lp = self.log_evidence({**self._inputs(context), **cols}).reshape(-1)
        zero, nan = (lp == float("-inf")).nonzero().flatten().tolist(), lp.isnan().nonzero().flatten().tolist()
        if not zero and not nan:
            return None
        parts = []
        if zero:
            parts.append(f"{_rows_named(zero)} {'have' if len(zero) > 1 else 'has'} probability 0 under the network "
                         f"(exact log-evidence -inf, its missing entries summed out: no completion of the row is "
                         f"possible, possibly through several tables together): {self._row_values(cols, zero)}; "
                         f"fix or drop the row{'s' if len(zero) > 1 else ''}, or give the table entries that rule "
                         f"{'them' if len(zero) > 1 else 'it'} out a non-zero probability")
        if nan:
            parts.append(f"{_rows_named(nan)} {'have' if len(nan) > 1 else 'has'} a NaN log-evidence (non-finite "
                         f"parameters or inputs?): {self._row_values(cols, nan)}")
        return "BayesNet: " + "; ".join(parts)

    def _row_values(self, cols: dict, rows: list[int]) -> str:
        """``"row 2 (a=0, c='yes')"`` for each of the first 10 ``rows``: the observed entries, by state name where
        the node has them (missing entries left out)."""
        shown = []
        for i in rows[:10]:
            values = []
            for v in self.nodes:
                if v not in cols or bool(_missing(cols[v][i : i + 1]).any()):
                    continue
                x = cols[v][i].item()
                names = self.state_names.get(v)
                if self.cardinality(v) is not None:
                    x = int(x)
                    x = repr(names[x]) if names and 0 <= x < len(names) else x
                values.append(f"{v}={x}")
            shown.append(f"row {i} ({', '.join(values)})")
        return ", ".join(shown) + (", ..." if len(rows) > 10 else "")

    def _check_enumerated(self, data, mask, prefix: str = "") -> None:
        """:meth:`BayesNet.guide`'s check: the empty guide is right only when every missing discrete entry of
        ``data`` is enumerated, so without an enumeration handler (Pyro's ``EnumMessenger``, which
        :class:`~pyro.infer.TraceEnum_ELBO` puts around model and guide) such data are refused.  A run under
        :func:`pyro.poutine.block` (the probe trace of Pyro's ``_guess_max_plate_nesting``, whose sites reach
        no objective) is let through, but not Pyro's JIT parameter capture, which runs a whole ELBO under a block
        (:func:`_probe_only`), and so is one under
        :class:`~hybridpgm.handler_scope.DiscreteSitesDrawnExactly` (:func:`~hybridpgm.diagnostics.from_pyro_svi`
        draws the missing entries from their exact posterior itself); it reads nothing from the device.  The
        message names the model's latent sites with the model's ``prefix``."""
        if data is None or _probe_only() or any(isinstance(m, (EnumMessenger, DiscreteSitesDrawnExactly))
                                                for m in _PYRO_STACK):
            return
        cols = self.columns(data, mask)
        latent = [prefix + v for v in self.nodes if self.cardinality(v) is not None
                  and (v not in cols or bool(_missing(cols[v]).any()))]
        if latent:
            raise ConfigError(
                f"BayesNet.guide is empty: it is exact only when the missing discrete entries are enumerated, and "
                f"the data have missing entries in {latent} with no enumeration active, so an ELBO would sample "
                f"them from the model instead of summing them out (a biased fit).  Train with "
                f"SVIObjective(bn.model, bn.guide, pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)) (the model "
                f"marks its latent sites for enumeration); for samples of the missing entries given the observed "
                f"ones use bn.sample(n, evidence=...) or pyro.infer.infer_discrete(bn.model, first_available_dim=-2)")


def _probe_only() -> bool:
    """Whether the program runs under a :func:`pyro.poutine.block` whose traces reach no objective, such as the probe
    of Pyro's ``_guess_max_plate_nesting`` or an objective's structure probe: a ``BlockMessenger`` on the handler
    stack, unless it is followed, further in, by a parameter-only ``TraceMessenger`` and then a full one.  That is
    Pyro's JIT (``pyro.ops.jit``): before compiling an ELBO it runs the whole ELBO once under ``poutine.block()`` and
    ``poutine.trace(param_only=True)`` to capture its parameters, the ELBO's own traces inside; a program the ELBO
    cannot score fails there with a raw error (``KeyError`` of a model site the guide lacks), so the checks run."""
    stack = list(_PYRO_STACK)
    for i, handler in enumerate(stack):
        if not isinstance(handler, BlockMessenger):
            continue
        capture = next((j for j, m in enumerate(stack[i + 1:], i + 1)
                        if isinstance(m, TraceMessenger) and m.param_only), None)
        if capture is None or not any(isinstance(m, TraceMessenger) and not m.param_only
                                      for m in stack[capture + 1:]):
            return True
    return False


def _kept(impossible: torch.Tensor, mask) -> torch.Tensor | None:
    """The ``[N]`` flags of impossible rows that a site's Pyro ``mask`` keeps: ``impossible`` itself for no mask
    (``None``, ``True``), ``None`` (nothing to check) for ``False``; a tensor mask is ANDed, reduced by ``any``
    over its dims besides the rows' (its last, of size ``N`` or 1).  A tensor that does not broadcast to the rows
    is not read (Pyro refuses it when it scores the site)."""
    if mask is None or mask is True:
        return impossible
    if mask is False:
        return None
    if mask.dim() > 1:
        try:
            shape = torch.broadcast_shapes(mask.shape, impossible.shape)
        except RuntimeError:
            return impossible
        mask = mask.expand(shape).reshape(-1, shape[-1]).any(0)
    elif mask.dim() == 1 and mask.shape[0] not in (1, impossible.shape[0]):
        return impossible
    return impossible & mask


def _rows_named(rows: list[int]) -> str:
    """``"row [2] of the data"`` / ``"rows [0, 3, ...] of the data"`` (at most 10 indices)."""
    shown = rows[:10] + (["..."] if len(rows) > 10 else [])
    return f"row{'s' if len(rows) > 1 else ''} {shown} of the data"
