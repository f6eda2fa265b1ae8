"""Linear-chain conditional random field as a torch / Pyro distribution.

For label sequences :math:`y_{0:n-1}` (:math:`n` = the sequence's length)

.. math::

    s(y) = \\pi_{y_0} + \\sum_{t<n} \\phi_t(y_t) + \\sum_{0<t<n} A_{y_{t-1} y_t} + \\omega_{y_{n-1}},
    \\qquad \\log p(y) = s(y) - \\log Z,

with unary scores :math:`\\phi` from any network (a BiLSTM, a CNN: the NN+CRF
of [1, 2]), a transition matrix :math:`A`, start/end scores :math:`\\pi, \\omega`.
:math:`\\log Z` is the forward algorithm in log space; marginals, expected
sufficient statistics and the entropy, the gradients of :math:`\\log Z` (as in pytorch-struct [3]), come from an
explicit forward-backward recursion (:mod:`hybridpgm.graphs.crf_forward_backward`); the mode is Viterbi;
samples come from forward-filtering backward-sampling.  The forward and
Viterbi recursions live in :mod:`hybridpgm.graphs.crf_recursions`, the marginals and the entropy in
:mod:`hybridpgm.graphs.crf_marginals`, the support (too large to enumerate) in
:mod:`hybridpgm.graphs.crf_support`, the checks of the constructor's potentials and lengths in
:mod:`hybridpgm.graphs.crf_arguments`.  The forward messages
are normalised per step (shifted by their maximum, the shifts summed into
:math:`\\log Z`), so float32 marginals and entropies stay accurate for confident
CRFs.  Sequences of different lengths share one padded tensor: positions
``t >= lengths`` are ignored by :meth:`log_prob`, :attr:`log_partition`, the
marginals and :meth:`entropy` (they may hold anything, NaN and +-inf too) and
set to 0 by :meth:`sample` / :meth:`argmax`.  A -inf score forbids a label
(unary, start, end) or a label pair (transition, e.g. BIO constraints): every
query stays exact and NaN-free while each sequence keeps a labelling of finite score.  A sequence whose every
labelling meets a -inf score has log Z = -inf; with validation on its other queries raise
:class:`~hybridpgm.errors.ModelSpecError`, and with it off (nothing read) its :meth:`log_prob` is NaN,
:math:`s(y) - \\log Z = -\\infty - (-\\infty)` for every ``y``, its :meth:`score` and :meth:`entropy` -inf, and
its marginals, :meth:`argmax` and :meth:`sample` numbers and labels without meaning (the other sequences' stay
exact).

**References**

[1] J. Lafferty, A. McCallum, F. Pereira, *Conditional Random Fields:
Probabilistic Models for Segmenting and Labeling Sequence Data*, 2001.

[2] R. Collobert, J. Weston, L. Bottou, M. Karlen, K. Kavukcuoglu, P. Kuksa,
*Natural Language Processing (Almost) from Scratch*, 2011.

[3] A. M. Rush, *Torch-Struct: Deep Structured Prediction Library*, 2020.
"""

from __future__ import annotations

import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from torch import nn
from torch.distributions import Distribution, constraints

from hybridpgm.checks import expanded_batch_shape, positive_int, sample_shape_of
from hybridpgm.errors import ModelSpecError
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.graphs.crf_arguments import VMAP_VALIDATION as _VMAP_VALIDATION
from hybridpgm.graphs.crf_arguments import checked_arguments
from hybridpgm.graphs.crf_recursions import ACCUMULATE
from hybridpgm.graphs.crf_labels import check_labels
from hybridpgm.graphs.crf_marginals import CRFMarginals
from hybridpgm.graphs.crf_sampling import backward_sample
from hybridpgm.graphs.crf_support import CRFSupport
from hybridpgm.graphs.crf_recursions import forbidden as _forbidden
from hybridpgm.graphs.crf_recursions import forward as forward_recursion
from hybridpgm.graphs.crf_recursions import viterbi
from hybridpgm.graphs.crf_recursions import working as _working
from hybridpgm.method_owners import goes_with
from hybridpgm.serialization import serializable
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.transform_scope import vmap_reads_refused

__all__ = ["CRFHead", "LinearChainCRF"]



class LinearChainCRF(CRFSupport, CRFMarginals, Distribution, TorchDistributionMixin):
    """Distribution over label sequences of a linear-chain CRF.

    :param torch.Tensor unary: ``batch_shape + (T, L)`` unary log-potentials (-inf forbids a label at a step;
        anything past a sequence's length is ignored).
    :param torch.Tensor transition: ``batch_shape + (L, L)`` (broadcastable),
        ``transition[i, j]`` scores label ``i`` followed by ``j`` (-inf forbids the pair).
    :param torch.Tensor start: optional ``batch_shape + (L,)`` start scores.
    :param torch.Tensor end: optional ``batch_shape + (L,)`` end scores.
    :param torch.Tensor lengths: optional ``batch_shape`` long, each in ``0..T`` (any integer dtype; a floating,
        complex or bool tensor raises :class:`~hybridpgm.errors.ModelSpecError`, with validation off too), on
        any device (it is copied to ``unary``'s: CPU lengths, as ``pack_padded_sequence`` wants them, are fine);
        one per sequence: a shape that would enlarge the potentials' batch (a column ``[B, 1]``) is refused.  A
        length outside ``0..T`` is refused with validation off too wherever that needs no device
        synchronisation: inside :func:`hybridpgm.fit` at the step's one host read, elsewhere at once for lengths
        given on the host (a CPU tensor, numbers) or a CRF on the CPU; outside ``fit``, lengths given on an
        accelerator are not read with validation off (a negative length then gives numbers without meaning,
        one past ``T`` torch's index error).
    :param validate_args: validation on (``True``) or off (``False``); ``None`` follows torch's global setting
        (:meth:`torch.distributions.Distribution.set_default_validate_args`), as every torch distribution.  With
        it on, the potentials and ``lengths`` are checked at construction and values at :meth:`log_prob` (whose
        label-range check runs with it off too, where values can be read, deferred to :func:`hybridpgm.fit`'s
        one host read per step).
    :raises ModelSpecError: a potential of a dtype that is not floating point (bool, integer, complex), naming it
        and its dtype; lengths of a non-integer dtype, or of a shape enlarging the potentials' batch; (with validation
        on) NaN or +inf in ``transition``, ``start``, ``end`` or in ``unary`` within a sequence's length, naming
        the index; a length outside ``0..T``, naming the first and its index (with validation off too, where
        reading it is free or deferred: see ``lengths``).
    :raises DeviceError: ``transition``, ``start`` or ``end`` on another device than ``unary`` (a
        :class:`CRFHead` left on the CPU behind a network moved to the GPU), naming the tensor and both devices;
        (with validation on) potentials on the meta device, which hold no values to validate.

    An empty sequence (length 0) has one labelling, the empty one, of score 0 (it has no start or end label):
    its log Z, :meth:`log_prob`, :meth:`score` and :meth:`entropy` are 0, its rows of :attr:`marginals` 0, and
    :meth:`sample` and :meth:`argmax` give it zeros (padding), with validation on or off.

    The event shape is ``(T,)``; values are long label sequences.  With ``lengths``, the positions past a
    sequence's length are outside the distribution: :meth:`log_prob` ignores them (they may hold any integer),
    :meth:`sample` and :meth:`argmax` put 0 there, and :attr:`support` does not depend on the lengths (it is
    ``0..L-1`` at every position, padding included).  So ``exp(log_prob)`` sums to 1 over the padded sequences
    with 0 (or any one fixed value) at the padding; summed over everything in :attr:`support` it counts each
    sequence :math:`L^{T-n}` times.

    Potentials of different dtypes (float16 or bfloat16 scores from a network under autocast into a float32
    :class:`CRFHead`, float32 scores into a ``.double()`` head) are widened at construction to one dtype, their
    promoted one and at least float32 (:func:`~hybridpgm.graphs.crf_recursions.working`); widening is exact, as
    :func:`~hybridpgm.data.validation.as_model_dtype` widens data, and nothing is ever narrowed.  The attributes
    ``unary``, ``transition``, ``start``, ``end`` and every floating output (:attr:`log_partition`,
    :meth:`log_prob`, :meth:`score`, :attr:`marginals`, :attr:`pairwise_marginals`, :meth:`entropy`) have that
    one dtype; gradients reach the given tensors in their own dtypes.  Potentials must be floating point: bool,
    integer and complex ones are refused at construction (validation on or off).

    Derivatives: :attr:`marginals`, :attr:`pairwise_marginals` and :meth:`entropy` (gradients of
    :math:`\\log Z` and of :math:`\\log Z - \\mathbb E[s]`) are computed by the forward-backward recursion of
    :func:`~hybridpgm.graphs.crf_forward_backward.forward_backward`, ordinary differentiable ops: reverse mode
    (``backward``, ``torch.autograd.grad``, any order), :mod:`torch.autograd.forward_ad` tangents and every
    ``torch.func`` transform (``jvp``, ``jacfwd``, ``hessian``, ``vmap``, ``grad``, ``jacrev``) differentiate them
    exactly; without a graph they keep :math:`O(BTL)` floats.  Under ``vmap`` construct the CRF with
    ``validate_args=False``: validation reads values, which ``vmap`` cannot (a validating CRF raises
    :class:`~hybridpgm.errors.ConfigError` saying so where ``vmap`` batches what it reads).

    >>> crf = LinearChainCRF(torch.randn(4, 7, 3), torch.randn(3, 3))
    >>> y = crf.sample()            # [4, 7]
    >>> crf.log_prob(y).shape
    torch.Size([4])
    """

    arg_constraints = {"unary": constraints.real, "transition": constraints.real}
    has_rsample = False

    def __init__(self, unary, transition, start=None, end=None, lengths=None, validate_args=None):
        validate = validate_args is not False and Distribution._validate_args or validate_args
        start, end, lengths, batch_shape = checked_arguments(unary, transition, start, end, lengths, validate)
        T, L = unary.shape[-2:]
        # one dtype for every potential and so every output (marginals are d log Z / d unary: unary's dtype)
        unary, transition, start, end = _working(unary, transition, start, end)
        self.unary = unary.expand(batch_shape + (T, L))
        self.transition = transition.expand(batch_shape + (L, L))
        self.start = start.expand(batch_shape + (L,))
        self.end = end.expand(batch_shape + (L,))
        self.lengths = lengths.long().expand(batch_shape)
        self.num_labels = L
        super().__init__(batch_shape, torch.Size([T]), validate_args=False)
        self._validate_args = bool(validate_args) if validate_args is not None else Distribution._validate_args

    def expand(self, batch_shape, _instance=None):
        """The distribution with its potentials and lengths broadcast to ``batch_shape`` (views, no copy, no
        re-validation), as :meth:`torch.distributions.Distribution.expand`: of the same class as ``self`` (a
        subclass stays itself under a Pyro plate), or filled into ``_instance``, which a subclass with its own
        ``__init__`` creates in its own ``expand`` (``new = self._get_checked_instance(Sub, _instance)``, its
        fields set, then ``super().expand(batch_shape, _instance=new)``).

        :param batch_shape: the new batch shape (the current one must broadcast to it).
        :param _instance: the instance to fill in, or ``None`` (default) for a new one.
        :raises NotImplementedError: ``self`` is of a subclass that defines ``__init__`` but not ``expand``
            (torch's rule: its fields could not be filled in).
        :raises ModelSpecError: a ``batch_shape`` the distribution's does not broadcast to, naming both."""
        batch_shape = expanded_batch_shape(self.batch_shape, batch_shape, "LinearChainCRF.expand")
        new = self._get_checked_instance(LinearChainCRF, _instance)
        T, L = self.unary.shape[-2:]
        new.unary = self.unary.expand(batch_shape + (T, L))
        new.transition = self.transition.expand(batch_shape + (L, L))
        new.start = self.start.expand(batch_shape + (L,))
        new.end = self.end.expand(batch_shape + (L,))
        new.lengths = self.lengths.expand(batch_shape)
        new.num_labels = self.num_labels
        Distribution.__init__(new, batch_shape, torch.Size([T]), validate_args=False)
        new._validate_args = self._validate_args
        return new

    # -- the one quantity: the forward algorithm ------------------------------------
    def _mask(self):
        T = self.unary.shape[-2]
        return torch.arange(T, device=self.unary.device) < self.lengths[..., None]  # batch + (T,)

    def _forward(self, unary, transition, start, end, lengths=None, keep=False, attach=False, wide=False,
                 hook=None):
        """:func:`~hybridpgm.graphs.crf_recursions.forward` on these scores and ``lengths`` (default: the
        distribution's): ``(log_z, alphas)``; ``log_z`` in :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`
        when ``wide``."""
        return forward_recursion(unary, transition, start, end, self.lengths if lengths is None else lengths,
                                 keep=keep, attach=attach, wide=wide, hook=hook)

    @property
    def log_partition(self) -> torch.Tensor:
        """``batch_shape`` :math:`\\log Z`; -inf for a sequence with no labelling of finite score."""
        return self._forward(self.unary, self.transition, self.start, self.end)[0]

    def _check_possible(self, log_z: torch.Tensor, what: str) -> None:
        """With validation on, raise :class:`ModelSpecError` naming the first sequence whose every labelling
        meets a -inf score (``log_z`` = -inf, or a Viterbi score as low): its distribution is undefined."""
        if self._validate_args:
            bad = log_z < _forbidden(log_z.dtype) / 2
            with vmap_reads_refused(_VMAP_VALIDATION):
                found = bool(bad.any())
            if found:
                pos = bad.nonzero()[0].tolist()
                raise ModelSpecError(f"LinearChainCRF: the sequence at batch index {pos} has no labelling of "
                                     f"finite score (each meets a -inf unary, transition, start or end score "
                                     f"within its length), so its {what} undefined; its log_partition is -inf")

    # -- scoring -------------------------------------------------------------------------
    def score(self, value: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-score :math:`s(y)` of labels ``value`` that broadcast with ``batch_shape + (T,)``
        (``sample_shape + batch_shape + (T,)``, or fewer batch dims); the result has the broadcast batch shape.

        :param value: integer labels ``... + (T,)``.  Entries past a sequence's length are not scored and may hold
            any integer (negative or ``>= L`` too), but they must still be integers: labels of a floating dtype are
            checked at every position, padding included (a 0.5, NaN or inf there raises
            :class:`~hybridpgm.errors.EvidenceError`).
        :raises EvidenceError: as :meth:`log_prob`.
        :raises DeviceError: as :meth:`log_prob`.
        """
        return self._score(value).to(self.unary.dtype)

    def _score(self, value: torch.Tensor) -> torch.Tensor:
        """:meth:`score` in :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`, unrounded: its ``T`` unary and
        ``T - 1`` transition scores are summed there (the sum of float32 scores is then exact to ~T x 1e-16)."""
        mask = self._mask()
        with vmap_reads_refused(_VMAP_VALIDATION):
            y = check_labels(self, value, mask)  # long, 0 past each length (clamped while a range check waits)
        shape = y.shape[:-1]
        T, L = self.unary.shape[-2:]
        unary, transition, start, end = _working(self.unary, self.transition, self.start, self.end)  # sums of T
        s = unary.expand(shape + (T, L)).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        s = torch.where(mask, s, 0.0).to(ACCUMULATE).sum(-1)  # padding may hold anything, -inf and NaN too
        # an empty sequence (length 0) has neither a first nor a last label: no start or end score
        ends = start.expand(shape + (L,)).gather(-1, y[..., :1]).squeeze(-1).to(ACCUMULATE)
        last = (self.lengths - 1).clamp(min=0).expand(shape).unsqueeze(-1)
        ends = ends + end.expand(shape + (L,)).gather(-1, y.gather(-1, last)).squeeze(-1).to(ACCUMULATE)
        s = s + torch.where(self.lengths > 0, ends, 0.0)
        if T > 1:
            trans = transition.expand(shape + (L, L)).reshape(shape + (L * L,))
            pair = trans.gather(-1, y[..., :-1] * L + y[..., 1:])
            s = s + torch.where(mask[..., 1:], pair, 0.0).to(ACCUMULATE).sum(-1)
        return s

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(y) = s(y) - \\log Z` of labels ``value`` that broadcast with ``batch_shape + (T,)``, of the
        broadcast batch shape (``sample_shape + batch_shape`` for ``sample_shape + batch_shape + (T,)`` labels), as
        torch distributions do.  Both terms are ~T x score and nearly cancel: each is summed over the steps in
        :data:`~hybridpgm.graphs.crf_recursions.ACCUMULATE`, and their difference is rounded once.  A subclass that
        overrides :meth:`score` or :attr:`log_partition` (without overriding ``_score`` or ``_forward`` with it)
        gets ``self.score(value) - self.log_partition``, its own terms, each rounded to the working dtype first.

        A sequence with no labelling of finite score (``log_partition`` -inf: each labelling meets a -inf unary,
        transition, start or end score within its length) has no distribution: with validation on,
        :class:`~hybridpgm.errors.ModelSpecError` naming its batch index (one host read a call); with validation
        off nothing is read and its log-probability is NaN, :math:`s(y) - \\log Z = -\\infty - (-\\infty)`, for
        every ``y`` (the other sequences' are exact; inside :func:`hybridpgm.fit` a NaN loss is a divergence).

        :param value: integer labels ``... + (T,)``, as for :meth:`score`.
        :raises ModelSpecError: (with validation on) a sequence with no labelling of finite score.
        :raises EvidenceError: labels that do not end in ``(T,)`` or do not broadcast with the batch shape, that are
            not integers, or that hold a label outside ``0..L-1`` within a sequence's length.  The range is checked
            with validation off too, without a host read of its own: inside :func:`hybridpgm.fit` the check joins
            the step's one read (the step raises before any update), called directly it is read at once
            (:func:`~hybridpgm.train.deferred_checks.check_or_defer`); until then the labels are scored clamped
            into ``0..L-1``.  It is skipped where values cannot be read: under ``torch.func.vmap``, while
            ``torch.compile``, ``torch.export`` or ``torch.jit.trace`` trace, and on ``meta``
            (:func:`~hybridpgm.graphs.crf_labels.values_readable`); there, with validation off, such a label fails
            in torch's indexing.
        :raises DeviceError: labels on another device than the potentials.
        """
        cls = type(self)
        if not (goes_with(cls, "_score", "score") and goes_with(cls, "_forward", "log_partition")):
            # a subclass's own score or log_partition: log_prob is theirs, as the definition says
            log_z = self.log_partition
            self._check_possible(log_z.detach(), "log_prob is")
            return self.score(value) - log_z
        log_z = self._forward(self.unary, self.transition, self.start, self.end, wide=True)[0]
        self._check_possible(log_z.detach(), "log_prob is")
        return (self._score(value) - log_z).to(self.unary.dtype)

    # -- decoding and sampling ----------------------------------------------------------
    def argmax(self) -> torch.Tensor:
        """Viterbi decoding: ``batch_shape + (T,)`` most probable label sequences."""
        with torch.no_grad():
            score, path = viterbi(self.unary, self.transition, self.start, self.end, self.lengths)
            self._check_possible(score, "most probable labelling is")
            return torch.where(self._mask(), path, torch.zeros_like(path))

    @property
    def mode(self) -> torch.Tensor:
        return self.argmax()

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Forward-filtering backward-sampling: ``sample_shape + batch_shape + (T,)`` long labels (0 past a
        sequence's length); the backward pass takes Gumbel-max draws whose noise is drawn up front, in one call
        (:func:`~hybridpgm.graphs.crf_sampling.backward_sample`: no host read, about a Viterbi back-trace's cost).

        This is torch's :meth:`~torch.distributions.Distribution.sample` (Pyro's sample statements call it), whose
        signature takes no ``generator=``: the draws come from torch's global stream.  For draws that repeat and
        leave the caller's stream alone, fork it: ``with torch.random.fork_rng(): torch.manual_seed(s); y =
        crf.sample()``.

        :param sample_shape: the leading shape of independent draws (default ``torch.Size()``: one)."""
        sample_shape = sample_shape_of(sample_shape, "LinearChainCRF.sample")
        with torch.no_grad(), holding_global_state():  # no draw amid another thread's seeded fit step
            T = self.unary.shape[-2]
            if (sample_shape + self.batch_shape).numel() == 0:
                return torch.zeros(sample_shape + self.batch_shape + (T,), dtype=torch.long, device=self.unary.device)
            log_z, alphas = self._forward(self.unary, self.transition, self.start, self.end, keep=True)
            self._check_possible(log_z, "sample is")
            path = backward_sample(alphas, self.transition, self.end, self.lengths, sample_shape + self.batch_shape)
            return torch.where(self._mask(), path, torch.zeros_like(path))


@serializable
class CRFHead(nn.Module):
    """Learnable transition/start/end scores that turn unary scores into a :class:`LinearChainCRF`.

    Put it after any network emitting ``[batch, T, L]`` scores (BiLSTM, CNN):
    ``crf = head(net(x), lengths)``, then ``-crf.log_prob(y).mean()`` is the loss.

    :param int num_labels: ``L``.
    :param bool boundary: learn start/end scores.
    :raises ModelSpecError: ``num_labels`` is not a positive integer (0, negative, a ``bool`` or a float).
    """

    @keyword_only_soon("boundary")
    def __init__(self, num_labels: int, *, boundary: bool = True):
        num_labels = positive_int(num_labels, "CRFHead num_labels", error=ModelSpecError)
        super().__init__()
        self.transition = nn.Parameter(torch.zeros(num_labels, num_labels))
        self.start = nn.Parameter(torch.zeros(num_labels)) if boundary else None
        self.end = nn.Parameter(torch.zeros(num_labels)) if boundary else None

    def extra_repr(self) -> str:
        """``num_labels=L, boundary=True``: what defines the head, as ``repr`` shows it."""
        return f"num_labels={self.transition.shape[-1]}, boundary={self.start is not None}"

    def forward(self, unary: torch.Tensor, lengths: torch.Tensor | None = None, *,
                validate_args: bool | None = None) -> LinearChainCRF:
        """The :class:`LinearChainCRF` of ``unary`` (``batch + (T, L)``) with this head's scores; potentials of
        different dtypes (the network's and the head's) meet in their promoted dtype, as the CRF documents.

        :param unary: ``batch + (T, L)`` unary scores from the network.
        :param lengths: optional ``batch`` sequence lengths, as for :class:`LinearChainCRF`.
        :param validate_args: as for :class:`LinearChainCRF` (``False`` under ``vmap``; ``None``: torch's default).
        :raises DeviceError: ``unary`` on another device than this head's parameters (move one of them)."""
        return LinearChainCRF(unary, self.transition, self.start, self.end, lengths, validate_args=validate_args)
