r"""Reverse annealing (RAISE): a conservative estimate of an RBM's test log-likelihood.

AIS underestimates :math:`\log Z` (in expectation), so :math:`-F(v) - \log\widehat Z` *overstates* the
log-likelihood.  Burda, Grosse & Salakhutdinov [1] estimate it from the other side.  The forward annealing chain
:math:`v_0 \sim p_0`, :math:`v_k \sim T_k(\cdot \mid v_{k-1})` (:math:`T_k` a block-Gibbs sweep at
:math:`\beta_k`, :math:`k = 1..K`) is itself a generative model :math:`p_{fwd}(v_K)`, which approaches the RBM as
:math:`K \to \infty`.  Its likelihood is estimated without bias by importance sampling with the *reverse* chain as
proposal, started at the test point: :math:`v_K = v`, :math:`v_{k-1} \sim T_k(\cdot \mid v_k)`.  The marginal
kernel of a block-Gibbs sweep on the visible units is reversible with respect to :math:`f_k`, so the weight
telescopes to

.. math::

    \log \widehat p(v) = -F(v) - \log \widehat Z_{\text{RAISE}}(v),\qquad
    \log \widehat Z_{\text{RAISE}}(v) = \log Z_0
        - \log \frac1M \sum_{m=1}^M \exp\Big(-\sum_{k=1}^K
          \big[\log f_k(v^{(m)}_{k-1}) - \log f_{k-1}(v^{(m)}_{k-1})\big]\Big),

the AIS increments accumulated along the reverse chain.  :math:`\log\widehat p(v)` is a stochastic lower bound of
:math:`\log p_{fwd}(v)`, and on data the model fits, :math:`E_{data}[\log p_{fwd}] \le E_{data}[\log p]`: RAISE is
*conservative* [1].  Together with AIS (:func:`log_likelihood_bounds`) it gives a sandwich of the test
log-likelihood: RAISE below, AIS above (AIS's :math:`\log\widehat Z` minus three of its standard errors, since a
single AIS estimate overshoots :math:`\log Z` by its noise about half the time); equivalently an upper (RAISE) and
a lower (AIS) estimate of :math:`\log Z`.

RAISE needs a path whose state is the visible vector alone (the hidden units summed out), as
:class:`~hybridpgm.energy.annealing.RBMAnnealingPath` is; DBMs are not supported (their reverse chain would need
:math:`p(h_2 \mid v)`).  With a ``generator`` every sweep of the reverse chains draws from it.

References:

1. Y. Burda, R. Grosse, R. Salakhutdinov, "Accurate and conservative estimates of MRF log-likelihood using reverse
   annealing", AISTATS 2015.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from hybridpgm.checks import generator_or_none, positive_int, positive_real
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.infer.ais import AnnealedEstimator, check_base_data, path_draws
from hybridpgm.infer.autocast_off import autocast_off
from hybridpgm.infer.log_z import LogZEstimate, estimate_log_z
from hybridpgm.infer.raise_result import RAISEResult
from hybridpgm.options import Option
from hybridpgm.portable_result import PortableResult
from hybridpgm.summary_repr import number_text

__all__ = ["RAISE", "LikelihoodBounds", "RAISEResult", "log_likelihood_bounds"]


class RAISE(AnnealedEstimator):
    """Reverse annealed importance sampling [1] for the log-likelihood of test points.

    :param int num_chains: reverse chains per test point :math:`M`.
    :param int num_steps: intermediate distributions :math:`K`.
    :param str schedule: see :func:`~hybridpgm.infer.ais.annealing_schedule`.
    :param betas: an explicit increasing sequence from 0 to 1.
    :param int batch_size: test points per pass (memory: ``batch_size * M x V``).
    :raises ConfigError: a count that is not a positive integer (``bool`` and floats included), a
        ``schedule`` that :func:`~hybridpgm.infer.ais.annealing_schedule` does not know (checked even when
        ``betas`` is given, which then sets the schedule), or ``betas`` that are not a finite 1-d sequence
        increasing from 0 to 1.  The options are attributes, checked when assigned as here (the schedule's:
        :class:`~hybridpgm.infer.ais.AnnealedEstimator`).
    """

    _what = "RAISE"
    num_chains = Option(lambda self, value: positive_int(value, "RAISE num_chains"))
    batch_size = Option(lambda self, value: positive_int(value, "RAISE batch_size"))

    def __init__(self, num_chains: int = 1, num_steps: int = 1000, schedule: str = "salakhutdinov",
                 betas: Sequence[float] | torch.Tensor | None = None, batch_size: int = 1000):
        self.num_chains, self.batch_size = num_chains, batch_size
        self._use_schedule(num_steps, schedule, betas)

    @torch.no_grad()
    def _reverse(self, path: Any, v: torch.Tensor, draws: dict) -> torch.Tensor:
        """``n`` reverse-chain sums :math:`\\sum_k \\Delta_k` from the states ``v``, with
        :math:`\\Delta_k = \\log f_k(v_{k-1}) - \\log f_{k-1}(v_{k-1})`.

        One ``path.step`` per temperature does both jobs: ``step(v_k, beta_{k+1}, beta_k, transition=True)``
        returns :math:`\\log f_k(v_k) - \\log f_{k+1}(v_k) = -\\Delta_{k+1}` from the pre-activations of
        :math:`v_k` that the sweep :math:`v_{k-1} \\sim T_k(\\cdot \\mid v_k)` needs anyway, so an RBM path costs
        two ``V x H`` products and two softplus passes per temperature (plus one ``step`` without a transition
        for :math:`\\Delta_1`; the first sweep's increment, at :math:`(\\beta_K, \\beta_K)`, is 0 and dropped).
        The sum is bit for bit that of a separate increment step after each sweep: :math:`a - b` and
        :math:`(\\beta - \\beta') x` are exactly :math:`-(b - a)` and :math:`-((\\beta' - \\beta) x)` in IEEE
        arithmetic (round to nearest is symmetric), so is a sum of negated terms in the same order, and the
        :math:`\\Delta_k` are accumulated in the same order :math:`k = K, \\dots, 1`; the random draws are
        the sweeps' own, in the same order, with the keywords ``draws`` (:func:`~hybridpgm.infer.ais.path_draws`)."""
        betas = self.betas
        num_steps = len(betas) - 1
        total = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
        _, v = path.step(v, betas[num_steps], betas[num_steps], transition=True, **draws)  # v_{K-1} ~ T_K(. | v_K)
        for k in range(num_steps - 1, 0, -1):
            minus_inc, v = path.step(v, betas[k + 1], betas[k], transition=True, **draws)  # -Delta_{k+1}; v_{k-1}
            total -= minus_inc.to(torch.float64)
        inc, _ = path.step(v, betas[0], betas[1], transition=False)  # Delta_1 at v_0
        total += inc.to(torch.float64)
        return total

    @torch.no_grad()
    @autocast_off
    def __call__(self, model: Any, v: torch.Tensor, data: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> RAISEResult:
        """Estimate :math:`\\log p(v)` of each test point of ``v``.

        Under :func:`torch.autocast` it runs with autocast off, in the model's dtype
        (:func:`~hybridpgm.infer.autocast_off.autocast_off`), as do :func:`log_likelihood_bounds` and
        :func:`~hybridpgm.infer.log_z.estimate_log_z`.

        :param torch.Tensor v: test points ``N x V``, where the batch shape ``N`` may have any number of
            dimensions (one point ``V``, or ``N1 x N2 x V``), as the model's ``check_visible`` accepts;
            the result's tensors have batch shape ``N`` (``log_weights`` ``N x M``).
        :param data: optional training data for the base-rate model (as for AIS).
        :param generator: a :class:`torch.Generator` for the reverse chains' draws (on the model's device);
            ``None`` draws from torch's global stream.
        :raises ModelSpecError: a model without ``annealing_path`` and ``free_energy``, or non-finite
            log-weights.
        :raises ConfigError: a ``generator`` that is neither a :class:`torch.Generator` nor ``None``, or that the
            model's annealing path takes no keyword for (:func:`~hybridpgm.infer.ais.path_draws`).
        :raises DataError: bad ``v`` (see the model's ``check_visible``), or ``data`` that is not ``N x V``.
        """
        if not hasattr(model, "annealing_path") or not hasattr(model, "free_energy"):
            raise ModelSpecError(f"RAISE needs a model with annealing_path(data) and free_energy(v) (an RBM); "
                                 f"{type(model).__name__} has not both")
        v = model.check_visible(v, "v")
        check_base_data(data, "RAISE")
        batch_shape = v.shape[:-1]
        rows = v.reshape(-1, v.shape[-1])  # N x V, whatever the number of batch dimensions
        path = model.annealing_path(data)
        draws = path_draws(path, generator, "RAISE")
        m = self.num_chains
        sums = []
        for chunk in rows.split(self.batch_size):
            start = chunk.repeat_interleave(m, 0).to(getattr(path, "dtype", chunk.dtype))  # not in the protocol
            sums.append(self._reverse(path, start, draws).reshape(-1, m))
        log_w = -torch.cat(sums)
        log_z = torch.as_tensor(path.log_z0, dtype=torch.float64) - (torch.logsumexp(log_w, 1) - math.log(m))
        if not bool(torch.isfinite(log_z).all()):
            raise ModelSpecError(f"RAISE produced non-finite log-weights for {type(model).__name__}")
        ll = -model.free_energy(rows).to(torch.float64) - log_z
        return RAISEResult(log_likelihood=ll.reshape(batch_shape), log_z=log_z.reshape(batch_shape),
                           log_weights=log_w.reshape(batch_shape + (m,)), num_steps=len(self.betas) - 1)


class _Report(dict):
    """A plain ``dict`` (JSON-serialisable as one) whose deprecated keys warn when read by ``[]`` or ``get``."""

    _renamed = {"lower_stderr": "test_set_stderr"}

    def _warn(self, key: Any) -> None:
        if key in self._renamed:
            warnings.warn(f"LikelihoodBounds.to_dict()[{key!r}] is renamed {self._renamed[key]!r} (the spread between "
                          f"test points, not the Monte Carlo error of the lower estimate, which is 'lower_mc_stderr'); "
                          f"{key!r} will be removed in a future release", FutureWarning, stacklevel=3)

    def __getitem__(self, key: Any) -> Any:
        self._warn(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._warn(key)
        return super().get(key, default)


#: how many standard errors of the gap :meth:`LikelihoodBounds.reliable` tolerates
RELIABLE_NUM_STDERR = 3.0


@dataclass(eq=False)
class LikelihoodBounds(PortableResult):
    r"""Sandwich of the mean test log-likelihood from :func:`log_likelihood_bounds`.

    **Reliability.**  :math:`-F(v_i)` is common to both estimates, so the gap between the lower (RAISE) and the
    point (AIS) estimate compares estimates of :math:`\log Z` only, point by point:

    .. math::

        D = \text{lower} - \text{estimate} = \frac1N \sum_{i=1}^N D_i,\qquad
        D_i = \log\widehat Z_{AIS} - \log\widehat Z_{RAISE}(v_i).

    *What is conservative, and over what.*  Write :math:`-F(v) = \log p(v) + \log Z` and
    :math:`\log\widehat Z_{AIS} = \log Z + a` (AIS's error :math:`a`, the same for every point).  RAISE's
    :math:`\widehat p(v)` is unbiased for :math:`p_{fwd}(v)`, the marginal of the forward annealing chain, not for
    :math:`p(v)`, so by Jensen :math:`E_{RAISE}\log\widehat Z_{RAISE}(v) \ge \log Z + b(v)`,
    :math:`b(v) = \log p(v) - \log p_{fwd}(v)`.  For a given point :math:`b(v)` has either sign (it is negative
    where the forward chain puts more mass than the model, as it does with few steps :math:`K`); only its
    expectation over points drawn from the model is signed, :math:`E_{v\sim p}\,b(v) = \mathrm{KL}(p\,\|\,p_{fwd})
    \ge 0` [1] (for test data, Burda et al.'s premise that the model fits them, :math:`E_{data}\,b \ge 0`).  So
    RAISE's :math:`\log\widehat Z` is high *in expectation over test points and chains*, not for each point, nor
    for a fixed test set, and :math:`\mu = E_{v, RAISE}[D_i \mid a] \le a`, whose expectation is :math:`\le 0`
    for one AIS run (the multi-start maximum of :func:`~hybridpgm.infer.log_z.estimate_log_z` can overshoot
    :math:`\log Z` by about its noise, which its standard error covers).

    *The noise of* :math:`D`.  Given AIS, the :math:`D_i` of independently drawn points with independent chains
    are i.i.d., so :math:`D` estimates :math:`\mu` with variance :math:`\operatorname{Var}(D_i)/N`, which
    :math:`s_D^2/N` (:math:`s_D` the sample sd of the :math:`D_i` over the points, equal to that of
    :math:`\log\widehat Z_{RAISE}(v_i)`) estimates without bias.  :math:`s_D` holds RAISE's Monte Carlo noise
    *and* the point-to-point variation of its bias :math:`b(v_i)`, but not the spread of :math:`-F(v_i)`
    (tens of nats between images), which cancels in :math:`D_i`.  AIS's error is common to all points and
    independent of RAISE, so

    .. math::

        \mathrm{gap\_stderr} = \sqrt{s_D^2 / N + \mathrm{se}_{AIS}^2}

    (:attr:`raise_gap_stderr` is :math:`s_D/\sqrt N`, ``log_z.stderr`` is :math:`\mathrm{se}_{AIS}`).
    :attr:`reliable` is ``False`` when the multi-start AIS is itself unreliable, or when
    :math:`D > 3\,\mathrm{gap\_stderr}`.  Over test sets drawn from the model (and RAISE runs) a sound pair
    (:math:`\mu \le 0`) does that with probability at most about 0.13% for normal noise and large ``N`` (for
    small ``N`` :math:`D/\mathrm{gap\_stderr}` has heavier, Student-like tails: about 0.4% at ``N = 20``).  For
    one fixed test set, rerun with other random numbers, the rate depends on that set's mean bias
    :math:`\frac1N\sum_i b(v_i)` and is not bounded by that figure.  A failure means RAISE's lower estimate lies
    above AIS's by more than the two allow: AIS's :math:`\log Z` overshot, or RAISE is not below
    :math:`\log p` on this test set (too few steps :math:`K`, or data the model does not fit).  Since
    :math:`\text{upper} = \text{estimate} + k\,\mathrm{se}_{AIS}` with :math:`k \le 3` (the default), a pair
    that fails this test always has ``lower > upper``.

    *Few points.*  With ``N = 1`` there is no sd over points: :attr:`raise_gap_stderr` falls back on
    :attr:`RAISEResult.mc_stderr` (``M >= 2`` chains), RAISE's Monte Carlo error alone, and the test then asks
    whether this point's RAISE :math:`\log Z` agrees with AIS within Monte Carlo noise (its own bias
    :math:`b(v)` is not covered).  With ``N = 1`` and ``M = 1`` RAISE's error cannot be estimated at all:
    :attr:`raise_gap_stderr` and :attr:`gap_stderr` are ``nan`` and :attr:`reliable` is ``False`` (the pair
    could not be checked, not found wrong).  :func:`log_likelihood_bounds` refuses ``N = 0`` (the mean
    log-likelihood of no points is undefined); bounds built by hand from an empty :class:`RAISEResult` have
    ``nan`` means and RAISE standard errors (:attr:`upper_mc_stderr` is AIS's own, which the points do not
    enter) and :attr:`reliable` is ``False``, without warnings.

    :param lower: mean RAISE estimate (conservative: below the log-likelihood in expectation).
    :param upper: mean :math:`-F(v)` minus the *lower* end of the AIS interval for :math:`\log Z`
        (:math:`\log\widehat Z - k\,\mathrm{se}`, with :math:`k` the ``num_stderr`` of
        :func:`log_likelihood_bounds`, 3 by default): above the log-likelihood unless AIS misses by more than
        :math:`k` of its reported standard errors.
    :param estimate: the AIS point estimate, mean :math:`-F(v) - \log\widehat Z`.
    :param log_z: the multi-start AIS :class:`~hybridpgm.infer.log_z.LogZEstimate`.
    :param raise_result: the :class:`RAISEResult`.
    """

    lower: float
    upper: float
    estimate: float
    log_z: LogZEstimate
    raise_result: RAISEResult

    @property
    def lower_mc_stderr(self) -> float:
        """Monte Carlo standard error of :attr:`lower`: :attr:`RAISEResult.mc_stderr` with ``M >= 2`` chains per
        point, else the conservative :attr:`RAISEResult.test_set_stderr` for ``N >= 2`` points, else ``nan``
        (one chain and at most one point: nothing measures it; ``test_set_stderr`` is 0 there)."""
        se = float(self.raise_result.mc_stderr)
        if math.isfinite(se):
            return se
        return float(self.raise_result.test_set_stderr) if self.raise_result.log_z.numel() >= 2 else math.nan

    @property
    def upper_mc_stderr(self) -> float:
        r"""Standard error of :attr:`upper` and :attr:`estimate`: that of the AIS :math:`\log\widehat Z`."""
        return float(self.log_z.stderr)

    @property
    def raise_gap_stderr(self) -> float:
        r"""RAISE's part of :attr:`gap_stderr`, :math:`s_D/\sqrt N`: the sample sd over the points of
        :math:`D_i = \log\widehat Z_{AIS} - \log\widehat Z_{RAISE}(v_i)` over :math:`\sqrt N` (RAISE's Monte
        Carlo noise and the between-point variation of its bias; class docstring).  ``N = 1``:
        :attr:`RAISEResult.mc_stderr` (``nan`` with one chain); ``N = 0``: ``nan``."""
        log_z = self.raise_result.log_z.to(torch.float64).reshape(-1)
        n = log_z.numel()
        if n >= 2:
            return float(log_z.std(unbiased=True)) / math.sqrt(n)
        return float(self.raise_result.mc_stderr) if n == 1 else math.nan

    @property
    def gap_stderr(self) -> float:
        r""":math:`\sqrt{s_D^2/N + \mathrm{se}_{AIS}^2}` (:attr:`raise_gap_stderr`, :attr:`upper_mc_stderr`): the
        standard error of ``lower - estimate`` as an estimate of the expected gap over test points (class
        docstring); ``nan`` where RAISE's part is."""
        return math.hypot(self.raise_gap_stderr, self.upper_mc_stderr)

    @property
    def reliable(self) -> bool:
        """AIS reliable and ``lower - estimate <= 3 * gap_stderr`` (class docstring); ``False`` where
        :attr:`gap_stderr` is ``nan`` (the pair cannot be checked)."""
        return self.log_z.reliable and self.lower - self.estimate <= RELIABLE_NUM_STDERR * self.gap_stderr

    def __repr__(self) -> str:
        """A summary of constant size (the dataclass ``repr`` printed every chain's log-weight of both
        estimators): the three numbers, whether the pair is :attr:`reliable`, and the summaries of
        :attr:`log_z` and :attr:`raise_result`."""
        try:
            reliable = repr(self.reliable)
        except Exception:  # a repr never raises: bounds built by hand may hold anything
            reliable = "?"
        return (f"LikelihoodBounds(lower={number_text(self.lower)}, estimate={number_text(self.estimate)}, "
                f"upper={number_text(self.upper)}, reliable={reliable}, log_z={self.log_z!r}, "
                f"raise_result={self.raise_result!r})")

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON reports.  ``"lower_stderr"``, the old name of ``"test_set_stderr"``, is kept
        for one release and warns (:class:`FutureWarning`) when read."""
        test_set = float(self.raise_result.test_set_stderr)
        return _Report({"lower_raise": self.lower, "upper_ais": self.upper, "estimate_ais": self.estimate,
                        "lower_mc_stderr": self.lower_mc_stderr, "upper_mc_stderr": self.upper_mc_stderr,
                        "raise_gap_stderr": self.raise_gap_stderr,
                        "gap_stderr": self.gap_stderr, "test_set_stderr": test_set, "lower_stderr": test_set,
                        "raise_steps": self.raise_result.num_steps,
                        "raise_chains": int(self.raise_result.log_weights.shape[-1]),
                        "num_test": self.raise_result.log_likelihood.numel(), "reliable": self.reliable,
                        "ais": self.log_z.to_dict()})


@autocast_off
def log_likelihood_bounds(model: Any, v: torch.Tensor, data: torch.Tensor | None = None, *,
                          log_z: LogZEstimate | None = None, raise_: RAISE | None = None,
                          num_stderr: float = 3.0, generator: torch.Generator | None = None,
                          **log_z_kwargs: Any) -> LikelihoodBounds:
    """Lower (RAISE) and upper (AIS) estimates of the mean log-likelihood of test points ``v``.

    :param model: an RBM (a model with ``annealing_path`` and ``free_energy``, as :class:`RAISE` takes).
    :param v: the test points, ``N x V`` (a batch shape ``N`` of any number of dimensions, as :class:`RAISE`
        takes); the bounds are means over them.
    :param data: training data (base rates of both estimators, and the AIS ``"data"`` start).
    :param log_z: a precomputed :func:`~hybridpgm.infer.log_z.estimate_log_z` result.
    :param raise\\_: the :class:`RAISE` estimator (default ``RAISE()``).
    :param num_stderr: the upper estimate uses :math:`\\log\\widehat Z -` this many standard errors (3 by
        default).
    :param generator: a :class:`torch.Generator` for every draw (the multi-start AIS first, unless ``log_z`` is
        given, then RAISE; on the model's device); ``None`` draws from torch's global stream.
    :param log_z_kwargs: passed to :func:`~hybridpgm.infer.log_z.estimate_log_z`.
    :raises ConfigError: ``num_stderr`` that is not a finite real number ``>= 0`` (``bool`` and strings are
        refused), naming the value; ``generator`` neither a :class:`torch.Generator` nor ``None``.
    :raises DataError: ``v`` of no test points (a batch shape with a 0, ``0 x V``), naming its shape, before
        any annealing runs: the mean log-likelihood of no points is undefined (it came out ``nan`` after the
        whole multi-start AIS); bad ``v`` otherwise, as :class:`RAISE` refuses it.
    """
    num_stderr = positive_real(num_stderr, "log_likelihood_bounds num_stderr", allow_zero=True)
    generator = generator_or_none(generator, "log_likelihood_bounds generator")
    if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[:-1].numel() == 0:
        raise DataError(f"log_likelihood_bounds: the test points 'v' have shape {tuple(v.shape)}, no point: the "
                        f"mean log-likelihood of no test points is undefined; pass at least one row")
    if log_z is None:
        log_z = estimate_log_z(model, data, generator=generator, **log_z_kwargs)
    result = (raise_ or RAISE())(model, v, data=data, generator=generator)
    with torch.no_grad():
        estimate = float((-model.free_energy(v).to(torch.float64) - log_z.log_z).mean())
    upper = estimate + num_stderr * float(log_z.stderr)
    return LikelihoodBounds(lower=float(result.log_likelihood.mean()), upper=upper, estimate=estimate, log_z=log_z,
                            raise_result=result)
