"""MAP decoding of a compiled MRF (:mod:`hybridpgm.graphs.mrf_map`) against brute-force enumeration."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.mrf_map import map_of, tied_rows
from tests.graphs.mrf_brute_force import assignments, random_mrf


def _brute_force_map(mrf):
    values, rows = assignments(mrf)
    return rows[int(mrf.score(values).argmax())]


@pytest.mark.parametrize("method", ["exact", "bp", "auto"])
def test_map_of_a_tree_is_the_enumerated_argmax(method):
    mrf = random_mrf(3, 6, max_card=3, tree=True)
    with torch.no_grad():
        got = map_of(mrf.factor_graph(), method, {}, list(mrf.cards))
    assert list(got) == list(mrf.cards)
    assert torch.equal(torch.stack([got[v] for v in mrf.cards]), _brute_force_map(mrf))


def test_map_of_exact_on_a_loopy_model_is_the_enumerated_argmax():
    mrf = random_mrf(5, 6, max_card=3, num_factors=7)
    got = map_of(mrf.factor_graph(), "exact", {}, list(mrf.cards))
    assert torch.equal(torch.stack([got[v] for v in mrf.cards]), _brute_force_map(mrf))


def test_map_of_refuses_max_product_as_a_bp_option():
    mrf = random_mrf(1, 3, tree=True)
    with pytest.raises(ModelSpecError, match="max_product is not an option"):
        map_of(mrf.factor_graph(), "bp", {"max_product": True}, list(mrf.cards))


def test_tied_rows_flags_rows_whose_top_two_max_marginals_tie():
    m = torch.tensor([[[0.5, 0.5], [0.9, 0.1]],      # first variable ties
                      [[0.6, 0.4], [0.2, 0.8]],      # no tie
                      [[0.3, 0.7], [0.45, 0.45]]])   # second variable ties
    assert tied_rows(m).tolist() == [True, False, True]
    assert tied_rows(torch.ones(4, 2, 1)).tolist() == [False] * 4  # one state: nothing can tie
