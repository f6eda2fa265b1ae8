"""The conditional linear Gaussian CPD :class:`~hybridpgm.graphs.cpd.LinearGaussian` of a continuous node,

.. math:: x \\mid \\mathrm{pa}(x) \\sim \\mathcal N(b_d + w_d^\\top \\mathrm{pa}_c, \\sigma_d^2),

where :math:`d` is the configuration of the discrete parents.  Import it from :mod:`hybridpgm.graphs.cpd`
(``cpd.LinearGaussian``), the name under which it is documented and saved in model files.

**Checked once.**  torch's :class:`~torch.distributions.Normal` checks its ``loc`` and ``scale`` when it is built
and the value at ``log_prob`` under validation (Pyro's default), a host read each: three per continuous node per
query or run of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` (on CUDA a synchronisation each).  The
network checks the same things once instead: :func:`check_gaussian_parameters` checks every linear Gaussian's
``bias``, ``weight`` and ``scale`` in one flag (deferred inside :func:`hybridpgm.fit`'s step), the data and
evidence checks refuse a missing (``NaN``) continuous value, and :meth:`LinearGaussian.normal` builds the
distribution unvalidated -- only a value the network did not check itself (a sampled one, one a
:func:`pyro.poutine.condition` gives) is checked by torch at ``log_prob``, as before.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pyro.distributions as dist
import torch
from pyro.distributions import is_validation_enabled
from torch import nn

from hybridpgm.checks import torch_readable
from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.cpd_base import CPD
from hybridpgm.precision_scope import exact_precision
from hybridpgm.serialization import serializable
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["LinearGaussian", "check_gaussian_parameters"]


@serializable
class LinearGaussian(CPD):
    """A continuous node, Gaussian with a mean linear in its continuous parents.

    .. math:: x \\mid d, z \\sim \\mathcal N(b_d + w_d^\\top z, \\sigma_d^2)

    where :math:`d` indexes the configuration of the discrete parents and
    :math:`z` are the continuous parents.  List the discrete parents first.

    :param bias: ``[*discrete_parent_cards]`` intercepts :math:`b_d`.
    :param weight: ``[*discrete_parent_cards, num_continuous_parents]`` (or ``None``
        for no continuous parents).
    :param scale: standard deviation(s) :math:`\\sigma_d`, broadcastable to ``bias``.
    :param parents: discrete parents, then continuous parents.

    The CPD's dtype is that of the floating torch tensors among ``bias``, ``weight`` and ``scale``, else that
    of the floating NumPy arrays among them (a float64 NumPy bias gives a float64 CPD, as a float64
    :class:`Table` stays float64), else the default dtype.  Python numbers, lists, NumPy scalars (``np.std(x)``,
    0-d arrays) and integer arrays are read straight in that dtype, so ``scale=0.4`` in a float64 CPD is the
    float64 0.4, not a float32 rounding of it; a floating NumPy array beside a floating tensor is read in the
    tensor's dtype (a float64 array rounded to float32, as ``torch.as_tensor(x, dtype=torch.float32)`` does).

    :raises ModelSpecError: non-numeric, bool, complex or non-finite ``bias``/``weight``/``scale``,
        floating torch tensors of different dtypes (or, without one, NumPy arrays of different dtypes), a
        ``scale`` that is not positive and finite or does not broadcast to
        ``bias``, or a number of bias dims plus weights that is not the number
        of parents.
    """

    # the module named in saved model files and pickles, and where the class is documented: it moved out of
    # :mod:`hybridpgm.graphs.cpd`, which re-exports it, so files saved before the split load unchanged
    __module__ = "hybridpgm.graphs.cpd"

    def __init__(self, bias=0.0, weight=None, scale=1.0, parents: Sequence[str] = (), *, learnable: bool = True):
        super().__init__(parents)
        bias, weight, scale = self._read_inputs(bias, weight, scale)
        n_disc = bias.dim()
        for what, t in (("bias", bias), ("weight", weight), ("scale", scale)):
            if not bool(torch.isfinite(t).all()):
                raise ModelSpecError(f"LinearGaussian {what} has NaN or infinite entries "
                                     f"(parents {list(self.parents)})")
        if weight.dim() == 0 or weight.shape[:-1] != bias.shape:
            raise ModelSpecError(f"weight of shape {tuple(weight.shape)} must be [*{tuple(bias.shape)}, "
                                 "num_continuous_parents]")
        if n_disc + weight.shape[-1] != len(self.parents):
            raise ModelSpecError(f"{n_disc} discrete dims of bias + {weight.shape[-1]} continuous weights "
                                 f"!= {len(self.parents)} parents {list(self.parents)}")
        try:
            scale = scale.expand(bias.shape)
        except RuntimeError:
            raise ModelSpecError(f"LinearGaussian scale of shape {tuple(scale.shape)} does not broadcast to the "
                                 f"bias shape {tuple(bias.shape)}") from None
        if (scale <= 0).any():
            raise ModelSpecError(f"LinearGaussian scale must be positive, got {scale.min().item():.6g}")
        self._n_disc = n_disc
        reg = (lambda n, t: setattr(self, n, nn.Parameter(t))) if learnable else self.register_buffer
        reg("bias", bias.clone())
        reg("weight", weight.clone())
        reg("log_scale", scale.log().clone())

    def _read_inputs(self, bias, weight, scale) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``bias``, ``weight``, ``scale`` as tensors of one floating dtype, on the bias's device.

        The CPD's dtype is that of the floating torch tensors given, else that of the floating NumPy arrays
        given, else the default dtype.  Python numbers, lists, NumPy scalars (``np.float64(0.5)``, as
        ``np.std`` gives, and 0-d arrays) and integer arrays are read in that dtype; a floating NumPy array
        beside floating tensors is read in the tensors' dtype (as ``torch.as_tensor(x, dtype=...)`` would: a
        float64 array is rounded to a float32 model).  Each value is read straight in that dtype, so a float64
        model keeps ``scale=0.4`` exactly.

        :raises ModelSpecError: a non-numeric, bool or complex input; floating torch tensors of different
            dtypes; or, with no floating tensor, floating NumPy arrays of different dtypes.
        """
        given = {"bias": bias, "weight": weight, "scale": scale}
        raw = {}
        for what, x in given.items():
            if x is None:
                continue
            try:
                t = torch.as_tensor(torch_readable(x))
            except (TypeError, ValueError, RuntimeError) as e:
                raise ModelSpecError(f"LinearGaussian bias, weight and scale must be numeric arrays: "
                                     f"{what} is {type(x).__name__}: {e}") from None
            if t.dtype == torch.bool or t.is_complex():
                raise ModelSpecError(f"LinearGaussian {what} must be real numbers, got dtype {t.dtype} "
                                     f"(parents {list(self.parents)})")
            raw[what] = t
        floating = [what for what in raw if torch.is_floating_point(raw[what])]  # in argument order
        tensors = {what: raw[what].dtype for what in floating if isinstance(given[what], torch.Tensor)}
        arrays = {what: raw[what].dtype for what in floating
                  if isinstance(given[what], np.ndarray) and given[what].ndim > 0}
        own = tensors or arrays  # NumPy scalars, numbers and lists take the dtype of these
        if len(set(own.values())) > 1:
            kind = "torch tensors" if tensors else "NumPy arrays"
            raise ModelSpecError(f"LinearGaussian bias, weight and scale are floating {kind} of different dtypes "
                                 f"{own} (parents {list(self.parents)}): give them in one dtype")
        dtype = next(iter(own.values()), torch.get_default_dtype())
        device = raw["bias"].device
        try:
            out = {what: torch.as_tensor(torch_readable(given[what]), dtype=dtype, device=device) for what in raw}
        except (TypeError, ValueError, RuntimeError) as e:
            raise ModelSpecError(f"LinearGaussian bias, weight and scale must be numeric arrays: {e}") from None
        b = out["bias"]
        return b, out.get("weight", b.new_zeros(*b.shape, 0)), out["scale"]

    def bind(self, node, parent_cards):
        self.validate(node)
        super().bind(node, parent_cards)
        for i, p in enumerate(self.parents):
            card = parent_cards[p]
            if i < self._n_disc:
                if card is None:
                    raise self._err(f"parent '{p}' is continuous but bias has a dim for it (discrete parents first)")
                if self.bias.shape[i] != card:
                    raise self._err(f"bias dim {i} has size {self.bias.shape[i]}, parent '{p}' has "
                                    f"cardinality {card}")
            elif card is not None:
                raise self._err(f"parent '{p}' is discrete: list discrete parents before continuous ones")

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def mean_table(self, values: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``[(*B,) *discrete_parent_cards]`` means, with the batch dims ``B`` of the continuous parents' values
        (``[N]``, or ``[S, N]`` under a particle plate) when there are continuous parents.

        The weighted sum :math:`w_d^\\top z` runs in at least float32 under :func:`torch.autocast`
        (:class:`~hybridpgm.precision_scope.exact_precision`): autocast would run its einsum as a 16-bit matmul,
        and a mean of 300 in bfloat16 is off by up to 1, a hundred standard deviations of a node with
        :math:`\\sigma = 0.01`."""
        z = self._input_features(values)
        if z is None:
            return self.bias
        flat = z.reshape(-1, z.shape[-1]).to(self.weight)
        with exact_precision(self.weight, flat) as (weight, flat):
            mixed = torch.einsum("...k,nk->n...", weight, flat)
        return self.bias + mixed.reshape(*z.shape[:-1], *self.bias.shape)

    def log_density(self, value: torch.Tensor, values=None, *, checked: bool = False) -> torch.Tensor:
        """``[*B, *discrete_parent_cards]`` :math:`\\log \\mathcal N(x_n; \\mu_{n,d}, \\sigma_d^2)` for values
        ``[*B]`` (``[N]``: one per row).

        :param bool checked: whether the caller checked the parameters (:func:`check_gaussian_parameters`) and
            ``value`` (no ``NaN``), as an exact query does with the evidence's one read; ``False`` (the default):
            under Pyro's validation they are checked here, the parameters by :func:`check_gaussian_parameters` and
            the value by torch's support check.
        :raises ModelSpecError: (unless ``checked``, under validation) parameters that are not finite, or a scale
            that is not positive."""
        if not checked:
            check_gaussian_parameters((self,))
        mean = self.mean_table(values)
        value = value.to(self.bias).reshape(*value.shape, *([1] * self._n_disc))
        return self.normal(mean, self.scale, value_checked=checked).log_prob(value)

    @staticmethod
    def normal(loc: torch.Tensor, scale: torch.Tensor, *, value_checked: bool) -> dist.Normal:
        """:math:`\\mathcal N(\\mathrm{loc}, \\mathrm{scale}^2)` whose ``loc`` and ``scale`` are not checked again
        (:func:`check_gaussian_parameters` checked the parameters they come from): no host read when built.

        :param bool value_checked: whether the values it will score were checked (no ``NaN``, the support of a
            Normal) by the caller; else, under validation, torch checks them at ``log_prob`` (its support check,
            as an ordinary Pyro distribution does)."""
        normal = dist.Normal(loc, scale, validate_args=False)
        if not value_checked and is_validation_enabled():
            # the value's support check at log_prob only (torch's own expand sets the flag after building so too)
            normal._validate_args = True
        return normal

    def _parameters_fine(self) -> bool:
        """Whether ``bias`` and ``weight`` are finite and ``scale`` positive and finite (reads: the error path)."""
        scale = self.scale.detach()
        return bool(torch.isfinite(self.bias).all() and torch.isfinite(self.weight).all()
                    and (torch.isfinite(scale) & (scale > 0)).all())

    def _parameters_error(self) -> ModelSpecError:
        """The error of parameters :meth:`_parameters_fine` refuses, naming the node (reads them: the error path)."""
        for what, t in (("bias", self.bias), ("weight", self.weight)):
            if not bool(torch.isfinite(t).all()):
                return self._err(f"LinearGaussian {what} has NaN or infinite entries (parents {list(self.parents)}; "
                                 "diverged training, or a state dict that holds them)")
        scale = self.scale.detach()
        return self._err(f"LinearGaussian scale must be positive and finite, got {scale.flatten().tolist()} "
                         f"(exp of log_scale; parents {list(self.parents)})")


def check_gaussian_parameters(cpds: Iterable) -> None:
    """Under Pyro's validation (:func:`pyro.enable_validation`, on by default): every
    :class:`LinearGaussian` among ``cpds`` has a finite ``bias`` and ``weight`` and a positive, finite ``scale``
    -- what torch's :class:`~torch.distributions.Normal` checked of its ``loc`` and ``scale``, one read per node
    and per check -- in one flag: one host read outside :func:`hybridpgm.fit`'s step, none inside it
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`).  Without validation nothing is checked, as torch
    checked nothing.

    :param cpds: the CPDs to check (other kinds are skipped).
    :raises ModelSpecError: naming the first node whose parameters fail."""
    if not is_validation_enabled():
        return
    gaussians = [c for c in cpds if isinstance(c, LinearGaussian)]
    if not gaussians:
        return
    with torch.no_grad():  # ten operations for all the nodes together, not per node (on the CPU they cost the most)
        rest = torch.cat([t.reshape(-1) for c in gaussians for t in (c.bias, c.weight)])
        scales = torch.cat([c.log_scale.reshape(-1) for c in gaussians]).exp()  # each node's scale
        ok = torch.isfinite(rest).all() & (torch.isfinite(scales) & (scales > 0)).all()

    def error() -> ModelSpecError:
        return next(c._parameters_error() for c in gaussians if not c._parameters_fine())

    check_or_defer(ok, error, "a LinearGaussian's bias or weight is not finite, or its scale not positive",
                   ModelSpecError, about_data=False)
