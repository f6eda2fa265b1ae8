"""The one-dtype check of exact Bayesian-network queries: :func:`check_one_table_dtype`.

A query computes in one dtype (:attr:`~hybridpgm.graphs.BayesNet.dtype`, that of the network's first tensor).
CPDs of two dtypes (tables of two dtypes, or a table beside a :class:`~hybridpgm.graphs.cpd.Neural` CPD whose
network is of another dtype, or a :class:`~hybridpgm.graphs.cpd.LinearGaussian` of another) were promoted in some
contractions and crashed others (soft evidence on many nodes, posterior samples) with torch's raw "expected scalar
type Double but found Float", and :meth:`~hybridpgm.graphs.BayesNet.model` (training under enumeration) with
torch's raw "both inputs should have same dtype" from inside Pyro.  The check runs before every query and every
run of the model, so it reads one tensor per CPD through maps it keeps with the network's
:class:`~hybridpgm.infer.bn_evidence.NetworkFacts` (no walk over the module tree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import ModelSpecError

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.infer.bn_evidence import NetworkFacts

__all__ = ["check_one_table_dtype"]


def check_one_table_dtype(facts: "NetworkFacts") -> None:
    """Refuse a query on a network whose CPDs are of two dtypes, naming a node of each.

    A CPD's dtype is that of its first floating tensor: a table's logits, the first floating parameter of a neural
    CPD's network, else its first floating buffer (the dtype :meth:`~hybridpgm.graphs.cpd.Neural.log_table`
    computes in), a linear-Gaussian CPD's first parameter or buffer.  A neural CPD whose network holds no floating
    tensor (``nn.Identity``) computes in the dtype of its continuous inputs, which are in the network's dtype, and
    without any in torch's default dtype, which is then its dtype here (``bn.to`` does not change it).  A NumPy
    ``float64`` array or ``np.float64`` numbers make a ``float64`` table, Python floats one of torch's default
    dtype, as do the layers of :mod:`torch.nn`: building a network so and converting it (``bn.double()``) before
    querying is fine.  :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` runs the same check.

    :raises ModelSpecError: naming a node of each dtype and the ways out."""
    holders = facts.__dict__.get("_logits_holders")
    try:
        _check_dtypes(holders if holders is not None else _holders(facts))
    except (KeyError, AttributeError):  # a tensor moved between its module's parameters and buffers (or was set
        _check_dtypes(_holders(facts))  # to None): find the maps again


def _holders(facts: "NetworkFacts") -> list:
    """``(node, map, key, kind)`` for each CPD with a floating tensor: the parameter or buffer map of the module
    holding its first one (:func:`_first_floating`), and how the message names the CPD; kept with ``facts``.
    ``bn.to(...)`` refills the same maps in place."""
    holders = []
    for name, c in facts.cpds.items():
        if "logits" in c._parameters or "logits" in c._buffers:  # a table: no walk over submodules
            holders.append((name, c._parameters if "logits" in c._parameters else c._buffers, "logits", ""))
            continue
        held = _first_floating(c)
        if held is not None:
            tensors, key, path = held
            holders.append((name, tensors, key, f", a {type(c).__name__} CPD (its tensor {path!r})"))
        elif isinstance(getattr(c, "net", None), torch.nn.Module) and not c.inputs:
            holders.append((name, None, c, _DEFAULT_KIND))  # its dtype: torch's default, read at each check
    facts.__dict__["_logits_holders"] = holders
    return holders


def _first_floating(c: torch.nn.Module):
    """``(map, key, path)`` of the first floating parameter of ``c`` in :meth:`~torch.nn.Module.parameters`
    order (its submodules' included), else of its first floating buffer, else ``None``."""
    for kind in ("_parameters", "_buffers"):
        for prefix, m in c.named_modules():
            held = getattr(m, kind)
            for key, t in held.items():
                if t is not None and t.is_floating_point():
                    return held, key, f"{prefix}.{key}" if prefix else key
    return None


#: how the message names a :class:`~hybridpgm.graphs.cpd.Neural` CPD whose network holds no floating tensor
_DEFAULT_KIND = (", a Neural CPD whose network holds no floating tensor and reads no continuous input, so it "
                 "computes in torch's default dtype")


def _dtype(holder: tuple) -> torch.dtype:
    """The dtype of a holder's tensor; torch's default for a CPD without floating tensors, whose (few) modules are
    walked again at each check: a tensor given to its network since (a buffer) makes the caller find the maps
    again (``KeyError``)."""
    if holder[1] is not None:
        return holder[1][holder[2]].dtype
    if _first_floating(holder[2]) is not None:
        raise KeyError(holder[0])
    return torch.get_default_dtype()


def _check_dtypes(holders: list) -> None:
    if not holders:
        return
    first = holders[0]
    dtype = _dtype(first)
    for holder in holders:
        other = _dtype(holder)
        if other != dtype:
            what = "tables" if not first[3] and not holder[3] else "CPDs"
            if first[1] is None or holder[1] is None:  # bn.to() does not move torch's default dtype
                fix = (f"Convert the network to torch's default dtype (bn.to({torch.get_default_dtype()})), or give "
                       f"that Neural CPD's network a floating tensor of the dtype wanted (a buffer: "
                       f"net.register_buffer(...)), which it then computes in")
            else:
                fix = (f"Convert the network (bn.to({dtype}) or bn.to({other})), or build every CPD in one dtype "
                       f"(probabilities given as a NumPy float64 array or np.float64 numbers make a float64 table, "
                       f"Python floats one of torch's default dtype, as do the layers of torch.nn)")
            raise ModelSpecError(
                f"the {what} of this network are of two dtypes: {dtype} (node {first[0]!r}{first[3]}) and "
                f"{other} (node {holder[0]!r}{holder[3]}); a query computes in one dtype.  {fix}")
