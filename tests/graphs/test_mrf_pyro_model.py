"""MarkovNet.model: the MRF as a Pyro program (:mod:`hybridpgm.graphs.mrf_pyro_model`)."""

import math
import re
import warnings

import pyro
import pytest
import torch

from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer import IWAE
from tests.graphs.mrf_brute_force import brute_force, random_mrf


def test_pyro_model_gives_exact_log_likelihood():
    mrf = random_mrf(7, 4, num_factors=4, dtype=torch.float)
    obs = {mrf.variables[0]: torch.tensor([0, 0, 1 % mrf.cards[mrf.variables[0]]])}
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.loss(lambda: mrf.model(obs), lambda: None)
    log_z = mrf.log_partition()
    log_ze = mrf.log_partition(evidence=obs)
    assert loss == pytest.approx(-float((log_ze - log_z).sum()), abs=1e-4)


def test_pyro_model_fully_observed_matches_log_prob():
    mrf = ising_grid(2, 2, coupling=0.3, field=torch.tensor([0.1, -0.2, 0.3, 0.0]))
    values = {v: torch.tensor([0, 1, 1]) for v in mrf.variables}
    tr = pyro.poutine.trace(mrf.model).get_trace(values)
    assert torch.allclose(tr.log_prob_sum(), mrf.log_prob(values).sum(), atol=1e-5)


# -- Pyro site names of MarkovNet.model ---------------------------------------------------------------
def test_a_factor_named_like_a_variable_serves_queries_and_model_refuses_it_by_name():
    """Factor sites and variable sites share Pyro's namespace: model() raised Pyro's raw 'Multiple sample
    sites named' RuntimeError; now a ModelSpecError naming both, before any site is recorded."""
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("a", ["a"], torch.tensor([0.3, -0.2]))  # a unary potential named after its variable
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.isfinite(mrf.log_partition())  # queries are unaffected
    values = {"a": torch.tensor([0, 1]), "b": torch.tensor([1, 1])}
    tracer = pyro.poutine.trace(mrf.model)
    with pytest.raises(ModelSpecError, match=r"factor 'a' and the variable 'a' would both be the Pyro site 'p/a'"):
        tracer.get_trace(values, prefix="p/")
    assert not tracer.msngr.trace.nodes or set(tracer.msngr.trace.nodes) <= {"_INPUT"}

    fam = MarkovNet({"e[1]": 2, "b": 2}).add_factors("e", [["b"], ["e[1]"]], torch.zeros(2, 2))
    with pytest.raises(ModelSpecError, match=r"factor 1 of the family 'e' \(site 'e\[1\]'\) and the variable"):
        pyro.poutine.trace(fam.model).get_trace({"b": torch.tensor([0, 1])})

    # a valid model keeps its site names: variables, factors, the plate and the -log Z factor
    ok = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], torch.zeros(2, 2))
    ok.add_factors("u", [["a"], ["b"]], torch.zeros(2, 2))
    tr = pyro.poutine.trace(ok.model).get_trace(values, prefix="p/")
    assert [n for n in tr.nodes if not n.startswith("_")] == ["p/data", "p/a", "p/b", "p/ab", "p/u[0]", "p/u[1]",
                                                              "p/log_partition"]
    with pytest.raises(ConfigError, match="MarkovNet.model prefix must be a string"):  # TypeError before
        ok.model(values, prefix=1)


_ZEROS_2x3 = torch.zeros(2, 3, dtype=torch.long)


@pytest.mark.parametrize("values", [{"a": _ZEROS_2x3}, {"a": _ZEROS_2x3, "b": _ZEROS_2x3},
                                    {"a": torch.tensor([0, 1]), "b": torch.zeros(1, 2, dtype=torch.long)}])
def test_model_names_values_of_more_than_one_batch_dimension(values):
    """Before: a raw IndexError from the factors' indexing (or Pyro's plate shape mismatch) where the docstring
    promises ModelSpecError."""
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.randn(2, 3))
    deep = {v: tuple(x.shape) for v, x in values.items() if x.dim() > 1}
    with pytest.raises(ModelSpecError, match=rf"needs at most one batch dimension, got values of shapes "
                                             rf"{re.escape(str(deep))}"):
        pyro.poutine.trace(mrf.model).get_trace(values)


def test_model_trains_under_jit_trace_enum_elbo_as_under_trace_enum_elbo():
    """Under torch.jit.trace a size is a 0-d tensor: the row-count check compared two 4s as different tensors
    and refused every step with two observed variables (a false EvidenceError)."""
    import warnings

    from pyro.infer import SVI, JitTraceEnum_ELBO, TraceEnum_ELBO

    values = {"a": torch.tensor([0, 1, 1, 1]), "b": torch.tensor([1, 1, 1, 0])}
    losses = {}
    for elbo in (TraceEnum_ELBO, JitTraceEnum_ELBO):
        pyro.clear_param_store()
        mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
        mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.zeros(2, 2)))
        mrf.add_factor("bc", ["b", "c"], torch.nn.Parameter(torch.zeros(2, 2)))
        svi = SVI(mrf.model, lambda v: None, pyro.optim.Adam({"lr": 0.1}), elbo(max_plate_nesting=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            losses[elbo] = [svi.step(values) for _ in range(5)]
    pyro.clear_param_store()
    assert losses[JitTraceEnum_ELBO] == pytest.approx(losses[TraceEnum_ELBO], rel=1e-5)
    assert losses[TraceEnum_ELBO][-1] < losses[TraceEnum_ELBO][0]


def test_model_marks_every_variable_site_a_placeholder_that_points_to_distribution():
    """Before: the sites were unmarked, so ``from_pyro_svi`` took a placeholder ``Categorical(logits=0)`` for the
    variable's likelihood."""
    from hybridpgm.graphs.mrf_pyro_model import PLACEHOLDER

    mrf = ising_grid(2, 2, coupling=0.3)
    values = {mrf.variables[0]: torch.tensor([0, 1, 1])}
    tr = pyro.poutine.trace(mrf.model).get_trace(values, prefix="m/")
    marked = {n for n, s in tr.nodes.items() if s["type"] == "sample" and PLACEHOLDER in s["infer"]}
    assert marked == {"m/" + v for v in mrf.variables}
    assert all("mrf.distribution" in tr.nodes["m/" + v]["infer"][PLACEHOLDER] for v in mrf.variables)
    assert tr.nodes["m/" + mrf.variables[1]]["infer"]["enumerate"] == "parallel"


# -- a context drawn in the same program, under a vectorized ELBO's particle plate ------------------------
class _PairNet(torch.nn.Module):
    """A neural pairwise potential ``[..., d] -> [..., 2, 3]``."""

    def __init__(self, d: int):
        super().__init__()
        self.lin = torch.nn.Linear(d, 6)

    def forward(self, z):
        return self.lin(z).unflatten(-1, (2, 3))


def _latent_context_models(c_latent: bool, N: int = 5, d: int = 2):
    """A MarkovNet ``a - b - c`` (``c`` latent or observed) with neural potentials of a latent ``z`` ``[N, d]``
    drawn in the same program; ``MarkovNet.model``, the same joint written by hand (the 12 joint states scored and
    normalised per particle and row, a latent ``c`` summed out) and a guide for ``z``."""
    torch.manual_seed(0)
    pair, una = _PairNet(d), torch.nn.Linear(d, 2)
    bc = torch.randn(3, 2)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2}).add_factor("ab", ["a", "b"], pair).add_factor("ua", ["a"], una)
    mrf.add_factor("bc", ["b", "c"], bc)
    a, b, c = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([2, 0, 1, 1, 0]), torch.tensor([1, 1, 0, 0, 1])
    loc = torch.randn(N, d)

    def prior():
        with pyro.plate("z_data", N, dim=-1):
            return pyro.sample("z", pyro.distributions.Normal(torch.zeros(N, d), 1.0).to_event(1))

    def model():
        mrf.model({"a": a, "b": b, "c": None if c_latent else c}, context=prior(), prefix="m/")

    def hand():
        z = prior()  # [*S, N, d]
        joint = (pair(z)[..., :, :, None] + una(z)[..., :, None, None] + bc[:, :])  # [*S, N, a, b, c]
        log_z = joint.flatten(-3).logsumexp(-1)
        with pyro.plate("m/data", N, dim=-1):
            rows = joint[..., torch.arange(N), a, b, :]  # [*S, N, c]
            pyro.factor("m/ab", (rows.logsumexp(-1) if c_latent else rows[..., torch.arange(N), c]) - log_z)

    def guide():
        with pyro.plate("z_data", N, dim=-1):
            pyro.sample("z", pyro.distributions.Normal(loc, 1.0).to_event(1))

    return mrf, model, hand, guide


@pytest.mark.parametrize("make_elbo,c_latent", [
    (lambda: pyro.infer.TraceEnum_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1), True),
    (lambda: pyro.infer.Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1), False),
    (lambda: IWAE(num_particles=4, max_plate_nesting=1), False),
], ids=["vectorized TraceEnum_ELBO, c enumerated", "vectorized Trace_ELBO", "IWAE"])
def test_model_takes_a_context_with_the_particle_dims_in_front_as_a_hand_written_model(make_elbo, c_latent):
    """A latent ``z`` ``[S, N, d]`` drawn under a vectorized ELBO's particle plate as the context: each particle's
    rows are scored with that particle's context and normalised by its own log Z.  Before: ModelSpecError 'needs
    at most one batch dimension, got tables of [4] rows (the tables' batch shape is (4, 5))'."""
    mrf, model, hand, guide = _latent_context_models(c_latent)
    losses = []
    for m in (model, hand):
        pyro.set_rng_seed(3)
        losses.append(make_elbo().loss(m, guide))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)

    # the per-particle, per-row sites under the particle plate: tables [S, N], log Z [S, N]
    pyro.set_rng_seed(3)
    with pyro.plate("particles", 4, dim=-2):
        tr = pyro.poutine.trace(pyro.poutine.enum(model, first_available_dim=-3)).get_trace()
    assert tr.nodes["m/log_partition"]["fn"].batch_shape == (4, 5)
    assert tr.nodes["m/ua"]["fn"].batch_shape == (4, 5)
    assert tr.nodes["m/ab"]["fn"].batch_shape == (4, 5)
    z = tr.nodes["z"]["value"]  # [4, 5, 2]: a log Z per particle and row, that of the brute-force sum
    log_z, _ = brute_force(mrf, batch_dims=2, context=z)
    assert torch.allclose(math.log(12) - tr.nodes["m/log_partition"]["fn"].log_factor, log_z, atol=1e-5)
    assert not torch.allclose(log_z[0], log_z[1])


def test_model_names_tables_of_more_batch_dims_than_the_program_claims():
    """An ``[S, N, d]`` context outside any particle plate: a ModelSpecError naming the context's shape and the
    dims the model takes, and pointing to mrf.distribution (before: 'got tables of [4] rows', the particles read
    as rows)."""
    mrf = MarkovNet({"a": 2}).add_factor("ua", ["a"], torch.nn.Linear(2, 2))
    with pytest.raises(ModelSpecError, match=r"from a context of shape \(4, 5, 2\)\) have batch shape \(4, 5\), but "
                                             r"the model takes at most 1 batch dim.*mrf\.distribution"):
        pyro.poutine.trace(mrf.model).get_trace({"a": torch.zeros(5, dtype=torch.long)}, context=torch.randn(4, 5, 2))


def test_a_frozen_potential_network_is_not_warned_of_at_every_call():
    """pyro.module("markov_net", mrf) warned once per frozen parameter at every run of the model ("... was not
    registered in the param store because requires_grad=False"); the trainable ones keep their names."""
    torch.manual_seed(0)
    frozen, trained = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Unflatten(-1, (2, 2))), torch.nn.Linear(3, 2)
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], frozen).add_factor("a_f", ["a"], trained)
    frozen.requires_grad_(False)
    values = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([1, 0, 1])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
            for _ in range(2):
                pyro.poutine.trace(mrf.model).get_trace(values, context=torch.randn(3, 3))
            store = dict(pyro.get_param_store().items())
    assert [str(w.message) for w in caught if "not registered in the param store" in str(w.message)] == []
    assert sorted(store) == ["markov_net$$$potentials.a_f.bias", "markov_net$$$potentials.a_f.weight"]
    assert store["markov_net$$$potentials.a_f.weight"] is trained.weight and not frozen[0].weight.requires_grad


class _NeuralTable(torch.nn.Module):
    """A neural potential returning its learnable ``[2, 2]`` table."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(2, 2))

    def forward(self):
        return self.table


@pytest.mark.parametrize("method", ["exact", "bp", "mean_field"])
@pytest.mark.parametrize("bad", ["stored", "neural"])
def test_fit_names_the_factor_whose_table_is_nan_under_pyros_defaults(bad, method):
    """Fails on the old code for a stored table: inside fit's step its check waits for the step's read, and Pyro's
    validation of the factor's ``Unit`` raised first, ``ValueError: Expected parameter log_factor ... to satisfy
    the constraint Real()``, naming no factor (a neural table, read at once before, is a guard: its check now
    waits for that read too).  The factor sites no longer validate what the tables' check has checked.  With an
    approximate log Z the NaN met belief propagation's or mean field's own check, which raised its message (NaN
    messages "overflow", no finite field) before the step's read: the reviewed code did so for both tables (the
    code before it for a stored one); the failed table check now comes first."""
    import hybridpgm
    from hybridpgm import SVIObjective

    mrf = MarkovNet({"a": 2, "b": 2, "c": 2}).add_factor("ab", ["a", "b"], _NeuralTable())
    mrf.add_factor("bc", ["b", "c"], torch.nn.Parameter(torch.zeros(2, 2)))
    with torch.no_grad():
        (mrf.potentials["ab"].table if bad == "neural" else mrf.table_potentials.table("bc"))[1, 0] = math.nan
    rows = torch.randint(0, 2, (16, 3), generator=torch.Generator().manual_seed(0))
    objective = SVIObjective(lambda r: mrf.model({"a": r[:, 0], "b": r[:, 1], "c": r[:, 2]}, log_z_method=method),
                             lambda r: None, module=mrf)
    with warnings.catch_warnings(), pytest.raises(
            ModelSpecError, match=f"factor '{'ab' if bad == 'neural' else 'bc'}' has non-finite log-potentials"):
        warnings.simplefilter("ignore")  # Pyro's "Encountered NaN" warnings of the step before its read
        hybridpgm.fit(objective, rows, batch_size=8, max_steps=2, seed=0, progress=False)
