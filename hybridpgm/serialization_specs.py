"""How :func:`hybridpgm.save` describes the modules whose constructor arguments do not say everything.

Each entry of :data:`BUILTIN_SPECS` is a pair ``to_spec(module, where) -> dict``
(savable values: plain data, tensors, serializable modules) and
``from_spec(dict) -> module`` (the state dict is loaded afterwards):

* a :class:`~hybridpgm.graphs.BayesNet`, declared by ``add`` calls: its CPDs
  (each a serializable module) and state names;
* a :class:`~hybridpgm.graphs.MarkovNet`, declared by ``add_factor`` calls: its
  variables and factors (tables as tensors, neural potentials as modules);
* GPyTorch's :class:`~gpytorch.likelihoods.BernoulliLikelihood` (the
  classification likelihood of an SV-DKL): its plate nesting and quadrature size, at most
  :data:`MAX_QUADRATURE_LOCS` points (the rule costs :math:`O(n^3)` to make, 40 s for 6000 points, and NumPy's
  gives NaN weights from about 380 points on: a file naming more is refused, not computed);
* a :class:`~hybridpgm.bayesian_nn.BayesianRegressor`: the plain torch layers
  its network was bayesianized from (see :mod:`hybridpgm.serialization_layers`),
  the training set size, the prior scale and the noise.  Its weights are latent
  (Pyro sample sites), so the model file holds the noise and the prior scales;
  the approximate posterior lives in the guide, whose state dict is saved apart
  (``torch.save(guide.state_dict(), ...)``) and loaded into a guide built on
  the loaded model once it has run.

``where`` is the module's path in the saved model, for messages.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_layers import TORCH_LAYERS, _torch_class, build_layer, layer_spec

__all__ = ["BUILTIN_SPECS", "MAX_QUADRATURE_LOCS"]

#: the most Gauss-Hermite points a BernoulliLikelihood of a model file may have (GPyTorch's default is 20)
MAX_QUADRATURE_LOCS = 256


def _bayes_net_spec(bn, where: str) -> dict:
    spec = {"cpds": dict(bn.cpds.items()), "state_names": dict(bn.state_names)}
    if getattr(bn, "_module_name", ""):  # a network of a name (unnamed ones, and older files, have no entry)
        spec["name"] = bn._module_name
    return spec


def _bayes_net_from_spec(spec: dict):
    from hybridpgm.graphs.bayes_net import BayesNet

    return BayesNet(spec["cpds"], state_names=spec["state_names"], name=spec.get("name", ""))


def _markov_net_spec(mrf, where: str) -> dict:
    factors = []
    for name, fam in mrf.families.items():
        potential = mrf.potentials[name] if fam["kind"] == "module" else mrf.table_potentials.table(fam["key"])
        factors.append({"name": name, "scopes": fam["scopes"], "single": fam["single"], "potential": potential,
                        "parameter": isinstance(potential, nn.Parameter)})
    return {"variables": dict(mrf.cards), "factors": factors}


def _markov_net_from_spec(spec: dict):
    from hybridpgm.graphs.markov_net import MarkovNet

    mrf = MarkovNet(spec["variables"])
    for factor in spec["factors"]:
        potential = factor["potential"]
        if factor["parameter"]:
            potential = nn.Parameter(potential.clone())
        if factor["single"]:
            mrf.add_factor(factor["name"], factor["scopes"][0], potential)
        else:
            mrf.add_factors(factor["name"], factor["scopes"], potential)
    return mrf


def _bernoulli_spec(likelihood, where: str) -> dict:
    from gpytorch.utils.quadrature import GaussHermiteQuadrature1D

    extra = [what for what, held in (("priors", likelihood._priors), ("constraints", likelihood._constraints),
                                     ("added loss terms", likelihood._added_loss_terms),
                                     ("parameters", likelihood._parameters), ("buffers", likelihood._buffers))
             if held]
    plain_quadrature = type(likelihood._modules.get("quadrature")) is GaussHermiteQuadrature1D
    if extra or set(likelihood._modules) != {"quadrature"} or not plain_quadrature:
        raise CheckpointError(f"cannot save {where}: a BernoulliLikelihood holding "
                              f"{extra or 'other sub-modules than its GaussHermiteQuadrature1D'} is not rebuilt "
                              "from a model file")
    _check_quadrature(likelihood.quadrature.num_locs, f"cannot save {where}: a BernoulliLikelihood")
    return {"max_plate_nesting": likelihood.max_plate_nesting, "num_locs": likelihood.quadrature.num_locs}


def _check_quadrature(num_locs, what: str) -> None:
    """Refuse a quadrature size that is not an int in ``[1, MAX_QUADRATURE_LOCS]``; ``what`` starts the message."""
    if type(num_locs) is not int or not 1 <= num_locs <= MAX_QUADRATURE_LOCS:
        raise CheckpointError(f"{what} with num_locs={num_locs!r} Gauss-Hermite points; a model file holds an int "
                              f"from 1 to {MAX_QUADRATURE_LOCS} (MAX_QUADRATURE_LOCS)")


def _bernoulli_from_spec(spec: dict):
    from gpytorch.likelihoods import BernoulliLikelihood
    from gpytorch.utils.quadrature import GaussHermiteQuadrature1D

    _check_quadrature(spec["num_locs"], "model file gives a BernoulliLikelihood")  # before the O(n^3) rule is made
    if type(spec["max_plate_nesting"]) is not int or spec["max_plate_nesting"] < 0:
        raise CheckpointError(f"model file gives a BernoulliLikelihood max_plate_nesting="
                              f"{spec['max_plate_nesting']!r}, not a non-negative int")
    likelihood = BernoulliLikelihood()
    likelihood.max_plate_nesting = spec["max_plate_nesting"]
    if likelihood.quadrature.num_locs != spec["num_locs"]:
        likelihood.quadrature = GaussHermiteQuadrature1D(spec["num_locs"])
    return likelihood


def _bayesian_regressor_spec(model, where: str) -> dict:
    from pyro.nn import PyroModule

    net, where = model.net, f"{where}.net"
    if type(net) is PyroModule[nn.Sequential]:
        layers = [layer_spec(layer, f"{where}[{i}]", bayesian=True) for i, layer in enumerate(net)]
    elif _torch_class(net, bayesian=True) is not None:
        layers = None
    else:
        raise CheckpointError(f"cannot save {where}: a bayesianized {type(net).__mro__[1].__name__}; only a "
                              f"network of {sorted(TORCH_LAYERS)} (one, or an nn.Sequential of them) is rebuilt "
                              "from a model file")
    scales = [float(b) for name, b in net.named_buffers() if name.rpartition(".")[2] == "_prior_scale"]
    noise = float(model.noise.detach())
    spec = {"net": layer_spec(net, where, bayesian=True) if layers is None else {"sequential": layers},
            "num_data": model.num_data, "prior_scale": scales[0] if scales else 1.0,
            # the state dict holds the noise; a value the constructor refuses (underflow to 0) is only a placeholder
            "noise": noise if 0 < noise < float("inf") else 1.0}
    if model._module_name:  # the plate's and the likelihood's prefix (unnamed: the earlier releases' spec)
        spec["name"] = model._module_name
    return spec


def _bayesian_regressor_from_spec(spec: dict):
    from hybridpgm.bayesian_nn import BayesianRegressor

    where = "BayesianRegressor.net"
    net = spec["net"]
    if "sequential" in net:
        net = nn.Sequential(*[build_layer(layer, f"{where}[{i}]") for i, layer in enumerate(net["sequential"])])
    else:
        net = build_layer(net, where)
    return BayesianRegressor(net, spec["num_data"], spec["prior_scale"], spec["noise"], name=spec.get("name", ""))


#: qualified class name -> (``to_spec(module, where)``, ``from_spec(dict)``)
BUILTIN_SPECS: dict[str, tuple[Callable, Callable]] = {
    "hybridpgm.graphs.bayes_net.BayesNet": (_bayes_net_spec, _bayes_net_from_spec),
    "hybridpgm.graphs.markov_net.MarkovNet": (_markov_net_spec, _markov_net_from_spec),
    "gpytorch.likelihoods.bernoulli_likelihood.BernoulliLikelihood": (_bernoulli_spec, _bernoulli_from_spec),
    "hybridpgm.bayesian_nn.BayesianRegressor": (_bayesian_regressor_spec, _bayesian_regressor_from_spec),
}
