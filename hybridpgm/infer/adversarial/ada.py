"""Adversarial domain adaptation (ADA / DANN).

Ganin et al.'s domain-adversarial training [1], in Hu et al.'s formulation
[2]: a feature extractor :math:`G_\\theta` maps inputs of two domains to
features :math:`h = G_\\theta(x)`, which defines the implicit distributions
:math:`p_\\theta(h \\mid y)` (:math:`y = 1` the labelled source domain,
:math:`y = 0` the unlabelled target domain).  The domain discriminator
:math:`q_\\phi(y \\mid h)` tells the domains apart, and the feature extractor --
the "generator" -- fits the reversed :math:`q^r_\\phi` while a classifier
:math:`f_\\psi` predicts labels on the source:

.. math::

    \\min_\\phi\\; -\\mathbb E_{p_\\theta(h \\mid y) p(y)}\\big[\\log q_\\phi(y \\mid h)\\big],

.. math::

    \\min_{\\theta, \\psi}\\; \\mathbb E_{(x, c) \\sim \\text{source}}
        \\big[-\\log f_\\psi(c \\mid G_\\theta(x))\\big]
      - \\lambda\\, \\mathbb E_{p_\\theta(h \\mid y) p(y)}\\big[\\log q^r_\\phi(y \\mid h)\\big],

the non-saturating (label-flipped) form of the gradient-reversal game of [1]:
features whose domain the discriminator cannot tell, and that still predict
the source labels.  ``adversarial_weight=0`` gives source-only training.

References:

1. Y. Ganin, E. Ustinova, H. Ajakan, P. Germain, H. Larochelle, F. Laviolette,
   M. Marchand, V. Lempitsky, *Domain-Adversarial Training of Neural Networks*,
   JMLR 17, 2016.
2. Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep Generative
   Models*, ICLR 2018 (Section 3.1).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hybridpgm.checks import positive_real, seed_of
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.generative.gan import _shape
from hybridpgm.infer.adversarial.base import AdversarialGame
from hybridpgm.infer.adversarial.dry_run import declared_shape, floating_like
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import check_network, check_output
from hybridpgm.tensor_arguments import require_tensor
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["ADA"]


class ADA(AdversarialGame):
    """Adversarial domain adaptation: players ``"discriminator"`` (:math:`\\phi`)
    and ``"generator"`` (feature extractor :math:`\\theta` and classifier :math:`\\psi`).

    A batch is ``(x_source, y_source, x_target)``: ``batch x input_shape``,
    ``batch`` int64 labels, ``batch x input_shape``
    (:meth:`paired_data` builds such a data tuple from domains of different sizes).

    The inputs' dtype is read from the data, once per event shape and dtype.  Floating (and ``bool``) inputs are
    converted exactly to the feature extractor's floating dtype
    (:meth:`~hybridpgm.infer.adversarial.base.AdversarialGame.checked_data`).  Integer inputs go to the feature
    extractor as they are when it takes them and returns floating features -- token ids for an
    ``nn.Embedding`` (int64 or int32, as torch's embeddings take), for text domain adaptation; the dry run feeds
    it zeros of the data's integer dtype, which are valid ids -- and are otherwise converted exactly to its
    floating dtype as floating inputs are (integer-valued pixels for an MLP).

    :param feature_extractor: ``batch x input_shape`` -> features ``batch x F``.
    :param domain_discriminator: features -> logits ``batch`` of :math:`q_\\phi(y = 1 \\mid h)`.
    :param classifier: features -> class logits ``batch x num_classes``.
    :param k: discriminator steps per generator step.
    :param adversarial_weight: :math:`\\lambda` (``0``: source-only).
    :param input_shape: the inputs' event shape (an int is a 1-tuple), for the shape check at
        construction (default ``feature_extractor.in_shape`` when present).  Without it the chain of networks
        is dry-run (two rows of zeros, eval mode, no gradients) the first time a batch of a new event shape (or
        integer dtype) arrives, in whichever player's loss sees it first.  Networks of lazy layers
        (``nn.LazyLinear``) need it: the dry run at construction sets their sizes, and :func:`hybridpgm.fit`
        refuses parameters nothing has initialised before its first step.  The construction's dry run feeds
        zeros of the networks' floating dtype, and int64 zeros (token ids) to a feature extractor that refuses
        those.
    :raises ConfigError: ``adversarial_weight`` is not a finite number >= 0, or ``k < 1``.
    :raises ModelSpecError: the networks' shapes do not chain, a network does not return one tensor (also
        checked in the losses: a network may return a tuple in training mode only), or ``input_shape`` is not a
        positive integer or a non-empty sequence of them.

    :meth:`loss` -- both players' -- raises :class:`~hybridpgm.errors.DataError` for a batch that is not three
    tensors ``(x_source, y_source, x_target)`` of matching shapes with integer labels (one example without its
    batch dimension, a 0-d label or inputs of shape ``input_shape``, is named as such), whose event shape is not
    ``input_shape`` (or, without it, one the feature extractor cannot take), that is empty, whose inputs have a
    dtype the networks do not take exactly (integers the feature extractor takes neither as they are nor converted
    to its floating dtype, naming both failures) or NaN/inf values
    (:meth:`~hybridpgm.infer.adversarial.base.AdversarialGame.checked_data`), or a label outside
    ``[0, num_classes)``, ``-100`` included: every source example needs its class.  Inside
    :func:`hybridpgm.fit` the value checks wait for the step's one host read
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`), so the discriminator's steps, which come first,
    raise before any update as the generator's does.
    """

    _SETTINGS = ("adversarial_weight",)
    _REPR_EXTRAS = ("input_shape",)

    def __init__(self, feature_extractor: nn.Module, domain_discriminator: nn.Module, classifier: nn.Module, *,
                 k: int = 1, adversarial_weight: float = 1.0, input_shape: Sequence[int] | None = None):
        for net, what in ((feature_extractor, "the feature extractor"), (domain_discriminator, "the domain "
                          "discriminator"), (classifier, "the classifier")):
            check_network(net, what)
        self.input_shape = (declared_shape(feature_extractor, "in_shape", "the feature extractor")
                            if input_shape is None else _shape(input_shape, "ADA input_shape"))
        #: for inputs of each (event shape, integer dtype or ``None`` for floating and bool inputs) checked so far:
        #: the classifier's number of classes, and whether the inputs go to the feature extractor as they are
        self._chains: dict[tuple[tuple[int, ...], torch.dtype | None], tuple[int, bool]] = {}
        if self.input_shape is not None:
            num_classes, dtype = _check_chain(feature_extractor, domain_discriminator, classifier, self.input_shape)
            self._chains[self.input_shape, dtype] = num_classes, dtype is not None
        self.adversarial_weight = positive_real(adversarial_weight, "ADA adversarial_weight", allow_zero=True)
        module = nn.ModuleDict({"feature_extractor": feature_extractor, "classifier": classifier,
                                "discriminator": domain_discriminator})
        super().__init__(module, k=k)
        self.feature_extractor, self.classifier = feature_extractor, classifier

    def __setstate__(self, state: dict) -> None:
        """Unpickling; an ADA pickled by a release before the inputs' integer dtype was part of the key (its
        ``_num_classes``, ``{event_shape: n}``, all floating inputs) gets ``_chains``
        ``{(event_shape, None): (n, False)}``: the same inputs, converted as they were.

        :param dict state: the pickled ``__dict__``."""
        if "_chains" not in state and "_num_classes" in state:
            state = dict(state)
            state["_chains"] = {(shape, None): (n, False) for shape, n in state.pop("_num_classes").items()}
        self.__dict__.update(state)

    # -- data ---------------------------------------------------------------------------
    @staticmethod
    def paired_data(x_source: torch.Tensor, y_source: torch.Tensor, x_target: torch.Tensor,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_source, y_source, x_target')`` with the target examples resampled
        (a permutation, repeated as needed) to the source's length.

        :param x_source: ``N x input_shape`` source inputs, ``N >= 1``.
        :param y_source: ``N`` source labels.
        :param x_target: ``M x input_shape`` target inputs, ``M >= 1``.
        :param seed: the seed of the permutations, an integer in torch's range ``[-2**63, 2**64)``.
        :raises DataError: an input that is not a tensor with a batch dimension, an empty domain (naming its
            shape), or not one source label per source example.
        :raises ConfigError: ``seed`` is not an integer in torch's range (:func:`hybridpgm.checks.seed_of`).
        """
        seed = seed_of(seed, "ADA.paired_data seed")
        for name, t in (("x_source", x_source), ("x_target", x_target)):
            require_tensor(t, f"ADA.paired_data {name}", arg=name)
            if t.dim() == 0:
                raise DataError(f"ADA.paired_data {name} must be a tensor of shape (batch, ...), got shape ()")
            if t.shape[0] == 0:
                raise DataError(f"ADA.paired_data {name} of shape {tuple(t.shape)} is empty; each domain needs at "
                                f"least one example")
        require_tensor(y_source, "ADA.paired_data y_source", arg="y_source")
        if tuple(y_source.shape) != tuple(x_source.shape[:1]):
            got = tuple(y_source.shape)
            raise DataError(f"ADA.paired_data y_source must have shape ({x_source.shape[0]},), one label per row of "
                            f"x_source {tuple(x_source.shape)}, got {got}")
        g = torch.Generator().manual_seed(seed)
        n, m = x_source.shape[0], x_target.shape[0]
        index = torch.cat([torch.randperm(m, generator=g, device="cpu") for _ in range(-(-n // m))])[:n]  # g's device
        return x_source, y_source, x_target[index.to(x_target.device)]

    def _unpack(self, batch):
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise DataError("ADA expects batches (x_source, y_source, x_target); build the data with ADA.paired_data")
        xs, ys, xt = batch
        if not all(isinstance(t, torch.Tensor) for t in batch) or xs.dim() == 0 or xt.dim() == 0:
            got = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in batch]
            raise DataError(f"ADA batches are three tensors (x_source, y_source, x_target), got {got}")
        unbatched = [f"{n} {tuple(t.shape)}" for n, t in (("x_source", xs), ("x_target", xt))
                     if self.input_shape is not None and tuple(t.shape) == self.input_shape]
        if unbatched or (ys.dim() == 0 and self.input_shape is None):
            unbatched += [f"y_source {tuple(ys.shape)}"] if ys.dim() == 0 else []
            given = f"(x_source {tuple(xs.shape)}, y_source {tuple(ys.shape)}, x_target {tuple(xt.shape)})"
            raise DataError(f"ADA: {', '.join(unbatched)} without the batch dimension; if the batch {given} is one "
                            f"example, give it as x_source[None], y_source[None], x_target[None] (t.unsqueeze(0)): "
                            f"batches are (batch, ...) inputs and (batch,) labels")
        if xs.shape[1:] != xt.shape[1:] or (self.input_shape is not None and tuple(xs.shape[1:]) != self.input_shape):
            raise DataError(f"ADA: source inputs {tuple(xs.shape)} and target inputs {tuple(xt.shape)} must share "
                            f"the event shape {self.input_shape or tuple(xs.shape[1:])}")
        if ys.shape != xs.shape[:1]:
            raise DataError(f"ADA: source labels have shape {tuple(ys.shape)}, expected ({xs.shape[0]},)")
        if ys.is_floating_point() or ys.is_complex() or ys.dtype == torch.bool:
            raise DataError(f"ADA: source labels must be integer class indices (int64), got dtype {ys.dtype}")
        if xs.shape[0] == 0 or xt.shape[0] == 0:
            raise DataError(f"ADA got an empty batch (source {tuple(xs.shape)}, target {tuple(xt.shape)})")
        (xs, num_classes), (xt, _) = self._prepared(xs, "ADA x_source"), self._prepared(xt, "ADA x_target")
        return xs, _checked_labels(ys, num_classes), xt

    def _prepared(self, x: torch.Tensor, what: str) -> tuple[torch.Tensor, int]:
        """``(x, num_classes)``: the inputs ``x`` (``batch x event_shape``) as the feature extractor takes them --
        integer ids as they are where it takes them, else converted and checked by
        :meth:`~hybridpgm.infer.adversarial.base.AdversarialGame.checked_data` -- and the classifier's number of
        outputs.  Both come from the construction's dry run or, the first time inputs of that event shape and
        dtype arrive, from a dry run of the chain now (shapes and dtypes only: no host read).

        :param what: the inputs, as the message names them.
        :raises DataError: ``x`` is empty, the feature extractor cannot take inputs of ``x``'s event shape and
            dtype (naming ``x``'s shape and dtype), or :meth:`checked_data` refuses ``x``."""
        key = tuple(x.shape[1:]), _integer_dtype(x)
        if key not in self._chains:
            num_classes, dtype = _check_chain(self.feature_extractor, self.discriminator, self.classifier, key[0],
                                              data=(what, x), dtype=key[1])
            self._chains[key] = num_classes, dtype is not None
        num_classes, as_is = self._chains[key]
        if not as_is:
            return self.checked_data(x, what), num_classes
        if x.shape[0] == 0:
            raise DataError(f"ADA got an empty batch (shape {tuple(x.shape)}); give {what} at least one row")
        return x, num_classes

    def data_networks(self) -> tuple[nn.Module, ...]:
        """The feature extractor takes the inputs: its floating dtype is that of floating inputs and of integer
        inputs it does not take as they are (the discriminator's when it holds no floating tensor)."""
        return self.feature_extractor, self.discriminator

    def _inputs(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """``x`` checked as a batch of inputs ``batch x input_shape`` for :meth:`predict`."""
        require_tensor(x, what, arg="x")
        if x.dim() == 0 or (self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape):
            got = f"shape {tuple(x.shape)}"
            expected = ", ".join(map(str, self.input_shape)) if self.input_shape is not None else "..."
            raise DataError(f"{what} must be a tensor of shape (batch, {expected}), got {got}")
        return self._prepared(x, what)[0]

    # -- the losses ---------------------------------------------------------------------
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The features :math:`G_\\theta(x)`, refused by name unless one tensor (a tuple in training mode)."""
        return check_output(self.feature_extractor(x), "the feature extractor")

    def discriminator_step_loss(self, batch) -> torch.Tensor:
        """The discrimination loss of source features (:math:`y = 1`) against target features (:math:`y = 0`),
        the features computed without gradients.

        :param batch: ``(x_source, y_source, x_target)`` (:meth:`paired_data`)."""
        xs, _, xt = self._unpack(batch)
        with torch.no_grad():
            hs, ht = self._features(xs), self._features(xt)
        return self.discrimination_loss(hs, ht)

    def generator_step_loss(self, batch) -> torch.Tensor:
        """The source classification cross-entropy minus ``adversarial_weight`` times the mean reversed
        log-likelihood :math:`\\log q^r_\\phi` of the source (:math:`y = 1`) and target (:math:`y = 0`) features.

        :param batch: ``(x_source, y_source, x_target)`` (:meth:`paired_data`)."""
        xs, ys, xt = self._unpack(batch)
        hs, ht = self._features(xs), self._features(xt)
        logits = check_output(self.classifier(hs), "the classifier")
        loss = F.cross_entropy(logits, ys)
        if self.adversarial_weight:
            fool = 0.5 * (self.log_qr(hs, 1).mean() + self.log_qr(ht, 0).mean())
            loss = loss - self.adversarial_weight * fool
        return loss

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``batch`` predicted labels :math:`\\arg\\max_c f_\\psi(c \\mid G_\\theta(x))`.

        The networks run in eval mode (batch norm uses its running statistics and does not update them,
        dropout is off), each sub-module's own mode put back after
        (:func:`~hybridpgm.module_modes.keeping_modes`): a row's label does not depend on the other rows.

        :param x: ``batch x input_shape`` inputs, converted (integer ids the feature extractor takes: passed as
            they are) and checked as the batches of :meth:`loss` are.
        :raises DataError: ``x`` is not a tensor of shape ``(batch, *input_shape)``, is empty, has a dtype the
            networks do not take exactly, or holds NaN/inf values.
        """
        x = self._inputs(x, "ADA.predict x")
        with keeping_modes(self.feature_extractor, self.classifier):
            self.feature_extractor.eval(), self.classifier.eval()
            return check_output(self.classifier(self._features(x)), "the classifier").argmax(-1)


def _checked_labels(ys: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The source labels ``ys`` (``batch``, integers) as int64 class indices of a classifier with
    ``num_classes`` outputs; a label outside ``[0, num_classes)`` (``-100``, which
    :func:`torch.nn.functional.cross_entropy` would silently ignore, included) raises
    :class:`~hybridpgm.errors.DataError` naming its row and value, inside :func:`hybridpgm.fit` at the step's
    one host read (:func:`~hybridpgm.train.deferred_checks.check_or_defer`; the loss is computed meanwhile with
    such labels read as class 0)."""
    in_range = (ys >= 0) & (ys < num_classes)

    def out_of_range() -> DataError:
        bad = (~in_range).nonzero().flatten()
        row = int(bad[0])
        return DataError(f"ADA source labels y_source must be class indices in 0..{num_classes - 1} (the "
                         f"classifier's {num_classes} outputs); row {row} of the batch holds {int(ys[row])} "
                         f"({bad.numel()} label(s) out of range; none is ignored, -100 included)")

    check_or_defer(in_range.all(), out_of_range, f"ADA source labels y_source lie outside 0..{num_classes - 1}")
    return torch.where(in_range, ys, 0).long()


def _integer_dtype(x: torch.Tensor) -> torch.dtype | None:
    """``x``'s dtype when it is an integer one (ids the feature extractor may take as they are); ``None`` for
    floating, complex and ``bool`` inputs (converted to the networks' floating dtype, or refused)."""
    return None if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool else x.dtype


def _extractor_on_zeros(features: nn.Module, input_shape: tuple[int, ...], floating: dict,
                        dtype: torch.dtype | None, data: tuple[str, torch.Tensor] | None
                        ) -> tuple[torch.Tensor, torch.dtype | None]:
    """``(h, dtype)``: the feature extractor's output on two rows of zeros of ``input_shape``, and the integer
    dtype it took them in (``None``: zeros of the networks' floating dtype, ``floating``).

    The zeros tried, in order: with data of integer ``dtype``, zeros of that dtype, then floating ones; with
    floating data, floating ones; at construction (no ``data``), floating ones, then int64 ids.  Integer zeros
    count as taken only when the features are floating (an extractor that passes integers on, ``nn.Flatten``,
    gets them converted).

    :raises DataError: (``data`` given) every try failed, naming the data's shape and dtype and each failure.
    :raises ModelSpecError: (no ``data``) the same, naming the shape and each failure."""
    tries = ([dtype] if dtype is not None else []) + [None] + ([torch.int64] if data is None else [])
    failures, error = [], None
    for ids in tries:
        like = floating if ids is None else {"dtype": ids, "device": floating.get("device")}
        zeros = torch.zeros(2, *input_shape, **like)
        try:
            h = features(zeros)
        except (RuntimeError, ValueError) as e:
            failures.append(f"{zeros.dtype} inputs: {e}")
            error = e
            continue
        if ids is None or (isinstance(h, torch.Tensor) and h.is_floating_point()):
            return h, ids
        failures.append(f"{zeros.dtype} inputs: non-floating features")
    reasons = "; ".join(failures)
    if data is not None:
        what, x = data
        raise DataError(f"{what} has shape {tuple(x.shape)}: the feature extractor cannot take inputs of event shape "
                        f"{input_shape} and dtype {x.dtype} ({reasons}); give inputs of the shape and dtype it was "
                        f"built for (int64 ids for an nn.Embedding), or pass input_shape= to check the shape at "
                        f"construction") from error
    raise ModelSpecError(f"the feature extractor cannot take inputs of shape {input_shape} ({reasons})") from error


def _check_chain(features: nn.Module, discriminator: nn.Module, classifier: nn.Module,
                 input_shape: tuple[int, ...], data: tuple[str, torch.Tensor] | None = None,
                 dtype: torch.dtype | None = None) -> tuple[int, torch.dtype | None]:
    """Dry-run the chain on two rows of zeros of ``input_shape`` (eval mode, each sub-module's own mode put back
    after, no gradients): the feature extractor (:func:`_extractor_on_zeros`), then the domain discriminator (one
    logit per row) and the classifier (``2 x num_classes``) on its features.

    :param data: when the check runs on data, their name and the batch whose event shape ``input_shape`` is;
        ``None`` at construction.
    :param dtype: the data's integer dtype (:func:`_integer_dtype`), ``None`` for floating and ``bool`` data.
    :returns: ``(num_classes, dtype)``: the classifier's number of outputs, and the integer dtype the feature
        extractor takes as it is (``None``: inputs converted to the networks' floating dtype).
    :raises DataError: (``data`` given) the feature extractor cannot take inputs of ``input_shape`` and the data's
        dtype.
    :raises ModelSpecError: (no ``data``) the feature extractor cannot take inputs of ``input_shape``; or the
        networks' shapes do not chain.
    """
    modules = (features, discriminator, classifier)
    with keeping_modes(*modules), torch.no_grad():  # each sub-module's own mode after (a frozen one too)
        for m in modules:
            m.eval()
        h, taken = _extractor_on_zeros(features, input_shape, floating_like(*modules), dtype, data)
        h = check_output(h, "the feature extractor")
        for name, net, ok in (("domain discriminator", discriminator, lambda o: o.numel() == 2),
                              ("classifier", classifier, lambda o: o.dim() == 2 and o.shape[0] == 2)):
            in_shape = declared_shape(net, "in_shape", f"the {name}")
            if in_shape is not None and in_shape != tuple(h.shape[1:]):
                raise ModelSpecError(f"feature shape {tuple(h.shape[1:])} does not match the {name}'s input "
                                     f"shape {in_shape}")
            try:
                out = net(h)
            except (RuntimeError, ValueError) as e:
                raise ModelSpecError(f"the {name} cannot take features of shape {tuple(h.shape[1:])}: {e}") from e
            out = check_output(out, f"the {name}")
            if not ok(out):
                raise ModelSpecError(f"the {name} returned shape {tuple(out.shape)} for a batch of 2")
    return out.shape[-1], taken
