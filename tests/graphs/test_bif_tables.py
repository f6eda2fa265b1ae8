"""How :func:`~hybridpgm.graphs.read_bif` builds a network's tables: all at once
(:meth:`~hybridpgm.graphs.cpd.Table.many`), each the table :class:`~hybridpgm.graphs.cpd.Table` builds alone, a
malformed one named by file, node and row."""

import os
import re

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import read_bif
from hybridpgm.graphs.cpd import Table
from tests.graphs.bn_helpers import bundled_bif, single_thread  # noqa: F401 (autouse fixture)

pgmpy = pytest.importorskip("pgmpy")

#: the BIF networks bundled with pgmpy; the largest run with ``-m slow``
_BIG = {"barley", "diabetes", "mildew", "munin", "munin2", "munin3", "munin4", "pathfinder"}
BUNDLED = sorted(f[:-len(".bif.gz")] for f in os.listdir(os.path.dirname(bundled_bif("asia"))) if f.endswith(".bif.gz"))


def test_the_bundled_networks_are_the_24_expected():
    assert len(BUNDLED) == 24 and _BIG < set(BUNDLED)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _BIG else n for n in BUNDLED])
def test_every_bundled_network_reads_to_the_tables_built_one_by_one(name):
    """A named guard (passes before and after the tables were built at once): every table of every bundled
    network is, bit for bit, the table built alone from the same numbers (its logits, support, problem, and the
    arguments a model file records); ``tests/graphs/test_bif.py`` compares the numbers with pgmpy's."""
    bn = read_bif(bundled_bif(name))
    for v, c in bn.cpds.items():
        alone = Table(c._hybridpgm_init["probs"], c.parents, learnable=False, atol=1e-4)
        assert c._problem is None and alone._problem is None, v
        assert c._hybridpgm_init.keys() == alone._hybridpgm_init.keys()
        assert torch.equal(c.support, alone.support) and torch.equal(c.logits, alone.logits), v
        assert c.logits.dtype == torch.float64 and c._shape == alone._shape and c.cardinality == alone.cardinality


def test_reading_a_network_checks_no_well_formed_table_one_by_one(monkeypatch):
    """The work count: the tables' checks run in vectorised passes over the whole network, and the table-by-table
    check (``Table._find_problem``) runs for none of alarm's 37 well-formed tables; before, for every one."""
    calls = []
    find = Table._find_problem
    monkeypatch.setattr(Table, "_find_problem", lambda self, *a: calls.append(self) or find(self, *a))
    bn = read_bif(bundled_bif("alarm"))
    assert len(bn.nodes) == 37 and calls == []


@pytest.mark.parametrize("entries, match", [
    ("(y) 0.5, 0.5; (n) 0.2, 0.3;", r"node 'b': table rows must sum to 1; row \[1\] \(the parents' states\) "
                                    r"sums to 0.5$"),
    ("(y) 0.5, 0.5; (n) 1.5, -0.5;", r"node 'b': table has negative, NaN or infinite entries \(parents \['a'\]\), "
                                     r"first at \[1, 1\]: -0.5$"),
    ("(y) 0.5, 0.5; (n) inf, 1;", r"node 'b': table has negative, NaN or infinite entries \(parents \['a'\]\), "
                                  r"first at \[1, 0\]: inf$"),
])
def test_a_malformed_table_is_named_by_file_node_and_row(tmp_path, entries, match):
    """Before, "a row sums to 0.5": which of a table's rows (up to thousands in the bundled networks) was not
    said, nor where a negative or NaN entry stood."""
    path = tmp_path / "bad.bif"
    path.write_text("network x { }\nvariable a { type discrete [ 2 ] { y, n }; }\n"
                    "variable b { type discrete [ 2 ] { y, n }; }\nprobability ( a ) { table 0.5, 0.5; }\n"
                    f"probability ( b | a ) {{ {entries} }}\n")
    with pytest.raises(ModelSpecError, match="^" + re.escape(repr(str(path))) + ": " + match):
        read_bif(path)


def test_a_dtype_that_makes_no_table_is_refused_naming_the_file_and_the_variable(tmp_path):
    """A named guard (passes before and after the tables were built at once): a complex ``dtype`` is refused
    with the file and the first variable, as when each table was built in turn."""
    path = tmp_path / "net.bif"
    path.write_text("network x { }\nvariable a { type discrete [ 2 ] { y, n }; }\n"
                    "probability ( a ) { table 0.5, 0.5; }\n")
    with pytest.raises(ModelSpecError, match="^" + re.escape(repr(str(path))) + ": variable 'a': Table probs must be "
                                             "real numbers, got dtype torch.complex128"):
        read_bif(path, dtype=torch.complex128)
