"""A :class:`~hybridpgm.graphs.MarkovNet` as one Pyro distribution over the joint state of its variables.

For a Markov random field (given evidence :math:`e`, which rules states out)

.. math::

    p(x \\mid e) = \\frac{\\exp \\sum_f \\theta_f(x_f)}{Z_e}\\, [x \\sim e], \\qquad
    Z_e = \\sum_{x \\sim e} \\exp \\sum_f \\theta_f(x_f),

``log_prob`` is the score minus the exact :math:`\\log Z_e` (:func:`~hybridpgm.infer.mrf_exact.exact_log_partition`,
differentiable in the potentials), ``sample`` draws exact joint samples from one contraction
(:func:`~hybridpgm.infer.mrf_exact.exact_sample`), ``mode`` is the exact MAP state
(:func:`~hybridpgm.infer.mrf_exact.exact_map`) and ``entropy`` the exact entropy
(:func:`~hybridpgm.infer.mrf_entropy.exact_entropy`).  So ``pyro.sample("x", mrf.distribution())`` is one site whose
value is the whole configuration, ``[..., V]`` in the model's variable order: an MRF prior over a discrete
structure, or a structured guide for one (its samples are not reparameterisable, so Pyro's ELBOs use the
score-function estimator [1] for it).  :meth:`~hybridpgm.graphs.MarkovNet.model` is the other view, one enumerated
site per variable.

**Enumeration.**  The support is finite, every joint state (:math:`\\prod_v |X_v|` of them):
:meth:`~MarkovNetDistribution.enumerate_support` lists them, so a site marked ``infer={"enumerate": "parallel"}``
is summed out exactly by :class:`~pyro.infer.TraceEnum_ELBO` (with other enumerated sites reading it, and its
gradients), up to :data:`MAX_ENUMERATED_STATES` states.  Pyro's ``infer_discrete`` takes no enumerated site with
an event dim (it raises its own "Invalid tensor shape", as for a ``OneHotCategorical``): to draw the state given
observations downstream, use :meth:`~hybridpgm.graphs.MarkovNet.model`'s one site per variable.
``has_enumerate_support`` stays ``False``: ``config_enumerate`` leaves the site sampled, as before (the joint
states grow exponentially in the variables: enumerating them is a choice made explicitly, per site).

**One forward pass.**  The networks of neural potentials run once, when the distribution is built; ``log_prob``
(the score read from the compiled graph, :func:`~hybridpgm.graphs.mrf_score.factor_graph_score`), ``sample``,
``mode`` and ``entropy`` all use those tables, so a score and its :math:`\\log Z_e` come from one dropout mask, and an
in-place update of the potentials afterwards (an optimizer step) cannot mix a new score with the old
:math:`\\log Z_e`.  Inside a :class:`pyro.plate`, :meth:`~MarkovNetDistribution.expand` gives a
:class:`MarkovNetDistribution` of the wider batch shape (``entropy`` and ``mode`` kept).

**Shapes.**  ``batch_shape`` is the model's (independent models, evidence rows and contexts broadcast together;
it may hold 0 rows, evidence of shape ``(0,)``, and then every answer is empty);
``event_shape`` is ``(V,)``; values are integer states (any integer dtype; float values of whole numbers pass
Pyro's validation too).

**References**

[1] R. J. Williams, *Simple statistical gradient-following algorithms for connectionist reinforcement learning*,
1992.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import lazy_property

from hybridpgm.checks import expanded_batch_shape, sample_shape_of
from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup
from hybridpgm.graphs.mrf_centring import centred_graph
from hybridpgm.graphs.mrf_compile import assignment_states
from hybridpgm.graphs.mrf_score import factor_graph_score

__all__ = ["MAX_ENUMERATED_STATES", "MarkovNetDistribution"]

#: the most joint states :meth:`MarkovNetDistribution.enumerate_support` lists (:math:`\\prod_v |X_v|`, evidence or
#: not); read at each call, so it can be changed.  Enumerated, the site's ``log_prob`` scores every state of every
#: batch entry (``2**16`` states of 16 variables, 1000 rows: ``2**16 * 1000 * 16`` long entries, 8 GiB, before
#: what enumerated sites downstream multiply in).
MAX_ENUMERATED_STATES = 2**16


class MarkovNetDistribution(TorchDistribution):
    """The joint distribution of a :class:`~hybridpgm.graphs.MarkovNet` (given evidence), exactly.

    :param mrf: the model.
    :param evidence: ``name -> value`` (``-1`` unobserved), as for :meth:`~hybridpgm.graphs.MarkovNet.factor_graph`.
    :param context: the input of neural potentials, if any.

    >>> import torch
    >>> from hybridpgm.graphs import MarkovNet
    >>> mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    >>> d = mrf.distribution()
    >>> d.sample((5,)).shape, d.event_shape
    (torch.Size([5, 2]), torch.Size([2]))
    """

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(self, mrf, evidence=None, context=None, validate_args=None):
        self.mrf, self.evidence, self.context = mrf, evidence, context
        # the networks run once, here: log_prob, sample, mode and entropy all read this compiled graph, so a score
        # and its log Z come from one forward pass (one dropout mask) and from the potentials as they were now,
        # whatever in-place update (an optimizer step) follows
        self._fg = mrf.factor_graph(evidence, context)
        self._cards = self._fg.cardinalities.to(self._fg.unary.device)
        super().__init__(self._fg.batch_shape, torch.Size([self._fg.num_vars]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> "MarkovNetDistribution":
        """The same joint under a wider ``batch_shape`` (what a :class:`pyro.plate` asks for): the compiled graph is
        shared, the batch dims it lacks are repeats of it (``log_prob``, ``entropy``, ``mode`` computed once and
        broadcast; ``sample`` draws independently in every entry).  Unlike Pyro's generic
        :class:`~pyro.distributions.torch_distribution.ExpandedDistribution`, it keeps ``entropy`` and ``mode``.

        :raises ModelSpecError: a ``batch_shape`` the distribution's does not broadcast to, naming both.
        """
        batch_shape = expanded_batch_shape(self._fg.batch_shape, batch_shape, "MarkovNetDistribution.expand")
        new = self._get_checked_instance(MarkovNetDistribution, _instance)
        new.mrf, new.evidence, new.context = self.mrf, self.evidence, self.context
        new._fg, new._cards = self._fg, self._cards
        super(MarkovNetDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _wide(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` of the compiled graph's ``batch_shape + rest`` broadcast to this distribution's batch shape."""
        return t.expand(self.batch_shape + t.shape[len(self._fg.batch_shape):])

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        """Each variable's states ``0..card-1`` (event dim 1)."""
        return constraints.independent(constraints.integer_interval(0, self._cards - 1), 1)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """Every joint state, the first variable's state varying slowest (``itertools.product`` order): what Pyro's
        enumeration of a site marked ``infer={"enumerate": ...}`` sums over (see the module docstring).  States
        that contradict a row's evidence are listed too, with ``log_prob`` :math:`-\\infty` there.

        :param expand: ``True``: ``[N, *batch_shape, V]``; ``False``: ``[N, 1, ..., 1, V]`` (one ``1`` per batch dim),
            as Pyro's parallel enumeration asks; ``N = prod(cards)``, long states.
        :raises ModelSpecError: more than :data:`MAX_ENUMERATED_STATES` joint states, naming their count and
            the alternatives."""
        cards = [self.mrf.cards[v] for v in self.mrf.variables]
        count = math.prod(cards)
        if count > MAX_ENUMERATED_STATES:
            sizes = " x ".join(map(str, cards)) if len(cards) <= 8 else f"{len(cards)} variables"
            shown = count if count < 10**12 else f"about 1e{len(str(count)) - 1}"
            raise ModelSpecError(
                f"MarkovNetDistribution cannot enumerate its {shown} joint states ({sizes}; the limit is "
                f"hybridpgm.graphs.mrf_distribution.MAX_ENUMERATED_STATES = {MAX_ENUMERATED_STATES}) for a Pyro "
                f"site marked infer={{'enumerate': ...}}. Instead use mrf.model(...), one enumerated site per "
                f"variable, which TraceEnum_ELBO sums out variable by variable; sample the joint state in a guide (a "
                f"score-function estimator); or draw S states in place of the enumeration with "
                f"infer={{'enumerate': 'parallel', 'num_samples': S}} under pyro.infer.TraceTMC_ELBO")
        device = self._cards.device
        strides = [math.prod(cards[i + 1:]) for i in range(len(cards))]
        index = torch.arange(count, device=device)[:, None]
        states = (index // torch.tensor(strides, dtype=torch.long, device=device)) % self._cards.long()  # [N, V]
        states = states.reshape((count,) + (1,) * len(self.batch_shape) + self.event_shape)
        return states.expand((count,) + self.batch_shape + self.event_shape) if expand else states

    @lazy_property
    def _centred(self) -> tuple[FactorGraph, torch.Tensor, torch.Tensor]:
        """``(centred graph, M [B], log Z̃_e [B])``: the compiled graph with every table less its maximum
        (:func:`~hybridpgm.graphs.mrf_centring.centred_graph`, :math:`\\log Z_e = \\log \\tilde Z_e + M`) and its
        exact :math:`\\log \\tilde Z_e`, one contraction for ``log_prob`` and :attr:`log_partition` alike."""
        from hybridpgm.infer.mrf_exact import exact_log_partition

        fg, offset = centred_graph(self._fg)
        return fg, offset, exact_log_partition(fg)

    @lazy_property
    def _base_log_partition(self) -> torch.Tensor:
        """The compiled graph's ``batch_shape`` exact :math:`\\log Z_e` (before :meth:`expand`)."""
        _, offset, log_z = self._centred
        return self._fg.unflatten(log_z + offset)

    @property
    def log_partition(self) -> torch.Tensor:
        """``batch_shape`` exact :math:`\\log Z_e`."""
        return self._wide(self._base_log_partition)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x \\mid e)`, ``sample_shape + batch_shape`` (``-inf`` where ``x`` contradicts the evidence).
        A value whose score is :math:`-\\infty` (finite penalties summing past the dtype's range) gets
        ``-inf`` too, never NaN.

        :param value: ``sample_shape + batch_shape + (V,)`` states; its leading dims broadcast against
            ``batch_shape`` (one state ``(V,)`` is scored under every model and evidence row).

        :raises EvidenceError: when the last dim of ``value`` is not the number of variables, its leading dims
            do not broadcast with ``batch_shape``, or a value is not a state of its variable (``1.5``, ``-1``,
            ``card``), with or without Pyro's validation; or when the evidence of a model has probability zero
            (:math:`\\log Z_e = -\\infty`: every assignment it allows scores :math:`-\\infty`), naming the model and
            its evidence (deferred to the one host read of :func:`~hybridpgm.fit`'s step inside it).
        """
        V = self._fg.num_vars
        if value.dim() == 0 or value.shape[-1] != V:
            raise EvidenceError(f"MarkovNetDistribution.log_prob: values need a last dim of {V} (the variables "
                                f"{self.mrf.variables}), got shape {tuple(value.shape)}")
        try:
            shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)  # sample_shape + batch_shape
        except RuntimeError:
            raise EvidenceError(f"MarkovNetDistribution.log_prob: values of shape {tuple(value.shape)} do not "
                                f"broadcast with batch_shape {tuple(self.batch_shape)} + event_shape ({V},)") from None
        # the named check first, with validation on or off: Pyro's validation would raise a plain ValueError that
        # names no variable (and with it off, value.long() would truncate 1.5 to 1, silently)
        states = {v: assignment_states(v, value[..., i], self.mrf.cards[v], "MarkovNetDistribution.log_prob")
                  for i, v in enumerate(self.mrf.variables)}
        if self._validate_args and value.numel():  # torch's check of an empty value fails ("reshape ... -1")
            self._validate_sample(value)
        x = torch.stack(list(states.values()), -1)
        from hybridpgm.infer.mrf_exact import _check_possible

        # the score and log Z of the compiled graph's potentials, each table less its maximum: their difference
        # never forms at the size of the tables' constants (float32 tables near 65536 lost 2e-2 to 5e-2 nats before)
        fg, offset, log_z = self._centred
        score = factor_graph_score(fg, x)
        # log Z_e = log Z̃_e + M: the maxima M summing past the range (finfo.min penalties every allowed assignment
        # pays twice) is probability zero too, which the centred log Z̃_e no longer shows
        _check_possible(self._fg, log_z + offset, "MarkovNetDistribution.log_prob")
        log_z = self._wide(self._fg.unflatten(log_z))
        # a value that scores -inf (finite penalties summing past the dtype's range) has probability zero: -inf,
        # not -inf - log Z (NaN where log Z is -inf too, inside fit's step before its deferred check raises); the
        # branch not taken gets a zero gradient, so masked rows leave the potentials' gradients finite
        lp = torch.where(score == -math.inf, torch.full_like(score, -math.inf), score - log_z)
        if self.evidence:
            valid = self._wide(self._fg.valid.reshape(self._fg.batch_shape + self._fg.valid.shape[1:]))  # + [V, C]
            x = x.expand(shape + (V,))
            ok = valid.expand(shape + valid.shape[-2:]).gather(-1, x.unsqueeze(-1)).all(-2)[..., 0]
            lp = lp.masked_fill(~ok, -math.inf)
        return lp

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Exact joint samples, ``sample_shape + batch_shape + (V,)`` long (one contraction for all of them)."""
        from hybridpgm.infer.mrf_exact import exact_sample

        shape = sample_shape_of(sample_shape, "MarkovNetDistribution.sample")
        base, fg = self._fg.batch_shape, self._fg
        extra = self.batch_shape[: len(self.batch_shape) - len(base)]
        if self.batch_shape[len(extra):] == base:  # unexpanded, or new leading dims (a plate): more draws of fg
            x = exact_sample(fg, math.prod(shape) * extra.numel())  # [N * R, B, V]
        else:  # a size-1 dim widened: the models of the wider batch, each drawn independently
            rows = torch.arange(base.numel(), device=fg.unary.device).reshape(base).expand(self.batch_shape)
            x = exact_sample(_rows_of(fg, rows.reshape(-1), self.batch_shape), math.prod(shape))
        return x.reshape(shape + self.batch_shape + self.event_shape)

    def entropy(self) -> torch.Tensor:
        """Exact :math:`H(p) = \\log Z_e - \\mathbb E_p[\\sum_f \\theta_f(x_f)]`, ``batch_shape``, differentiable in
        the potentials (:func:`~hybridpgm.infer.mrf_entropy.exact_entropy`; a batch over
        :data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` runs in chunks of rows where no gradient is needed)."""
        from hybridpgm.infer.mrf_entropy import exact_entropy

        return self._wide(self._fg.unflatten(exact_entropy(self._fg)))

    @property
    def mode(self) -> torch.Tensor:
        """The exact most probable state, ``batch_shape + (V,)`` long (empty for a graph of 0 rows, whose
        max-sum contraction has no reduction to run)."""
        from hybridpgm.infer.mrf_exact import exact_map

        fg = self._fg
        if not fg.batch_size:
            return self._wide(torch.zeros(fg.batch_shape + self.event_shape, dtype=torch.long, device=fg.unary.device))
        return self._wide(exact_map(fg)[0].reshape(fg.batch_shape + self.event_shape))


def _rows_of(fg: FactorGraph, rows: torch.Tensor, batch_shape: torch.Size) -> FactorGraph:
    """The factor graph of the models ``rows`` (``[B']`` indices into ``fg``'s ``B``), of batch shape
    ``batch_shape``."""
    groups = [FactorGroup(g.variables, g.log_potentials[rows]) for g in fg.groups]
    return FactorGraph(fg.names, fg.cardinalities, fg.unary[rows], fg.valid[rows], groups, fg.colors, batch_shape)
