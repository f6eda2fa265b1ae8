"""The Bayes-net table cache (infer/bn_factors.node_table) holds no inference tensor (audit: caches)."""

from __future__ import annotations

import torch


def test_a_query_under_inference_mode_leaves_no_inference_tensor_in_the_table_cache():
    """A fixed table's log-table cached by a query under torch.inference_mode() (serving) was an inference tensor:
    the next query that autograd records (a learnable CPD beside it) failed with torch's "Inference tensors cannot
    be saved for backward"."""
    from hybridpgm.graphs import BayesNet, cpd

    def build():
        return BayesNet({"a": cpd.Table([0.3, 0.7]), "b": cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"], learnable=False),
                         "c": cpd.Table([[0.6, 0.4], [0.5, 0.5]], ["b"], learnable=False)})

    evidence = {"c": torch.tensor([1, 0, 1])}
    served, fresh = build(), build()
    with torch.inference_mode():
        served.log_evidence(evidence)
    served.log_evidence(evidence).sum().backward()
    fresh.log_evidence(evidence).sum().backward()
    torch.testing.assert_close(served.cpds["a"].logits.grad, fresh.cpds["a"].logits.grad, atol=0, rtol=0)
