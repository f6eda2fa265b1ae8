"""The three-node chain a -> b -> c of the BayesNet tests (tests/graphs/test_bayes_net*.py), its true tables, and
data with entries made missing at random."""

import torch

from hybridpgm.graphs import BayesNet, cpd


TRUE = {
    "a": torch.tensor([0.3, 0.7]),
    "b": torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]),
    "c": torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]),
}


def _chain(tables=TRUE, **kw):
    bn = BayesNet()
    bn.add("a", cpd.Table(tables["a"], **kw))
    bn.add("b", cpd.Table(tables["b"], ["a"], **kw))
    bn.add("c", cpd.Table(tables["c"], ["b"], **kw))
    return bn


def _with_missing(x: torch.Tensor, frac: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = x.clone().float()
    x[torch.rand(x.shape, generator=g) < frac] = float("nan")
    return x
