r"""log Z of a Boltzmann machine with an honest error: AIS from several starts.

One AIS run (:class:`~hybridpgm.infer.AIS`) reports the jackknife
standard error of :math:`\log \widehat Z`, which only measures the spread of
the final weights of *its own* chains.  When the base distribution misses a
mode of the target (a base-rate model built from the data's pixel rates, for
a PCD-trained RBM that grew a spurious low-energy mode), every chain misses it
the same way: the weights look well-behaved, the standard error is tiny, and
:math:`\log \widehat Z` is too low by many nats, so the log-likelihood
:math:`-F(v) - \log \widehat Z` of a broken model looks good.

:func:`estimate_log_z` runs AIS from several *starts*, base-rate models built
from different samples:

* ``"data"``: the data's pixel rates (Salakhutdinov & Murray [1]);
* ``"model"``: the pixel rates of the model's own samples, from block-Gibbs
  chains started half at the data and half at random (or from chains the user
  passes, e.g. the persistent chains of PCD);
* ``"uniform"``: fair coins (Bernoulli units; Gaussian units start from the model's own visible biases).

Each start's :math:`\log\widehat Z_s` is a stochastic lower bound of
:math:`\log Z` (:math:`E[\widehat Z_s] = Z`, so by Jensen
:math:`E[\log\widehat Z_s] \le \log Z`), and a start whose base distribution
misses a mode is far too low, so the estimate is the *largest* one,
:math:`\log\widehat Z = \max_s \log\widehat Z_s`.  The maximum of noisy
estimates is *not* a lower bound: when the starts agree it overshoots
:math:`\log Z` by up to about their own noise (measured over 200 seeds on a
well-mixed 10x3 RBM: +0.009 nats, against an empirical sd of 0.013; on a
bimodal 10x2 RBM +0.06 to +0.09 nats at 200 to 1000 steps, against reported
standard errors of 0.21 to 0.34).  Its standard error therefore
adds the spread between starts to the chosen start's own, which covers that
overshoot (in those runs the error was within 1.96 reported standard errors
in 98 to 100% of seeds, within 3 in all of them):

.. math::

    \mathrm{se} = \sqrt{\mathrm{se}_{s^*}^2
                 + \big(\tfrac12 \max_{s,s'} |\log\widehat Z_s - \log\widehat Z_{s'}|\big)^2}.

The log-mean-exp of the starts, :math:`\log \frac1S \sum_s \widehat Z_s`,
would stay a stochastic lower bound, but it sits up to :math:`\log S` below
the start that found a mode the others missed, exactly the case the starts
are for: there its intervals covered :math:`\log Z` less often (a bimodal RBM
with 10 steps: 83% within 3 standard errors, against 93% for the maximum).

The result is flagged ``reliable=False`` (and an :class:`~hybridpgm.errors.EstimateWarning`, a
:class:`UserWarning`, naming AIS is raised) when two starts disagree by more than ``3`` combined standard errors,
or when a start's effective sample size is below ``min_ess`` of its chains.

References:

1. R. Salakhutdinov, I. Murray, "On the quantitative analysis of deep belief
   networks", ICML 2008.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Accurate and conservative estimates
   of MRF log-likelihood using reverse annealing", AISTATS 2015.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from hybridpgm.checks import flag, generator_keywords, generator_or_none, positive_int, positive_real
from hybridpgm.errors import ConfigError, DataError, EstimateWarning
from hybridpgm.infer.ais import AIS, AISResult, check_base_data
from hybridpgm.infer.autocast_off import autocast_off
from hybridpgm.portable_result import PortableResult
from hybridpgm.summary_repr import number_text
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["LogZEstimate", "estimate_log_z", "model_samples"]

_STARTS = ("data", "model", "uniform")


@dataclass(eq=False)
class LogZEstimate(PortableResult):
    """Result of :func:`estimate_log_z` (a dataclass: each field is an attribute).

    :param log_z: the largest of the starts' estimates (scalar tensor; not a lower bound of
        :math:`\\log Z`, see the module docstring).
    :param stderr: its standard error, the chosen start's combined with half the spread.
    :param starts: start name -> :class:`~hybridpgm.infer.AISResult`.
    :param spread: largest minus smallest estimate over the starts (nats).
    :param reliable: ``False`` when starts disagree beyond their standard errors or ESS is low.
    :param reasons: why it is unreliable (empty when reliable).
    """

    log_z: torch.Tensor
    stderr: torch.Tensor
    starts: dict[str, AISResult]
    spread: float
    reliable: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def best_start(self) -> str:
        return max(self.starts, key=lambda s: float(self.starts[s].log_z))

    def interval(self, num_stderr: float = 3.0) -> tuple[float, float]:
        """``log_z -/+ num_stderr * stderr``, the reported interval.

        :param float num_stderr: the half-width in standard errors (default ``3.0``).
        :raises ConfigError: ``num_stderr`` that is not a finite real number ``>= 0``.
        """
        num_stderr = positive_real(num_stderr, "LogZEstimate.interval num_stderr", allow_zero=True)
        return float(self.log_z - num_stderr * self.stderr), float(self.log_z + num_stderr * self.stderr)

    def __repr__(self) -> str:
        """A summary of constant size, whatever the number of chains (the dataclass ``repr`` printed each start's
        :class:`~hybridpgm.infer.AISResult` with every log-weight): the estimate and its standard error, the
        spread, whether it is reliable (and how many reasons say it is not), and each start's estimate and
        standard error (the first three and the last, beyond five starts)."""
        try:
            items = list(self.starts.items())
            shown = items if len(items) <= 5 else [*items[:3], None, items[-1]]
            starts = ", ".join("..." if item is None else
                               f"{item[0]!r}: {number_text(getattr(item[1], 'log_z', None))} "
                               f"(stderr {number_text(getattr(item[1], 'stderr', None), 4)})" for item in shown)
            reasons = len(self.reasons) if isinstance(self.reasons, (list, tuple)) else 0
            reliable = bool(self.reliable)
        except Exception:  # a repr never raises: an estimate built by hand may hold anything
            return f"LogZEstimate(log_z={number_text(self.log_z)}, stderr={number_text(self.stderr, 4)})"
        return (f"LogZEstimate(log_z={number_text(self.log_z)}, stderr={number_text(self.stderr, 4)}, "
                f"spread={number_text(self.spread, 4)}, reliable={reliable!r}"
                + (f" ({reasons} reason{'s' if reasons != 1 else ''})" if not reliable else "")
                + f", starts={{{starts}}})")

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON reports."""
        return {"log_z": float(self.log_z), "stderr": float(self.stderr), "spread": self.spread,
                "reliable": self.reliable, "reasons": list(self.reasons), "best_start": self.best_start,
                "starts": {name: {"log_z": float(r.log_z), "stderr": float(r.stderr), "ess": r.ess,
                                  "num_chains": int(r.log_weights.numel()), "num_steps": r.num_steps}
                           for name, r in self.starts.items()}}


@torch.no_grad()
@autocast_off
def model_samples(model: Any, num: int, sweeps: int = 1000, data: torch.Tensor | None = None, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``num x V`` visible samples of an RBM or DBM after ``sweeps`` block-Gibbs sweeps.

    With ``data`` (RBMs), half the chains start at random data rows and half at
    random states, so a mode the data never visit is still found.

    :param generator: a :class:`torch.Generator` for the draws (the rows, the start states and the sweeps; on
        the model's device, and ``data``'s), passed on to the model's ``sample`` and ``random_visible``;
        ``None`` draws from torch's global stream (and passes no keyword).
    :raises ConfigError: ``sweeps`` is not a positive integer, or ``generator`` neither a
        :class:`torch.Generator` nor ``None``, or given for a ``sample``/``random_visible`` that takes none.
    """
    sweeps = positive_int(sweeps, "model_samples sweeps")
    generator = generator_or_none(generator, "model_samples generator")
    from_chains = data is None or not hasattr(model, "gibbs")
    draws = generator_keywords(generator, model.sample, *([] if from_chains else [model.random_visible]),
                               what="model_samples generator")
    if from_chains:
        return model.sample(num, steps=sweeps, **draws)
    from_data = num // 2
    rows = torch.randint(data.shape[0], (from_data,), device=data.device, generator=generator)
    init = torch.cat([data[rows].to(model.weight), model.random_visible(num - from_data, **draws)])
    return model.sample(num, steps=sweeps, init=init, **draws)


def _disagreement(results: dict[str, AISResult], num_stderr: float) -> list[str]:
    names = list(results)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ra, rb = results[a], results[b]
            gap = abs(float(ra.log_z - rb.log_z))
            se = math.hypot(float(ra.stderr), float(rb.stderr))
            if gap > num_stderr * se:
                out.append(f"starts {a!r} and {b!r} differ by {gap:.3g} nats, "
                           f"more than {num_stderr:g} x their combined standard error {se:.3g}")
    return out


@autocast_off
def estimate_log_z(model: Any, data: torch.Tensor | None = None, *,
                   starts: Sequence[str] | dict[str, torch.Tensor] | None = None,
                   num_chains: int = 100, num_steps: int = 10000, schedule: str = "salakhutdinov",
                   chains: torch.Tensor | None = None, sample_sweeps: int = 1000,
                   min_ess: float = 0.1, num_stderr: float = 3.0, warn: bool = True,
                   generator: torch.Generator | None = None) -> LogZEstimate:
    """:math:`\\log Z` of an RBM or DBM by AIS from several starts (module docstring).  Under :func:`torch.autocast`
    it runs with autocast off, in the model's dtype (:func:`~hybridpgm.infer.autocast_off.autocast_off`), as
    :func:`model_samples` does.

    :param model: a model with ``annealing_path(data)`` and ``sample`` (RBM, DBM).
    :param data: ``N x V`` training data (the ``"data"`` start, and half the model chains' starts).
    :param starts: names from ``"data"``, ``"model"``, ``"uniform"`` (one name alone is one start), or a dict
        name -> ``M x V`` samples whose pixel rates make the base model.  Default: ``("data", "model")``,
        ``("uniform", "model")`` without data.
    :param chains: ``M x V`` samples for the ``"model"`` start (e.g. PCD's persistent chains);
        drawn by :func:`model_samples` with ``sample_sweeps`` sweeps otherwise.
    :param int sample_sweeps: Gibbs sweeps of those drawn samples (default ``1000``; unused with ``chains``).
    :param int num_chains: chains of each AIS run (see :class:`~hybridpgm.infer.AIS`).
    :param int num_steps: intermediate distributions of each AIS run.
    :param str schedule: the temperature schedule of each AIS run.
    :param float min_ess: smallest acceptable effective sample size, as a fraction of ``num_chains``.
    :param float num_stderr: starts further apart than this many combined standard errors disagree.
    :param bool warn: issue an :class:`~hybridpgm.errors.EstimateWarning` when the estimate is unreliable.
    :param generator: a :class:`torch.Generator` for every draw (the ``"model"`` start's samples, then each
        AIS run in the order of the starts; on the model's device); ``None`` draws from torch's global stream.
    :returns: a :class:`LogZEstimate`.
    :raises ConfigError: an unknown start name, ``starts`` that is neither a name, a sequence of names nor a
        dict, no start at all, ``min_ess`` that is not a real number in ``[0, 1]``, ``num_stderr`` that is not
        a finite real number ``>= 0`` (``bool`` and strings are refused, not coerced), ``warn`` that is not
        ``True`` or ``False``, or ``generator`` neither a :class:`torch.Generator` nor ``None``; the message
        names the option and the value.
    :raises DataError: the start ``"data"`` without ``data``, or ``data`` AIS refuses (not ``N x V``, empty,
        NaN, values outside the units' range).
    """
    if starts is None:
        starts = ("data", "model") if data is not None else ("uniform", "model")
    elif isinstance(starts, str):
        starts = (starts,)  # one start, not a sequence of one-letter names
    elif not isinstance(starts, (dict, Sequence)) or isinstance(starts, bytes):
        raise ConfigError(f"estimate_log_z starts must be a start name, a sequence of them or a dict name -> "
                          f"samples, got {type(starts).__name__} {starts!r:.60}")
    try:
        min_ess_ok = positive_real(min_ess, "estimate_log_z min_ess", allow_zero=True) <= 1
    except ConfigError:
        min_ess_ok = False
    if not min_ess_ok:
        raise ConfigError(f"estimate_log_z min_ess is a fraction of the chains in [0, 1], got {min_ess!r}")
    num_stderr = positive_real(num_stderr, "estimate_log_z num_stderr", allow_zero=True)
    warn = flag(warn, "estimate_log_z warn")
    generator = generator_or_none(generator, "estimate_log_z generator")
    if data is not None:  # before a model chain starts from a row of it (torch's own errors there)
        check_base_data(data, "estimate_log_z")
        model.annealing_path(data)  # the width, emptiness and values, as AIS checks them
    bases: dict[str, torch.Tensor | None] = {}
    if isinstance(starts, dict):
        bases = dict(starts)
    else:
        for name in starts:
            if name not in _STARTS:
                raise ConfigError(f"unknown AIS start {name!r}; use one of {_STARTS} or a dict of samples")
            if name == "data":
                if data is None:
                    raise DataError("the AIS start 'data' needs the training data (data=None was given)")
                bases[name] = data
            elif name == "uniform":
                bases[name] = None
            else:
                bases[name] = chains if chains is not None else model_samples(model, num_chains, sample_sweeps, data,
                                                                              generator=generator)
    if not bases:
        raise ConfigError("estimate_log_z needs at least one start")
    ais = AIS(num_chains=num_chains, num_steps=num_steps, schedule=schedule)
    results = {name: ais(model, data=base, generator=generator) for name, base in bases.items()}
    values = [float(r.log_z) for r in results.values()]
    spread = max(values) - min(values)
    best = results[max(results, key=lambda s: float(results[s].log_z))]
    stderr = torch.sqrt(best.stderr**2 + (spread / 2) ** 2)
    reasons = _disagreement(results, num_stderr)
    reasons += [f"start {name!r} has ESS {r.ess:.3g} of {num_chains} chains (below {min_ess:g} of them)"
                for name, r in results.items() if r.ess < min_ess * num_chains]
    estimate = LogZEstimate(log_z=best.log_z, stderr=stderr, starts=results, spread=spread,
                            reliable=not reasons, reasons=reasons)
    if reasons and warn:
        warnings.warn(f"AIS estimate of log Z for {type(model).__name__} is unreliable: " + "; ".join(reasons)
                      + ". Use more steps (num_steps) or chains, or read the result as a lower bound.",
                      EstimateWarning, stacklevel=users_stacklevel())
    return estimate
