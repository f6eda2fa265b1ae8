"""The data plate of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` and the weight of its Dirichlet priors.

The network's rows are the plate at dim ``-1``.  Called outside any plate there, the model opens its own,
``pyro.plate(prefix + "data", N, dim=-1)``.  Called inside a caller's vectorized plate at dim ``-1`` (``with
pyro.plate("data", N): z = bn.model(...)``), it *joins* that plate instead: its sites are then that plate's, as a
:func:`pyro.sample` written there would be, so one program can hold per-row sites of its own that read the network's
values (a neural decoder under a network prior) or that the network reads (an enumerated site feeding a neural
CPD's context).  Pyro's enumeration needs that: two plates of different names at one dim are two independent
plates, so a decoder's ``x`` in a sibling plate beside the network's is summed against every row of the network
(a loss of 30.43 where :math:`-\\log p(x)` is 24.67), and a plate of the caller's around the network's own
collides at dim ``-1``.  A caller's plate at dim ``-1`` of another size than the network's rows is refused: the
rows have no other dim to go to.  A plate over something else (groups of rows, particles) goes left of the rows
(``dim=-2``), where it is a batch dim of every row.

A :func:`pyro.poutine.block` between the caller's plate and the call may hide the network's sites from that plate
(``with pyro.plate("rows", N): with poutine.block(): bn.model(...)``): a hidden latent site whose distribution has no
rows of its own draws one value for every row, and the plate still holds dim ``-1``, so a plate of the network's own
there collides (Pyro's raw "plates collide"). The network joins the caller's plate wherever it is on the stack, and
where a block sits inside it, each site is checked: a latent site hidden from it without rows of its own is refused,
naming the plate and the remedy (the block outside the plate, or the call outside the plate); an observed one (scored
at its values, one per row) or one whose parents give it rows is as it was without the block. A block outside the
caller's plate (``with poutine.block(): with pyro.plate("rows", N): bn.model(...)``) hides the sites from the
handlers outside it only: the network joins the plate as without it. A plate that
:func:`pyro.poutine.plate_messenger.block_plate` takes off the stack still holds dim ``-1``: refused likewise.

:class:`DataPlate` is the plate of one call; :func:`prior_weight` the weight of the Dirichlet priors.
"""

from __future__ import annotations

import contextlib

import pyro
from pyro.poutine import runtime
from pyro.poutine.block_messenger import BlockMessenger
from pyro.poutine.indep_messenger import CondIndepStackFrame, IndepMessenger
from pyro.poutine.messenger import Messenger

from hybridpgm.checks import positive_int
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.plate_dims import plate_holding
from hybridpgm.train.update_scope import micro_batch_share

__all__ = ["DataPlate", "plate_holding", "prior_weight"]


class DataPlate:
    """The data plate of one call of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>`: the caller's
    vectorized plate at dim ``-1`` where there is one on Pyro's handler stack, joined, else a plate of its own.

    The caller's plate is read off the stack (its frame is what :func:`pyro.poutine.runtime.get_plates` reports
    where no :func:`pyro.poutine.block` hides it), so a plate that a block inside it hides from the call is joined
    too: its dim ``-1`` is taken, a plate of the network's own would collide there.  Where a block sits between
    them, :meth:`open` checks that each site reaches the plate.

    :param str prefix: the model's site prefix (its own plate is ``prefix + "data"``).
    :ivar caller: the caller's plate at dim ``-1`` (a ``CondIndepStackFrame``: its ``name``, ``size``, the rows of
        a batch, and ``full_size``, the data set's where it subsamples), ``None`` where there is none.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.what = "BayesNet.model"
        self.caller, self._screened = _rows_plate()

    @property
    def rows(self) -> int | None:
        """The rows of the caller's plate (a subsampled plate's batch), ``None`` without one."""
        return None if self.caller is None else int(self.caller.size)

    def full_size(self, num_data: int | None) -> int | None:
        """``num_data`` as given; where it is ``None`` and the caller's plate subsamples (``pyro.plate(name, N,
        subsample_size=B)``), that plate's size ``N``: the data set it declares, which its scale ``N / B`` of every
        row stands for, so that the priors count once in the loss it estimates."""
        if num_data is not None or self.caller is None:
            return num_data
        full = self.caller.full_size
        return None if full is None or int(full) == self.rows else int(full)

    def open(self, n: int):
        """The context of the model's sites over ``n`` rows: its own plate, or where it joins the caller's
        (:meth:`check` it first) nothing, or with a :func:`pyro.poutine.block` between the caller's plate and the call
        a handler that refuses a latent site the block hides from that plate without rows of its own.

        :raises ModelSpecError: (on entering a site) a latent site of the model hidden from the caller's plate at dim
            ``-1`` by a block inside it, whose distribution has no rows of its own, naming the plate, the site and
            what to do.
        """
        if self.caller is None:
            return pyro.plate(self.prefix + "data", n, dim=-1)
        return _ReachesPlate(self.caller, self.what) if self._screened else contextlib.nullcontext()

    def check(self, n: int, what: str = "BayesNet.model", given: str = "data, context inputs or num_samples") -> None:
        """Refuse ``n`` rows inside a caller's plate at dim ``-1`` of another size.

        :param int n: the rows the model's arguments give.
        :param str what: the model named in the message (``"MarkovNet.model"`` for a Markov net's).
        :param str given: the arguments that give the rows, as the message names them.
        :raises DataError: a caller's plate at dim ``-1`` of another number of rows than ``n``, naming it, both
            counts and what to do.
        :raises ModelSpecError: a plate at dim ``-1`` that is not on Pyro's handler stack (taken off by
            :func:`~pyro.poutine.plate_messenger.block_plate`) but still holds the dim, naming it: the model can
            neither join it nor open its own plate there.
        """
        self.what = what
        held = plate_holding(-1)
        if self.caller is None and held is not None:
            raise ModelSpecError(
                f"{what} is called inside the plate {held!r}, which holds dim -1, the dim of the network's rows, but "
                f"is not on Pyro's handler stack (taken off by block_plate, or left entered by an earlier program "
                f"that failed inside it): the network can neither join it "
                f"nor open a plate of its own at dim -1 (Pyro's plates would collide); call the model outside the "
                f"plate {held!r}, or inside it without the block_plate (it then joins the plate)")
        if self.caller is not None and n != self.rows:
            raise DataError(
                f"{what} is called inside the plate {self.caller.name!r} of {self.rows} rows at dim -1, "
                f"the dim of the network's rows, but its {given} give {n} rows: "
                f"inside a plate at dim -1 the network joins it, its rows being that plate's (pass "
                f"{self.rows} rows); a plate over something else (groups of rows, particles) must take another "
                f"dim, pyro.plate({self.caller.name!r}, {self.rows}, dim=-2), with max_plate_nesting=2")

    def prior_factor(self, log_prior, n: int):
        """A Dirichlet prior's term for :func:`pyro.factor`: ``log_prior`` itself under the model's own plate
        (the factor sits outside it), ``log_prior / n`` per row inside a joined plate (where a factor is one term
        per row: the ``n`` rows add up to it once, and the caller's scale, a subsampled plate's ``N / B``,
        weighs it as it weighs the rows; a row that a caller's mask masks out drops its share)."""
        return log_prior if self.caller is None else log_prior / n


def _frame(m: IndepMessenger) -> CondIndepStackFrame:
    """The frame that the plate ``m`` gives a site (``pyro.plate``'s: its batch size, and the data set's as
    ``full_size``), read as :func:`~pyro.poutine.runtime.get_plates` reads it, from a message ``m`` alone
    handles."""
    msg = runtime.Message(type="inspect", name="_pyro_inspect", fn=lambda: True, is_observed=False, args=(),
                          kwargs={}, value=None, infer={"_do_not_trace": True}, scale=1.0, mask=None,
                          cond_indep_stack=(), done=False, stop=False, continuation=None)
    m._process_message(msg)
    return msg["cond_indep_stack"][0]


def _rows_plate() -> tuple[CondIndepStackFrame | None, bool]:
    """``(frame, screened)``: the frame of the innermost vectorized plate at dim ``-1`` on Pyro's handler stack
    (``None`` for none), and whether a :func:`pyro.poutine.block` sits inside it, between it and the call (which may
    hide a site from it)."""
    screened = False
    for m in reversed(runtime._PYRO_STACK):  # the innermost handler first
        if isinstance(m, IndepMessenger) and m.dim == -1:
            return _frame(m), screened
        screened = screened or isinstance(m, BlockMessenger)
    return None, False


class _ReachesPlate(Messenger):
    """The innermost handler of a model's sites inside the caller's plate ``frame`` with a block between them:
    refuses a latent site that the block stopped before the plate (no ``frame`` in its ``cond_indep_stack``) and
    whose distribution has no rows of its own (batch shape not ending in the plate's size): it would draw one value
    for all rows.  A hidden observed site (scored at its values, one per row) or a latent one whose parents give it
    its rows is what it was without the block.  The copy of a site that :func:`pyro.poutine.do` keeps as
    ``name__CF`` (stopped there by design; the intervened site goes on to the plate) is left alone."""

    def __init__(self, frame: CondIndepStackFrame, what: str) -> None:
        super().__init__()
        self.frame, self.what = frame, what

    def _pyro_post_sample(self, msg) -> None:
        if any(f.name == self.frame.name for f in msg["cond_indep_stack"]) or (
                msg.get("_intervener_id") is not None and msg["name"].endswith("__CF")):
            return
        name, rows = self.frame.name, self.frame.size
        batch = tuple(getattr(msg["fn"], "batch_shape", ()))
        if msg["is_observed"] or (batch and batch[-1] == rows):
            return
        raise ModelSpecError(
            f"{self.what} is called inside the plate {name!r} of {rows} rows at dim -1, the dim of the network's "
            f"rows, and joins it, but a poutine.block between them hides its latent site {msg['name']!r} from that "
            f"plate, and its distribution (batch shape {batch}) has no rows of its own: it would draw one value for "
            f"all {rows} rows; "
            f"put the block outside the plate (with poutine.block(...): with pyro.plate({name!r}, {rows}): ...), "
            f"where it hides the sites from the handlers outside it as before, or call the model outside the plate "
            f"(it then opens its own)")


def prior_weight(num_data, n: int) -> float:
    r"""The weight :math:`w` of the Dirichlet priors (:math:`w \log \mathrm{Dir}(\theta; \alpha)`) in a model call
    on a batch of ``n`` rows.

    * With ``num_data`` (:math:`N`): :math:`w = n / N`, so that the per-batch losses, summed over an epoch or
      over the micro-batches of one update, count the prior once per pass over the data.
    * Without it, the batch stands for the whole data set: :math:`w = 1` per model call outside
      :func:`hybridpgm.fit` (plain SVI: once per step), and inside ``fit`` the share
      :math:`w_i = m_i / B` of the micro-batch (:func:`~hybridpgm.train.update_scope.micro_batch_share`:
      1 for a batch that is not split), so that ``accumulate = M`` trains exactly as ``accumulate = 1``; on
      :math:`R` ranks, whose gradients ``fit`` averages, :math:`m_i / (B R)`, so that they train as one
      process with the batch of :math:`B R` rows.

    Why :math:`m_i / B`: ``fit`` weights the loss :math:`L_i` of micro-batch :math:`i` by :math:`m_i / B`
    (:math:`m_i` of the step's :math:`B` rows; :math:`S_i` its data term, :math:`\sum_i S_i = S`;
    :math:`\ell = -\log \mathrm{Dir}(\theta; \alpha)`).  With :class:`~hybridpgm.infer.SVIObjective`'s
    ``per_example=True``, :math:`L_i = (S_i + w_i \ell) / m_i`, so the step minimises
    :math:`(S + \ell \sum_i w_i) / B`, the loss :math:`(S + \ell) / B` of the unsplit batch exactly when
    :math:`\sum_i w_i = 1`; :math:`w_i = m_i / B` is also what ``num_data = B`` gives, the batch being the
    whole data set.  With ``per_example=False``, :math:`L_i = S_i + w_i \ell` and the step minimises
    :math:`\sum_i (m_i / B) (S_i + w_i \ell)`: again what ``num_data = B`` gives, the prior weighing as much
    as the mean weight of a row (:math:`\sum_i m_i^2 / B^2` both), and for :math:`M` micro-batches of
    :math:`B / M` rows exactly :math:`1 / M` times the loss of the unsplit batch (such a summed loss is not
    intensive: ``fit``'s weights scale its data term as well).

    :param num_data: the size of the full data set, ``None`` for none given.
    :param n: the rows of this (micro-)batch.
    :raises ConfigError: a ``num_data`` that is not a positive integer (``bool``, float, string refused).
    :raises DataError: a ``num_data`` smaller than the batch (the full data set holds every batch).
    """
    if num_data is None:
        share = micro_batch_share()
        return 1.0 if share is None else share
    num_data = positive_int(num_data, "BayesNet.model num_data (the size of the full data set)", error=ConfigError)
    if num_data < n:
        raise DataError(f"BayesNet.model num_data={num_data} (the size of the full data set) is smaller than "
                        f"the {n} rows of this batch")
    return n / num_data
