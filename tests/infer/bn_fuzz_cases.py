"""Seeded random BayesNets and queries checked against brute-force enumeration in float64.

Shared by :mod:`tests.infer.test_exact_fuzz_bayes_net` (and its patched-threshold variants). Every case is drawn
from ``random.Random(seed)`` and a ``torch.Generator`` seeded from it: the global RNGs are not touched, and a
failure message names the seed, so ``check_case(seed)`` reproduces it alone.

A net has 1-8 nodes with names of 1-4 random letters, cardinality 1-4, in-degree 0-3, declared in random order;
its tables are plain, with zeros, deterministic, near-deterministic (1e-9 off one-hot) or uniform (ties), all
parameters or all buffers (``learnable=False``). With ``neural=True`` most CPDs with parents are
:class:`~hybridpgm.graphs.cpd.Neural` (a float64 ``nn.Linear`` on the one-hot parents), enumerated through
the table the network defines. Each net answers 2-5 queries of 1-6 rows with mixed hard evidence (``-1`` =
unobserved, some as floats), soft :class:`~hybridpgm.infer.exact.Likelihood`
evidence ([card] and [N, card], with zeros) and impossible rows. Checked: ``log_evidence`` (``-inf`` on impossible
rows), ``posterior(None)`` (an :class:`~hybridpgm.errors.EvidenceError` on impossible evidence), joint posteriors
of random 1-3 node subsets in random order, ``map(return_log_prob=True)`` (the assignment reaches the maximum,
ties allowed; its value; hard evidence kept).

This is the FUZZ audit's ``fuzz_bn.py`` (session 41) with float64 tables only.
"""

from __future__ import annotations

import itertools
import random
import string

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import Likelihood

DT = torch.float64
TOL = 1e-9


def rand_table(rng: random.Random, g: torch.Generator, shape: list, kind: str) -> torch.Tensor:
    """A conditional table of ``shape`` (parents..., child), rows on the simplex, of the given ``kind``."""
    *pa, c = shape
    if kind == "det":
        idx = torch.randint(c, tuple(pa), generator=g)
        return torch.nn.functional.one_hot(idx, c).to(DT)
    x = torch.rand(shape, generator=g, dtype=DT) ** 3
    if kind == "zeros":
        x = x * (torch.rand(shape, generator=g, dtype=DT) > 0.4)
    if kind == "near":
        idx = torch.randint(c, tuple(pa), generator=g)
        x = torch.rand(shape, generator=g, dtype=DT) * 1e-9 + torch.nn.functional.one_hot(idx, c).to(DT)
    if kind == "tie":
        x = torch.ones(shape, dtype=DT)
    x = torch.where(x.sum(-1, keepdim=True) == 0, torch.ones_like(x), x)
    return x / x.sum(-1, keepdim=True)


def rand_name(rng: random.Random, used: set) -> str:
    """A fresh name of 1-4 random letters that is not an attribute of a ``ModuleDict``."""
    while True:
        name = "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 4)))
        if name not in used and name != "data" and not hasattr(torch.nn.ModuleDict(), name):
            used.add(name)
            return name


def neural_cpd(rng: random.Random, g: torch.Generator, parents: list, cards: dict, card: int):
    """A :class:`~hybridpgm.graphs.cpd.Neural` CPD in eval mode and the float64 table it defines."""
    width = sum(cards[p] for p in parents)
    with torch.random.fork_rng(devices=[]):  # its own initialisation draws from the global RNG: left as it was
        net = torch.nn.Linear(width, card).double()
    with torch.no_grad():
        net.weight.copy_((torch.rand(card, width, generator=g, dtype=DT) - 0.5) * rng.choice([2.0, 10.0]))
        net.bias.copy_(torch.rand(card, generator=g, dtype=DT) - 0.5)
    net.eval()
    table = torch.empty([cards[p] for p in parents] + [card], dtype=DT)
    for combo in itertools.product(*[range(cards[p]) for p in parents]):
        x = torch.cat([torch.nn.functional.one_hot(torch.tensor(k), cards[p]).to(DT) for k, p in zip(combo, parents)])
        table[combo] = torch.softmax(net(x), -1).detach()
    return cpd.Neural(net, parents, card), table


def assembled(rng: random.Random, names: list, cpds: dict) -> BayesNet:
    """A BayesNet of the CPDs ``cpds``, its nodes added in an order drawn from ``rng`` (not the topological one)."""
    bn = BayesNet()
    order = names[:]
    rng.shuffle(order)
    for v in order:
        bn.add(v, cpds[v])
    return bn


def make_bn(rng: random.Random, g: torch.Generator, neural: bool = False):
    """A random net: ``(bn, names in topological order, cards, parents, float64 tables)``."""
    used: set = set()
    names = [rand_name(rng, used) for _ in range(rng.randint(2 if neural else 1, 8 if not neural else 6))]
    cards = {v: rng.randint(1, 4) for v in names}
    learnable = rng.random() < 0.5  # parameters (queries differentiable: autograd) or buffers (the reverse pass)
    parents, tables, cpds = {}, {}, {}
    for i, v in enumerate(names):
        parents[v] = rng.sample(names[:i], rng.randint(0, min(3, i)))
        shape = [cards[p] for p in parents[v]] + [cards[v]]
        if neural and parents[v] and rng.random() < 0.7:
            cpds[v], tables[v] = neural_cpd(rng, g, parents[v], cards, cards[v])
            continue
        tables[v] = rand_table(rng, g, shape, rng.choice(["plain", "plain", "zeros", "det", "near", "tie"]))
        cpds[v] = cpd.Table(tables[v], parents[v], learnable=learnable)
    return assembled(rng, names, cpds), names, cards, parents, tables


def joint(names: list, cards: dict, parents: dict, tables: dict) -> torch.Tensor:
    """The joint ``[c_1, ..., c_n]`` in ``names`` order, by one einsum product per CPD (float64)."""
    letters = {v: string.ascii_letters[i] for i, v in enumerate(names)}
    every = "".join(letters[u] for u in names)
    out = torch.ones([cards[v] for v in names], dtype=DT)
    for v in names:
        out = torch.einsum(f"{every},{''.join(letters[p] for p in parents[v]) + letters[v]}->{every}", out, tables[v])
    return out


def rand_evidence(rng: random.Random, g: torch.Generator, names: list, cards: dict, n_rows: int):
    """``(evidence for the library, per-row dict node -> float64 likelihood vector)``."""
    ev: dict = {}
    lam: list = [dict() for _ in range(n_rows)]
    for v in names:
        r = rng.random()
        if r < 0.45:
            continue
        if r < 0.6:
            soft = torch.rand(n_rows, cards[v], generator=g, dtype=DT)
            soft = soft * (torch.rand(n_rows, cards[v], generator=g, dtype=DT) > 0.2)
            soft[soft.sum(-1) == 0, 0] = 0.7
            shared = rng.random() < 0.3
            ev[v] = Likelihood(soft[0].clone() if shared else soft)
            for n in range(n_rows):
                lam[n][v] = soft[0] if shared else soft[n]
            continue
        mixed = rng.random() < 0.6
        vals = torch.tensor([rng.randrange(cards[v]) if (not mixed or rng.random() < 0.6) else -1
                             for _ in range(n_rows)])
        if rng.random() < 0.2 and not mixed:
            vals = vals.float()
        ev[v] = vals
        for n in range(n_rows):
            if int(vals[n]) >= 0:
                lam[n][v] = torch.nn.functional.one_hot(torch.tensor(int(vals[n])), cards[v]).to(DT)
    return ev, lam


def weighted(joint_table: torch.Tensor, names: list, lam_row: dict) -> torch.Tensor:
    """The joint times every likelihood vector of one row."""
    out = joint_table.clone()
    for i, v in enumerate(names):
        if v in lam_row:
            shape = [1] * len(names)
            shape[i] = -1
            out = out * lam_row[v].view(shape)
    return out


def close(a, b, tol: float = TOL) -> bool:
    """Same shape, same non-finite entries, finite ones within ``tol`` relative (plus ``tol`` absolute)."""
    a, b = torch.as_tensor(a, dtype=DT), torch.as_tensor(b, dtype=DT)
    if a.shape != b.shape:
        return False
    fin = torch.isfinite(b)
    if not torch.equal(torch.isfinite(a), fin) or not torch.equal(a[~fin], b[~fin]):
        return False
    return bool(((a[fin] - b[fin]).abs() <= tol * (1 + b[fin].abs())).all())


def _rows(t: torch.Tensor, n_rows: int) -> torch.Tensor:
    """A per-row marginal ``[N, card]`` from one that may have no batch dim (all rows alike)."""
    return t if t.dim() == 2 else t.expand(n_rows, -1)


def _marginal(W: torch.Tensor, idx: list) -> torch.Tensor:
    """The normalised marginal of ``W`` over the axes ``idx``, in that order."""
    rest = [j for j in range(W.dim()) if j not in idx]
    m = W.sum(dim=rest) if rest else W
    srt = sorted(idx)
    m = m.permute([srt.index(j) for j in idx])
    return m / m.sum()


def expect_refused(answerer, ev: dict, fails: list, tag: str) -> None:
    """Checks that ``answerer.posterior(None, ev)`` (a net or an evidence table) raises ``EvidenceError`` on
    evidence of probability zero in some row."""
    try:
        answerer.posterior(None, ev)
    except EvidenceError:
        return
    fails.append(f"{tag}: posterior on impossible evidence did not raise EvidenceError")


def check_posteriors(bn, names: list, ev: dict, fully: set, marginal_of, rng: random.Random, fails: list, tag: str,
                     tol: float = TOL) -> None:
    """Checks ``bn.posterior`` of every node and a joint posterior of up to three nodes drawn from ``rng`` against
    ``marginal_of(idx)`` (``[N, c_i, ...]``: each row's reference posterior over the nodes at ``idx``); observed
    nodes (``fully``) must be left out of the answer."""
    post = bn.posterior(None, ev)
    n_rows = marginal_of([0]).shape[0]
    for i, v in enumerate(names):
        if v in fully:
            if v in post:
                fails.append(f"{tag}: observed node {v!r} in the posterior")
            continue
        want = marginal_of([i])
        if v not in post or not close(_rows(post[v], n_rows), want, tol):
            fails.append(f"{tag}: posterior of {v!r} {post.get(v)} != {want}")
    cand = [v for v in names if v not in fully]
    if cand:
        qs = rng.sample(cand, rng.randint(1, min(3, len(cand))))
        jp = bn.posterior(qs, ev, joint=True)
        want = marginal_of([names.index(v) for v in qs])
        if jp.dim() == len(qs):
            jp = jp.expand(n_rows, *jp.shape)
        if not close(jp, want, tol):
            fails.append(f"{tag}: joint posterior of {qs} off by {(jp.double() - want).abs().max().item()}")


def _check_query(bn, names: list, ev: dict, Ws: list, rng: random.Random, fails: list, tag: str) -> None:
    """Checks one query (evidence ``ev``; ``Ws``: each row's weighted joint) against enumeration."""
    n_rows = len(Ws)
    Z = torch.stack([W.sum() for W in Ws])
    le = bn.log_evidence(ev)
    le = le.reshape(-1) if le.dim() else le.reshape(1).expand(n_rows)
    if not close(le, Z.log()):
        fails.append(f"{tag}: log_evidence {le.tolist()} != {Z.log().tolist()}")
    if not bool((Z > 0).all()):
        expect_refused(bn, ev, fails, tag)
        return
    fully = {v for v, t in ev.items() if not isinstance(t, Likelihood) and bool((t >= 0).all())}
    check_posteriors(bn, names, ev, fully, lambda idx: torch.stack([_marginal(W, idx) for W in Ws]), rng, fails, tag)
    assignment, best = bn.map(ev, return_log_prob=True)
    best = best.reshape(-1) if best.dim() else best.reshape(1).expand(n_rows)
    for r, W in enumerate(Ws):
        at = tuple(int(assignment[v].reshape(-1)[r] if assignment[v].dim() else assignment[v]) for v in names)
        if not W[at] >= W.max() * (1 - 1e-6) or W[at] == 0:
            fails.append(f"{tag} row {r}: MAP {at} has {W[at].item()} < max {W.max().item()}")
        if not close(best[r], W.max().log()):
            fails.append(f"{tag} row {r}: MAP log value {best[r].item()} != {W.max().log().item()}")
        for v, t in ev.items():
            if not isinstance(t, Likelihood):
                e = int(t.reshape(-1)[r] if t.dim() else t)
                if e >= 0 and at[names.index(v)] != e:
                    fails.append(f"{tag} row {r}: MAP ignores the evidence on {v!r}")


def check_case(seed: int, neural: bool = False, grad: bool = True) -> list[str]:
    """Every mismatch of one random net against enumeration, each message naming ``seed`` (empty: all agree).

    ``grad=False`` runs the queries under :func:`torch.no_grad`: the answers need not be differentiable, so the
    marginals of large contractions come from the hand-written reverse pass
    (:func:`~hybridpgm.graphs.reverse_pass.value_and_gradients`) even where the tables are parameters."""
    if not grad:
        with torch.no_grad():
            return check_case(seed, neural)
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    bn, names, cards, parents, tables = make_bn(rng, g, neural)
    J = joint(names, cards, parents, tables)
    fails: list[str] = []
    for q in range(rng.randint(2, 5)):
        ev, lam = rand_evidence(rng, g, names, cards, rng.randint(1, 6))
        if ev:
            _check_query(bn, names, ev, [weighted(J, names, row) for row in lam], rng, fails,
                         f"seed {seed} query {q} (nodes {names}, parents {parents}, evidence {ev})")
    return fails


def check_edits_case(seed: int, grad: bool = True) -> list[str]:
    """A random net queried, then one CPD edited three times between queries of the same shape (``logits.copy_``
    under ``no_grad``, a new ``Table`` put in ``bn.cpds``, ``load_state_dict``, ``.data =`` on logits and support),
    every answer checked against enumeration of the *current* tables; then ``log_prob`` of complete rows.
    (The FUZZ audit's ``fuzz_bn3.py``, float64.) ``grad``: as :func:`check_case`'s."""
    if not grad:
        with torch.no_grad():
            return check_edits_case(seed)
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    bn, names, cards, parents, tables = make_bn(rng, g)
    learnable = bn.cpds[names[0]].logits.requires_grad
    ev, lam = rand_evidence(rng, g, names, cards, rng.randint(1, 6))
    fails: list[str] = []
    tag = f"seed {seed} (nodes {names}, parents {parents}, evidence {ev})"
    _check_query(bn, names, ev, [weighted(joint(names, cards, parents, tables), names, r) for r in lam], rng, fails,
                 f"{tag} before the edits")
    for _ in range(3):
        v = rng.choice(names)
        new = rand_table(rng, g, list(tables[v].shape), rng.choice(["plain", "zeros", "det"]))
        how, old = rng.choice(["copy", "replace", "state_dict", "data"]), bn.cpds[v]
        if how == "copy":  # new values on the same support: only the logits change, in place
            new = torch.where(tables[v] > 0, new + 0.1, 0.0)
            new = new / new.sum(-1, keepdim=True)
        table = cpd.Table(new, parents[v], learnable=learnable)
        if how == "copy":
            with torch.no_grad():
                old.logits.copy_(table.logits)
        elif how == "replace":
            bn.cpds[v] = table
        elif how == "state_dict":
            old.load_state_dict(table.state_dict())
        else:
            old.logits.data = table.logits.detach().clone()
            old.support.data = table.support.clone()
        tables[v] = new
        J = joint(names, cards, parents, tables)
        _check_query(bn, names, ev, [weighted(J, names, r) for r in lam], rng, fails, f"{tag} after {how} of {v!r}")
    rows = {v: torch.randint(cards[v], (4,), generator=g) for v in names}
    want = torch.stack([J[tuple(int(rows[v][r]) for v in names)].log() for r in range(4)])
    got = bn.log_prob(rows)
    if not close(got, want):
        fails.append(f"{tag}: log_prob of complete rows {got.tolist()} != {want.tolist()}")
    return fails
