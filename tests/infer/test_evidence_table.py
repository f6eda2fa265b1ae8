"""Evidence tables: every answer equals brute-force enumeration and the contraction, bad use is refused by name."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.graphs import BayesNet, cpd, read_bif
from hybridpgm.infer import EvidenceTable
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import (
    brute_joint,
    brute_posterior,
    bundled_bif,
    random_bn,
    single_thread,  # noqa: F401 (autouse fixture)
    sprinkler,
)


def _mixed_rows(bn, nodes, rows: int, seed: int) -> dict:
    """``rows`` sampled cases observing each of ``nodes`` with probability 1/2 (``-1``: not observed)."""
    torch.manual_seed(seed)
    sample = bn.sample(rows)
    seen = torch.rand(rows, len(nodes)) < 0.5
    return {v: torch.where(seen[:, j], sample[v], torch.full_like(sample[v], -1)) for j, v in enumerate(nodes)}


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 6), st.booleans(), st.sampled_from(["subsets", "compact"]), st.data())
def test_every_pattern_matches_brute_force(seed, n, zeros, layout, data):
    bn = random_bn(seed, n, zeros=zeros)
    rows, logp = brute_joint(bn)
    nodes = data.draw(st.lists(st.sampled_from(bn.nodes), unique=True, min_size=1, max_size=n - 1))
    table = bn.compile_evidence(nodes, layout=layout)
    assert table.layout == layout
    # sampled cases (so each has positive probability), each observing a random subset of the nodes
    cases = _mixed_rows(bn, nodes, 12, seed)
    post = table.posterior(None, cases)
    log_z = table.log_evidence(cases)
    for i in range(12):
        row = {v: int(cases[v][i]) for v in nodes if int(cases[v][i]) >= 0}
        keep = torch.ones(len(rows), dtype=torch.bool)
        for v, x in row.items():
            keep &= rows[:, bn.nodes.index(v)] == x
        torch.testing.assert_close(log_z[i], logp[keep].logsumexp(0), atol=1e-12, rtol=0)
        for v in post:
            ref = brute_posterior(bn, rows, logp, row, v)
            torch.testing.assert_close(post[v][i], ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("layout", ["subsets", "compact"])
@pytest.mark.parametrize("name", ["asia", "child", "insurance"])
def test_mixed_batch_equals_the_contraction(name, layout):
    bn = read_bif(bundled_bif(name))
    g = torch.Generator().manual_seed(0)
    nodes = [bn.nodes[i] for i in torch.randperm(len(bn.nodes), generator=g)[: max(2, len(bn.nodes) // 5)].tolist()]
    cases = _mixed_rows(bn, nodes, 50, 1)
    table = bn.compile_evidence(nodes, layout=layout)
    with torch.no_grad():
        ref = bn.posterior(None, cases)
        torch.testing.assert_close(table.log_evidence(cases), bn.log_evidence(cases), atol=1e-12, rtol=0)
    got = table.posterior(None, cases)
    assert list(got) == list(ref)
    for v in ref:
        torch.testing.assert_close(got[v], ref[v], atol=1e-12, rtol=0)
        assert got[v].dtype == ref[v].dtype


def test_query_forms_and_state_names_follow_posterior():
    bn = sprinkler().double()
    table = bn.compile_evidence(["rain", "wet"])
    for query, evidence in [("sprinkler", {"wet": 1}), (["sprinkler", "rain"], {"wet": 1}),
                            (None, {"rain": "yes"}), (None, {}), ("wet", {"rain": torch.tensor([0, -1, 1])}),
                            ("rain", {"wet": torch.tensor([1.0, float("nan")])})]:
        got, ref = table.posterior(query, evidence), bn.posterior(query, evidence)
        if isinstance(ref, dict):
            assert list(got) == list(ref)
            for v in ref:
                torch.testing.assert_close(got[v], ref[v], atol=1e-12, rtol=0)
        else:
            torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


def test_an_evidence_node_is_one_hot_where_observed_and_its_posterior_elsewhere():
    bn = sprinkler().double()
    table = bn.compile_evidence(["rain", "sprinkler", "wet"])
    got = table.posterior("rain", {"rain": torch.tensor([1, -1]), "wet": torch.tensor([-1, 1])})
    torch.testing.assert_close(got[0], torch.tensor([0.0, 1.0], dtype=got.dtype))
    torch.testing.assert_close(got[1], bn.posterior("rain", {"wet": 1}), atol=1e-12, rtol=0)


def test_float32_networks_get_float32_answers():
    bn = sprinkler()  # float32 tables: the contraction runs in log space, the table in float64
    table = bn.compile_evidence(["rain", "wet"])
    got, ref = table.posterior(None, {"wet": torch.tensor([0, 1])}), bn.posterior(None, {"wet": torch.tensor([0, 1])})
    for v in ref:
        assert got[v].dtype == torch.float32
        torch.testing.assert_close(got[v], ref[v])


def test_table_size_and_entries():
    bn = sprinkler().double()
    table = bn.compile_evidence(["rain", "wet"])
    assert table.configurations == 4
    assert table.nbytes == (3 * 3) * (2 + 1) * 8  # (c+1) per evidence node x (the other node's states + p(e_S))
    # with nothing observed the entry is p(x) and p(e_S) = 1
    assert math.isclose(float(table.log_evidence({})), 0.0, abs_tol=1e-12)


def test_refusals_name_what_is_wrong():
    bn = sprinkler()
    table = bn.compile_evidence(["wet"])
    with pytest.raises(EvidenceError, match="'rain'.*outside the table's nodes"):
        table.posterior(None, {"rain": 1})
    with pytest.raises(EvidenceError, match="soft evidence on \\['wet'\\]"):
        bn.compile_evidence(["wet", "rain"]).posterior(None, {"wet": Likelihood([0.2, 0.9])})
    with pytest.raises(EvidenceError, match="'wet' is also observed in every evidence row"):
        table.posterior("wet", {"wet": 1})
    with pytest.raises(EvidenceError, match="unknown variable 'nope'"):
        bn.compile_evidence(["nope"])
    with pytest.raises(EvidenceError, match="repeat"):
        bn.compile_evidence(["wet", "wet"])
    with pytest.raises(ConfigError,
                       match=r"over \['rain', 'sprinkler', 'wet'\].*MiB in the compact layout, over max_bytes"):
        bn.compile_evidence(["rain", "sprinkler", "wet"], max_bytes=50)
    with pytest.raises(ConfigError, match=r"0.0 MiB in the subsets layout \(0.0 MiB compact\), over max_bytes"):
        bn.compile_evidence(["rain", "sprinkler", "wet"], max_bytes=200, layout="subsets")
    with pytest.raises(ConfigError, match="unknown evidence table layout 'dense'"):
        bn.compile_evidence(["wet"], layout="dense")


def test_zero_probability_rows_are_named():
    bn = sprinkler()  # wet is never T without rain or sprinkler (p = 0.0 in the table)
    table = bn.compile_evidence(["rain", "sprinkler", "wet"])
    with pytest.raises(EvidenceError, match=r"row\(s\) \[1\]"):
        table.posterior(None, {"rain": torch.tensor([1, 0]), "sprinkler": torch.tensor([0, 0]),
                               "wet": torch.tensor([1, 1])})


def test_a_changed_network_makes_the_table_stale():
    bn = random_bn(3, 4)
    table = bn.compile_evidence(["x1"])
    table.posterior(None, {"x1": 0})
    with torch.no_grad():
        next(iter(bn.cpds.values())).logits.add_(0.1)
    with pytest.raises(ConfigError, match="changed after its evidence table"):
        table.posterior(None, {"x1": 0})


def test_continuous_networks_are_refused():
    bn = BayesNet().add("z", cpd.Table([0.3, 0.7])).add("x", cpd.LinearGaussian(0.5, scale=2.0))
    with pytest.raises(ConfigError, match=r"continuous nodes \['x'\]"):
        EvidenceTable(bn, ["z"])


@pytest.mark.parametrize("change", ["double", "load_state_dict", "add", "replace"])
def test_every_kind_of_change_is_noticed(change):
    bn = random_bn(4, 4, dtype=torch.float32)
    table = bn.compile_evidence(["x2"])
    if change == "double":
        bn.double()  # new tensors (same values): the table belongs to the old ones
    elif change == "load_state_dict":
        state = {k: v * 1.5 for k, v in bn.state_dict().items()}  # sharper tables, copied in place
        bn.load_state_dict(state)
    elif change == "add":
        bn.add("extra", cpd.Table([0.5, 0.5]))
    else:  # a new parameter tensor in place of the old one
        table_cpd = bn.cpds["x0"]
        table_cpd.logits = torch.nn.Parameter(table_cpd.logits.detach() * 2)
    with pytest.raises(ConfigError, match="build it again"):
        table.posterior(None, {"x2": 0})


def _rare_state_net() -> BayesNet:
    """a -> b -> x, where b = 1 has probability 1e-9 after a = 0: a case observing it cancels nine digits
    in the compact layout (which drops b's least probable state, 1)."""
    bn = BayesNet().double()
    bn.add("a", cpd.Table([0.7, 0.3]))
    bn.add("b", cpd.Table([[1 - 1e-9, 1e-9], [0.6, 0.4]], ["a"]))
    bn.add("x", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["b"]))
    return bn.double()


def test_compact_layout_drops_the_least_probable_state_and_stores_prod_c():
    # rain: p(yes) = 0.2; wet: p(T) = 0.8 * 0.4 * 0.9 + 0.2 * (0.01 * 0.99 + 0.99 * 0.8) = 0.448
    bn = sprinkler().double()
    table = bn.compile_evidence(["rain", "wet"], layout="compact")
    assert table.dropped == [1, 1]
    assert table.nbytes == (2 * 2) * (2 + 1) * 8
    assert "layout='compact'" in repr(table)
    # auto: the subsets layout while it fits, else the compact one
    assert bn.compile_evidence(["rain", "wet"]).layout == "subsets"
    assert bn.compile_evidence(["rain", "wet"], max_bytes=(2 * 2) * 3 * 8).layout == "compact"


def test_compact_rows_that_cancel_too_much_are_computed_by_the_contraction(monkeypatch):
    bn = _rare_state_net()
    table = bn.compile_evidence(["a", "b", "x"], layout="compact")
    assert table.dropped == [1, 1, 1]
    calls = []
    exact = EvidenceTable._exact
    monkeypatch.setattr(EvidenceTable, "_exact",
                        lambda self, v, *args: calls.append(v.clone()) or exact(self, v, *args))
    cases = {"a": torch.tensor([0, 0, 1, -1, 1]), "b": torch.tensor([1, 0, 1, 1, -1]),
             "x": torch.tensor([-1, 0, 1, -1, 0])}
    got, ref = table.posterior(None, cases), bn.posterior(None, cases)
    for v in ref:
        torch.testing.assert_close(got[v], ref[v], atol=1e-12, rtol=0)
    torch.testing.assert_close(table.log_evidence(cases), bn.log_evidence(cases), atol=1e-12, rtol=1e-12)
    # only row 0 (a = 0, b = 1: its terms add up to 2e9 times p(e_S)) is computed apart; the other rows that
    # observe dropped states (2, 3, 4) stay within 64x, and row 3's p(a = 0, b = 1) for a's posterior (nine
    # digits cancelled) is off by about 1e-16 of its p(b = 1), the probability it is divided by
    assert len(calls) == 2 and all(torch.equal(v, torch.tensor([[0, 1, -1]])) for v in calls)  # posterior, log_evidence


def test_compact_zero_probability_rows_are_named():
    bn = sprinkler()  # wet = T has probability 0 without rain or sprinkler
    table = bn.compile_evidence(["rain", "sprinkler", "wet"], layout="compact")
    with pytest.raises(EvidenceError, match=r"row\(s\) \[1\]"):
        table.posterior(None, {"rain": torch.tensor([1, 0]), "sprinkler": torch.tensor([0, 0]),
                               "wet": torch.tensor([1, 1])})


def test_compact_evidence_node_posteriors_and_float32():
    bn = sprinkler()  # float32 tables
    table = bn.compile_evidence(["rain", "sprinkler", "wet"], layout="compact")
    cases = {"rain": torch.tensor([1, -1, -1, 0]), "wet": torch.tensor([-1, 1, 0, 1])}
    got, ref = table.posterior(None, cases), bn.posterior(None, cases)
    assert list(got) == list(ref)
    for v in ref:
        assert got[v].dtype == torch.float32
        torch.testing.assert_close(got[v], ref[v])


@pytest.mark.parametrize("layout", ["subsets", "compact"])
def test_a_build_in_chunks_gives_the_same_table(monkeypatch, layout):
    import hybridpgm.infer.evidence_table as module

    bn = read_bif(bundled_bif("child"))
    nodes = ["Disease", "LVH", "XrayReport"]
    whole = bn.compile_evidence(nodes, layout=layout)
    monkeypatch.setattr(module, "BUILD_CHUNK_BYTES", 7 * whole._table.shape[1] * 8)  # 7 configurations per query
    chunked = bn.compile_evidence(nodes, layout=layout)
    torch.testing.assert_close(chunked._table, whole._table, atol=1e-15, rtol=0)


def test_answers_computed_by_the_contraction_are_plain_tensors(monkeypatch):
    """Before: a compact row answered by the contraction (cancellation) came back attached to the CPDs'
    autograd graph (``requires_grad=True``), so ``.numpy()`` on the answer failed; the table is a snapshot."""
    bn = _rare_state_net()
    assert any(p.requires_grad for p in bn.parameters())  # learnable CPDs: the contraction would track them
    table = bn.compile_evidence(["a", "b", "x"], layout="compact")
    calls = []
    exact = EvidenceTable._exact
    monkeypatch.setattr(EvidenceTable, "_exact", lambda self, *args: calls.append(1) or exact(self, *args))
    cases = {"a": torch.tensor([0, 1]), "b": torch.tensor([1, -1])}  # row 0 cancels: computed apart
    answers = [table.log_evidence(cases), *table.posterior(None, cases).values(),
               table.log_evidence({"a": 0, "b": 1}), table.posterior("x", {"a": 0, "b": 1})]
    assert calls and not any(t.requires_grad for t in answers)
    [t.numpy() for t in answers]
    torch.testing.assert_close(answers[0], bn.log_evidence(cases).detach(), atol=1e-12, rtol=1e-12)


def test_compact_layout_with_a_one_state_evidence_node():
    """Found by an audit: a one-state node stores no state in the compact layout, and its empty index list was
    a float tensor, later used as an index (IndexError)."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=torch.float64)))
    bn.add("one", cpd.Table(torch.tensor([[1.0], [1.0]], dtype=torch.float64), ["a"]))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64), ["a"]))
    ev = {"b": torch.tensor([1, -1]), "one": torch.tensor([0, -1])}
    want = bn.posterior(None, ev)
    got = bn.compile_evidence(["b", "one"], layout="compact").posterior(None, ev)
    for v in want:
        torch.testing.assert_close(got[v], want[v], rtol=0, atol=1e-12)


def _rare_alarms(dtype, n=12):
    bn = BayesNet()
    bn.add("h", cpd.Table(torch.tensor([0.5, 0.5], dtype=dtype)))
    for i in range(n):  # p(s_i = 1 | h) = 1e-5 or 1e-4: all on, p(e) ~ 1e-49, under float32's range
        bn.add(f"s{i}", cpd.Table(torch.tensor([[1 - 1e-5, 1e-5], [1 - 1e-4, 1e-4]], dtype=dtype), ["h"]))
    return bn


@pytest.mark.parametrize("layout", ["subsets", "compact"])
def test_a_float32_table_keeps_evidence_whose_probability_underflows_float32(layout):
    """Found by an audit: p(e) was read from the float32 joint, where 1e-49 is 0 (the evidence was called
    impossible) and 1e-44 a subnormal of a few digits (log p(e) off by 0.11); the contraction answered both."""
    nodes = [f"s{i}" for i in range(12)]
    table = _rare_alarms(torch.float32).compile_evidence(nodes, layout=layout)
    exact = _rare_alarms(torch.float64)
    on = torch.tensor([1, 1, -1])
    ev = {**{v: on for v in nodes[:11]}, "s11": torch.tensor([1, 0, 1])}  # 12 on, 11 on, 10 on and one missing
    torch.testing.assert_close(table.log_evidence(ev).double(), exact.log_evidence(ev).detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(table.posterior("h", ev).double(), exact.posterior("h", ev), rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("limit,query", [(256, "the joint posterior of 5 nodes"), (1024, "25 nodes needs")])
def test_a_network_the_exact_guard_refuses_raises_before_the_table_is_allocated(monkeypatch, limit, query):
    """The bottom row of a 5x5 grid network: under bn_contract.EXACT_MAX_BYTES of 256 bytes the joint of the
    evidence nodes is refused, under 1 KiB the posterior of the others given them; either way the build raises
    that query's ModelSpecError without making any tensor as large as the table (10496 bytes: 32 configurations
    by 41 float64 columns; the old build allocated it first)."""
    import hybridpgm.infer.bn_contract as bn_contract
    from hybridpgm.errors import ModelSpecError
    from tests.graphs.largest_tensor import LargestTensor
    from tests.infer.test_bn_size_guard import grid_network

    bn, nodes = grid_network(5), [f"x4_{c}" for c in range(5)]
    assert bn.compile_evidence(nodes, layout="compact").nbytes == 32 * 41 * 8  # the first array the build fills
    monkeypatch.setattr(bn_contract, "EXACT_MAX_BYTES", limit)
    bn.plan_cache.clear()
    with LargestTensor() as seen, pytest.raises(ModelSpecError, match=f"{query}.*EXACT_MAX_BYTES"):
        bn.compile_evidence(nodes, max_bytes=2**30)
    assert seen.largest < 32 * 41  # elements (float64: 8 bytes each)


def test_an_edit_through_data_then_plan_cache_clear_makes_the_table_stale():
    """An edit through ``.data`` moves no version counter, so neither the network's queries nor the table see
    it; ``bn.plan_cache.clear()``, the documented remedy, makes the network answer from the new values and the
    table raise (it did answer from the old ones)."""
    bn = sprinkler()
    table = bn.compile_evidence(["wet"])
    ev = {"wet": torch.tensor([0, 1])}
    table.posterior("rain", ev)
    rain = bn.cpds["rain"]
    rain.logits.data.copy_(rain.logits.detach().flip(-1))
    bn.plan_cache.clear()
    with pytest.raises(ConfigError, match=r"plan_cache\.clear\(\).*build it again"):
        table.posterior("rain", ev)
    with pytest.raises(ConfigError, match="build it again"):
        table.log_evidence(ev)
    rebuilt = bn.compile_evidence(["wet"])
    torch.testing.assert_close(rebuilt.posterior("rain", ev), bn.posterior("rain", ev))


def test_queries_and_other_tables_leave_a_table_answering():
    """Guard (passes before and after the fix): the table retires with the network's query memo, which no query,
    sample or second table drops."""
    bn = sprinkler()
    table = bn.compile_evidence(["wet"])
    ev = {"wet": torch.tensor([0, 1])}
    want = table.posterior("rain", ev)
    bn.posterior("rain", ev), bn.log_evidence(ev), bn.sample(3), bn.compile_evidence(["sprinkler", "wet"])
    with torch.no_grad():
        bn.posterior(None, {"rain": torch.tensor([0, 1])})
    torch.testing.assert_close(table.posterior("rain", ev), want, rtol=0, atol=0)


def test_a_table_of_a_network_in_shared_memory_notices_another_process_s_write():
    """Found by a review: a network in shared memory (Hogwild training) written by another process moves no
    version counter here, and its evidence table kept answering (stale); the table keeps a copy of such tensors
    and raises, as for any change, once they differ.  The other process's write is played by a second tensor on
    the same storage (its own version counter)."""
    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    bn.share_memory()
    table = bn.compile_evidence(["b"])
    table.posterior("a", {"b": torch.tensor([1])})
    logits = bn.cpds["a"].logits
    other_process = torch.empty(0).set_(logits.untyped_storage(), logits.storage_offset(), logits.shape,
                                        logits.stride())
    with torch.no_grad():
        other_process.copy_(torch.tensor([0.9, 0.1]).log())
    with pytest.raises(ConfigError, match="the network changed after its evidence table"):
        table.posterior("a", {"b": torch.tensor([1])})
