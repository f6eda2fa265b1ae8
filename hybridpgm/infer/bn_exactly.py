"""Exact Bayesian-network queries under :func:`torch.autocast`: autocast off for the evidence's device.

Under ``fit(precision="bf16"/"fp16")`` autocast would run the contractions of an exact query
(:func:`~hybridpgm.infer.bn_contract.log_evidence_rows`, :func:`~hybridpgm.infer.bn_contract.marginals`,
:func:`~hybridpgm.infer.bn_contract.joint_rows`) and the neural CPDs feeding them in half precision, which costs
a float32 network's log-evidence nats.  :func:`exactly` wraps such a query so that it runs inside
:class:`~hybridpgm.precision_scope.exact_precision` for ``ev.device``: a float32 or float64 network is answered
in its own dtype; outside autocast nothing changes.
"""

from __future__ import annotations

import functools

from hybridpgm.precision_scope import exact_precision

__all__ = ["exactly"]


def exactly(query):
    """``query(bn, ev, ...)`` with autocast off for ``ev``'s device
    (:class:`~hybridpgm.precision_scope.exact_precision`; nothing changes outside autocast).

    :param query: a function ``query(bn, ev, *args, **kwargs)``, ``ev`` an
        :class:`~hybridpgm.infer.bn_evidence.Evidence` (its ``device`` names the autocast scope to leave).
    :returns: the wrapped query (same name, docstring and signature, :func:`functools.wraps`).
    """
    @functools.wraps(query)
    def run(bn, ev, *args, **kwargs):
        with exact_precision(device=ev.device):
            return query(bn, ev, *args, **kwargs)
    return run
