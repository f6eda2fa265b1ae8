"""The sprinkler network with a neural CPD for ``wet`` (``Linear(4, 8)``, the given layers, ``Linear(8, 2)``), in
eval mode, for the tests of an evidence table's staleness checks (:mod:`hybridpgm.infer.evidence_snapshot`)."""

from __future__ import annotations

import torch

from hybridpgm.graphs import BayesNet, cpd

#: evidence on the neural node, two rows
EVIDENCE = {"wet": torch.tensor([0, 1])}


def sprinkler_net(*middle: torch.nn.Module) -> tuple[BayesNet, torch.nn.Sequential]:
    """``(bn, body)``: the network (weights from seed 0) and its neural CPD's body, whose layers the tests swap.

    :param middle: the layers between the two linear layers (e.g. ``nn.Tanh()``)."""
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("cloudy", cpd.Table([0.5, 0.5]))
    bn.add("sprinkler", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["cloudy"]))
    bn.add("rain", cpd.Table([[0.8, 0.2], [0.2, 0.8]], ["cloudy"]))
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), *middle, torch.nn.Linear(8, 2))
    bn.add("wet", cpd.Neural(body, ["sprinkler", "rain"], 2))
    return bn.eval(), body
