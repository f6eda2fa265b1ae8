import math

import pyro
import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.infer import NVIL, NVIL_ELBO, NVILBaselines
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import (binary, deterministic_guide_sbn, flat_grads, mc_check,  # noqa: F401
                                             random_sbn, single_thread)


def _setup(seed=0):
    sbn = random_sbn([3, 2, 2], seed, scale=1.0)
    x = binary(2, 3, seed)
    return sbn, x


@pytest.mark.parametrize("num_particles", [1, 3])
def test_nvil_gradient_is_unbiased_up_to_the_normalisation(num_particles):
    """E[gradient] = exact ELBO gradient for theta, and / max(1, sd_l) for layer l of the guide,
    whatever the (frozen) baselines and centring constants are."""
    sbn, x = _setup()
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, num_particles=num_particles)
    baselines = objective.baselines
    with torch.no_grad():
        for p in baselines.parameters():
            p.normal_(0.0, 1.0)
        baselines.mean.copy_(torch.tensor([0.5, -0.3]))
        baselines.var.copy_(torch.tensor([4.0, 9.0]))  # scales 2 and 3
    baselines.eval()  # statistics frozen
    theta, enc1, enc2 = sbn.model_parameters(), list(sbn.encoders[0].parameters()), list(sbn.encoders[1].parameters())
    params = theta + enc1 + enc2
    exact = flat_grads(-bf.elbo(sbn, x).mean(), params)
    n_theta = sum(p.numel() for p in theta)
    n_enc1 = sum(p.numel() for p in enc1)
    exact[n_theta : n_theta + n_enc1] /= 2.0
    exact[n_theta + n_enc1 :] /= 3.0
    batch = x.repeat(2000 // num_particles, 1)
    torch.manual_seed(1)
    estimates = torch.stack([flat_grads(objective.loss("elbo", batch), params) for _ in range(25)])
    mc_check(estimates, exact)


def test_nvil_without_normalisation_matches_pyro_tracegraph_gradient():
    sbn, x = _setup(1)
    params = list(sbn.parameters())
    exact = flat_grads(-bf.elbo(sbn, x).mean(), params)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=0, variance_normalization=False, centering=False)
    batch = x.repeat(2000, 1)
    torch.manual_seed(2)
    estimates = torch.stack([flat_grads(objective.loss("elbo", batch), params) for _ in range(25)])
    mc_check(estimates, exact)


def test_loss_value_is_negative_elbo_and_statistics_update():
    sbn, x = _setup(2)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=3, decay=0.5)
    batch = x.repeat(20000, 1)
    torch.manual_seed(3)
    loss = objective.loss("elbo", batch)
    assert math.isclose(loss.item(), -bf.elbo(sbn, x).mean().item(), abs_tol=0.05)
    b = objective.baselines
    assert not torch.equal(b.mean, torch.zeros(2)) and not torch.equal(b.var, torch.ones(2))
    # decay 0.5: the new mean is half the old (0) plus half the batch mean of the centred signal
    assert (b.var > 0.5).all()
    # the baselines' own loss trains them: psi gets gradients
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in b.parameters())


@pytest.mark.slow
def test_learned_baselines_reduce_gradient_variance():
    sbn, x = _setup(3)
    batch = x.repeat(64, 1)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=8)
    opt = torch.optim.Adam(objective.baselines.parameters(), lr=0.05)
    torch.manual_seed(4)
    for _ in range(150):  # train the baselines only
        opt.zero_grad()
        objective.loss("elbo", batch).backward()
        opt.step()
    objective.baselines.eval()
    plain = NVIL(sbn.model, sbn.guide, hidden_dim=0, variance_normalization=False, centering=False)
    with torch.no_grad():
        for p in plain.baselines.parameters():
            p.zero_()
    phi = sbn.guide_parameters()
    scale = objective.baselines.var.sqrt().clamp(min=1.0)

    def spread(obj, rescale):
        g = torch.stack([flat_grads(obj.loss("elbo", x), phi) for _ in range(300)])
        n1 = sum(p.numel() for p in sbn.encoders[0].parameters())
        g[:, :n1] *= rescale[0]
        g[:, n1:] *= rescale[1]
        return g.var(0).sum()

    assert spread(objective, scale) < 0.7 * spread(plain, torch.ones(2))


def test_nvil_elbo_with_user_baselines_in_the_guide():
    sbn, x = _setup(4)
    elbo = NVIL_ELBO()  # no NVIL baselines: plain TraceGraph_ELBO semantics
    loss = elbo.differentiable_loss(sbn.model, sbn.guide, x)
    assert loss.shape == () and torch.isfinite(loss)
    assert isinstance(elbo.loss(sbn.model, sbn.guide, x), float)


def test_bad_configuration():
    sbn, _ = _setup()
    with pytest.raises(ConfigError, match="player"):
        NVIL(sbn.model, sbn.guide).loss("wake", binary(2, 3, 0))
    with pytest.raises(ConfigError, match="decay"):
        NVILBaselines(["h1"], 3, decay=1.0)
    dotted = NVILBaselines(["s.h1", "s/h2"], 3)  # torch's raw KeyError, then a refusal, before: held escaped now
    assert list(dotted.nets) == ["s.h1", "s/h2"] and "s%2Eh1.0.weight" in dotted.nets.state_dict()
    with pytest.raises(ConfigError, match="sites"):
        NVIL(lambda x: None, lambda x: None, module=torch.nn.Linear(1, 1),
             model_parameters=[], guide_parameters=[])


def test_guide_that_sets_its_own_baseline_is_refused():
    import pyro
    import pyro.distributions as dist

    sbn, x = _setup()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h1", dist.Bernoulli(logits=sbn.encoders[0](x)).to_event(1),
                        infer={"baseline": {"use_decaying_avg_baseline": True}})
            pyro.sample("h2", dist.Bernoulli(logits=torch.zeros(x.shape[0], 2)).to_event(1))

    objective = NVIL(sbn.model, guide, sites=["h1", "h2"], input_dim=3, model_parameters=sbn.model_parameters(),
                     guide_parameters=sbn.guide_parameters(), module=sbn)
    with pytest.raises(ObjectiveError, match="h1"):
        objective.loss("elbo", x)


def test_baselines_follow_the_models_dtype():
    sbn, x = _setup(5)
    sbn.double()
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    assert {p.dtype for p in objective.baselines.parameters()} == {torch.float64}
    assert objective.baselines.mean.dtype == torch.float64
    loss = objective.loss("elbo", x.double())
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    result = hybridpgm.fit(objective, x.double().repeat(4, 1), epochs=1, batch_size=4, progress=False,
                           device="cpu", seed=0)
    assert all(math.isfinite(v) for v in result.history.loss["elbo"])
    # converted after construction: the model alone (the baselines follow), or the objective's module
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    sbn.float()
    assert objective.loss("elbo", x).dtype == torch.float32
    assert {p.dtype for p in objective.baselines.parameters()} == {torch.float32}
    objective.module.double()
    assert objective.loss("elbo", x.double()).dtype == torch.float64


def test_baselines_read_the_data_as_the_model_does():
    sbn, x = _setup(6)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    torch.manual_seed(0)
    as_bool = objective.loss("elbo", x.bool())
    torch.manual_seed(0)
    torch.testing.assert_close(as_bool, objective.loss("elbo", x))
    with pytest.raises(DataError, match=r"NVIL baseline input \(the guide's first argument\) has dtype "
                                        r"torch.float64, the model computes in torch.float32"):
        objective.loss("elbo", x.double())


def test_guessing_the_plate_nesting_with_vectorized_particles_leaves_no_mark_and_no_pyro_log_line():
    """With several particles NVIL let Pyro guess its plate nesting: a "Guessed max_plate_nesting = 2" line on
    Pyro's logger, and random numbers used up, so a resumed run (which guesses again) drew other particles."""
    import pyro

    from hybridpgm import fit
    from tests.infer.probe_helpers import guessed, pyro_elbo_log, same_state

    x = binary(8, 3, 0)

    def trained(max_plate_nesting):
        with pyro.get_param_store().scope():
            sbn = random_sbn([3, 2, 2], 0, scale=1.0)
            objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, num_particles=3,
                             max_plate_nesting=max_plate_nesting)
            fit(objective, x, epochs=1, batch_size=4, progress=False, device="cpu", seed=0)
        return objective

    with pyro_elbo_log() as records:
        guessing = trained(None)
    given = trained(1)
    assert guessing.elbo.max_plate_nesting == given.elbo.max_plate_nesting == 2
    assert not guessed(records) and same_state(guessing.module, given.module)


def test_plain_svi_trains_the_learned_baselines():
    """Found by an audit: under plain pyro.infer.SVI the baseline networks were never registered with Pyro, so
    SVI's param capture never saw them: they never changed and their .grad grew without bound."""
    import pyro

    from hybridpgm.infer.nvil import BASELINES_MODULE_NAME

    with pyro.get_param_store().scope():
        for run in range(2):  # a second NVIL_ELBO in the same session trains its own baselines, not the first's
            sbn, x = _setup(run)
            torch.manual_seed(run)
            baselines = NVILBaselines(sbn.latent_sites, input_dim=3, hidden_dim=4)
            before = {name: p.detach().clone() for name, p in baselines.named_parameters()}
            svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.Adam({"lr": 0.05}), NVIL_ELBO(baselines))
            for _ in range(3):
                assert math.isfinite(svi.step(x))
            for name, p in baselines.named_parameters():
                assert not torch.equal(before[name], p.detach()), name
                assert p.grad is None or not p.grad.abs().sum(), name  # zeroed by SVI after each step
            store = pyro.get_param_store()
            for site in sbn.latent_sites:
                weight = baselines.nets[site][0].weight
                assert store.param_name(weight) == f"{BASELINES_MODULE_NAME}$$${site}.0.weight"


@pytest.mark.parametrize("frozen", ["all", "one_site"])
def test_plain_svi_with_frozen_baselines_warns_nothing(frozen):
    """Found by a review: frozen baseline parameters (requires_grad=False) were handed to pyro.module, which
    warned once per parameter per step, advising .train(False), a switch that would also stop the baselines'
    running statistics.  Trainable baselines next to frozen ones are still registered and trained."""
    import warnings

    import pyro

    with pyro.get_param_store().scope():
        sbn, x = _setup(0)
        torch.manual_seed(0)
        baselines = NVILBaselines(sbn.latent_sites, input_dim=3, hidden_dim=4)
        frozen_sites = sbn.latent_sites if frozen == "all" else sbn.latent_sites[:1]
        for site in frozen_sites:
            baselines.nets[site].requires_grad_(False)
        before = {name: p.detach().clone() for name, p in baselines.named_parameters()}
        svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.Adam({"lr": 0.05}), NVIL_ELBO(baselines))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                assert math.isfinite(svi.step(x))
        assert not [str(w.message) for w in caught if "registered" in str(w.message)]
        assert baselines.training and baselines.mean.abs().sum() > 0  # running statistics still updated
        for name, p in baselines.named_parameters():
            site = name.split(".")[1] if name.startswith("nets.") else None
            if site in frozen_sites:
                assert torch.equal(before[name], p.detach()), name
            elif site is not None:
                assert not torch.equal(before[name], p.detach()), name
        keys = [k for k in pyro.get_param_store().keys() if "nvil" in k]
        assert all(k.split("$$$")[1].split(".")[0] not in frozen_sites for k in keys)
        assert bool(keys) == (frozen != "all")


def test_fit_steps_the_baselines_once_per_step_and_leaves_no_param_store_entry():
    """Under fit the baselines are parameters of the "elbo" player, stepped once by fit's optimizer (not also
    through Pyro's param store), and neither fit nor a direct call of loss registers them in the user's store."""
    import functools

    import pyro

    from hybridpgm.infer.nvil import BASELINES_MODULE_NAME

    lr = 0.1
    sbn, x = _setup(7)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    params = list(objective.baselines.parameters())
    assert sum(any(p is q for q in objective.players()["elbo"]) for p in params) == len(params)
    assert len({id(p) for p in objective.players()["elbo"]}) == len(objective.players()["elbo"])
    grads = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            grads.append([p.grad.clone() for p in params])
            return super().step(closure)

    before = [p.detach().clone() for p in params]
    hybridpgm.fit(objective, x.repeat(2, 1), epochs=1, batch_size=4, progress=False, device="cpu", seed=0,
                  optim=functools.partial(RecordingSGD, lr=lr))
    assert len(grads) == 1 and all(g.abs().sum() > 0 for g in grads[0])
    for p, b, g in zip(params, before, grads[0]):
        torch.testing.assert_close(p.detach(), b - lr * g)
    objective.loss("elbo", x)
    assert not [name for name in pyro.get_param_store().keys() if name.startswith(BASELINES_MODULE_NAME)]



def _fit_default_sites(make):
    """The default ``sites`` and ``fit``'s per-step losses of ``make(sbn)``, an NVIL objective of a seeded SBN."""
    from hybridpgm.generative import SigmoidBeliefNet

    torch.manual_seed(0)
    objective = make(SigmoidBeliefNet([6, 4, 3]))
    result = hybridpgm.fit(objective, binary(24, 6, 3), epochs=2, batch_size=8, progress=False, device="cpu",
                           seed=0)
    return objective.baselines.sites, result.history.loss["elbo"]


@pytest.mark.parametrize("how", ["model_kwargs", "partial"])
def test_prefixed_sbn_trains_with_default_sites_as_the_unprefixed_one(how):
    """The default sites follow the ``prefix=`` the model and guide are called with (``model_kwargs`` or a
    ``functools.partial`` of both), so a prefixed SBN trains -- before, the unprefixed ``latent_sites`` made the
    first loss an ObjectiveError -- and its losses are the unprefixed run's at the same seed, step for step."""
    import functools

    def partial(sbn):
        return NVIL(functools.partial(sbn.model, prefix="a/"), functools.partial(sbn.guide, prefix="a/"),
                    hidden_dim=5, module=sbn, model_parameters=sbn.model_parameters(),
                    guide_parameters=sbn.guide_parameters())

    def keyword(sbn):
        return NVIL(sbn.model, sbn.guide, hidden_dim=5, model_kwargs={"prefix": "a/"})

    plain_sites, plain = _fit_default_sites(lambda sbn: NVIL(sbn.model, sbn.guide, hidden_dim=5))
    sites, losses = _fit_default_sites(partial if how == "partial" else keyword)
    assert plain_sites == ["h1", "h2"] and sites == ["a/h1", "a/h2"]
    assert len(plain) == 6 and all(math.isfinite(v) for v in plain)
    assert losses == plain


def test_default_sites_refuse_a_bad_or_disagreeing_prefix():
    import functools

    sbn, _ = _setup()
    parameters = {"module": sbn, "model_parameters": sbn.model_parameters(),
                  "guide_parameters": sbn.guide_parameters()}
    with pytest.raises(ConfigError, match=r"model is bound with prefix='a/' and the guide with prefix='b/'"):
        NVIL(functools.partial(sbn.model, prefix="a/"), functools.partial(sbn.guide, prefix="b/"), **parameters)
    with pytest.raises(ConfigError, match=r"NVIL model/guide prefix must be a string.*int 3"):
        NVIL(sbn.model, sbn.guide, model_kwargs={"prefix": 3})
    explicit = NVIL(functools.partial(sbn.model, prefix="a/"), functools.partial(sbn.guide, prefix="b/"),
                    sites=["b/h1"], **parameters)  # explicit sites are taken as given
    assert explicit.baselines.sites == ["b/h1"]


def _micro_updates(baselines, elbo, x, cost, accumulate, steps=3):
    """Drive ``elbo._learning_signal`` as ``fit(accumulate=...)`` does: per step one update scope, the batch
    (``x [B, D]``, per-row ``cost [B]``, shifted each step) split into ``accumulate`` micro-batches.
    Returns the signals and baseline losses of every step and the buffers after each step."""
    from hybridpgm.train.update_scope import one_update

    signals, losses, buffers = [], [], []
    for step in range(steps):
        with one_update():
            parts = [elbo._learning_signal("h", {"infer": {"baseline": {"nn_baseline": baselines.nets["h"],
                                                                          "nn_baseline_input": xs}}}, cs + 3.0 * step)
                     for xs, cs in zip(x.chunk(accumulate), cost.chunk(accumulate))]
        signals.append(torch.cat([s for s, _ in parts]))
        losses.append(sum(l for _, l in parts).detach())
        buffers.append(torch.cat([baselines.mean, baselines.var]).clone())
    return signals, losses, buffers


@pytest.mark.parametrize("accumulate", [4, 16])
def test_micro_batches_of_one_fit_update_share_the_statistics_and_pool_them(accumulate):
    """Under fit's update scope, every micro-batch is centred and scaled with the statistics from before the
    update, and the buffers take one decay step per update with the pooled mean and variance: signals, the
    baselines' loss and the buffers equal those of one micro-batch (accumulate=1), in float64."""
    g = torch.Generator().manual_seed(0)
    x, cost = torch.randn(16, 3, generator=g, dtype=torch.float64), 5.0 * torch.randn(16, generator=g).double()
    runs = []
    for acc in (1, accumulate):
        torch.manual_seed(0)
        baselines = NVILBaselines(["h"], 3, hidden_dim=2, decay=0.6).double()
        with torch.no_grad():
            baselines.mean.fill_(0.5), baselines.var.fill_(4.0)  # the scale max(1, sqrt(v)) = 2 is in play
        runs.append(_micro_updates(baselines, NVIL_ELBO(baselines), x, cost, acc))
    for whole, micro in zip(*runs):
        for a, b in zip(whole, micro):
            torch.testing.assert_close(b, a, rtol=0.0, atol=1e-12)
    assert (runs[0][2][-1][1] > 1.0).all()  # the variance stays above 1: scaling matters at every step


def test_fit_with_accumulate_gives_the_buffers_and_parameters_of_one_micro_batch():
    """fit(batch_size=16) with accumulate 1, 4 and 16 (one-row micro-batches) leaves the same running
    statistics and parameters (float64).  The guide is made deterministic (encoder logits +100) so that
    all runs see the same samples whatever order they draw them in; the baselines' squared-error gradient
    still depends on the centring constant of each micro-batch."""
    import functools

    results = []
    for accumulate in (1, 4, 16):
        sbn = deterministic_guide_sbn()
        torch.manual_seed(0)
        objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, decay=0.5)
        hybridpgm.fit(objective, binary(48, 6, 5).double(), epochs=1, batch_size=16, accumulate=accumulate,
                      progress=False, device="cpu", seed=0, optim=functools.partial(torch.optim.SGD, lr=0.05))
        results.append({k: v.detach().clone() for k, v in objective.module.state_dict().items()})
    assert not torch.equal(results[0]["baselines.mean"], torch.zeros(2, dtype=torch.float64))
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for key, value in results[0].items():
            torch.testing.assert_close(other[key], value, rtol=0.0, atol=1e-12, msg=key)


def test_a_resumed_accumulating_run_ends_with_the_state_of_an_uninterrupted_one(tmp_path):
    """The running statistics are checkpointed; the per-update pooling state is not needed across steps: a
    run with accumulate=4 stopped after 2 steps and resumed ends bitwise as the uninterrupted one."""
    def train(path, max_steps=None):
        sbn = random_sbn([6, 4, 3], 6, scale=1.0)
        torch.manual_seed(0)
        objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
        hybridpgm.fit(objective, binary(64, 6, 6), epochs=1, batch_size=16, accumulate=4, progress=False,
                      device="cpu", seed=0, checkpoint=path, max_steps=max_steps)
        return objective.module.state_dict()

    whole = train(tmp_path / "whole.pt")
    train(tmp_path / "cut.pt", max_steps=2)
    resumed = train(tmp_path / "cut.pt")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not torch.equal(whole["baselines.var"], torch.ones(2))


def test_baselines_pickled_before_the_per_update_statistics_still_train():
    """An NVILBaselines saved whole (pickle) before it kept per-update statistics has none of those attributes;
    fit with accumulation still runs on it."""
    import io

    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.infer import SVIObjective

    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3])
    baselines = NVILBaselines(sbn.latent_sites, 6, hidden_dim=4)
    for name in ("_update", "_before", "_pooled"):
        baselines.__dict__.pop(name, None)  # as unpickled from a file written before they existed
    buffer = io.BytesIO()
    torch.save(baselines, buffer)
    buffer.seek(0)
    old = torch.load(buffer, weights_only=False)
    assert "_update" not in old.__dict__
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    result = hybridpgm.fit(SVIObjective(sbn.model, sbn.guide, NVIL_ELBO(old)), x, batch_size=8, accumulate=2,
                           progress=False, seed=0)
    assert result.steps == 1 and math.isfinite(result.history.loss["elbo"][0])


def test_ranks_pool_their_signals_whatever_order_they_visit_the_sites(monkeypatch):
    """Under fit on 2 ranks (collectives faked: the other rank's tables come from its own calls), one
    ``all_gather`` per ``update`` call pools both ranks' signals, even though the other rank visits the sites
    in the opposite order: the buffers after each update equal one process's on the union batch (float64,
    2 micro-batches per update, 2 updates).  Outside fit no collective runs."""
    from hybridpgm.train.update_scope import one_update

    g = torch.Generator().manual_seed(0)
    # signals[update][micro-batch][rank][site]: per-rank micro-batches of 3 and 5 rows with different scales
    signals = [[[[(2.0 + site) * torch.randn(3 + 2 * rank, generator=g, dtype=torch.float64) + 4.0 * rank
                  for site in range(2)] for rank in range(2)] for _ in range(2)] for _ in range(2)]

    def fresh():
        torch.manual_seed(0)
        return NVILBaselines(["h1", "h2"], 3, hidden_dim=2, decay=0.6).double()

    single, expected = fresh(), []
    for update in signals:
        with one_update():
            for micro in update:
                for site in (0, 1):
                    single.update(f"h{site + 1}", torch.cat([micro[0][site], micro[1][site]]))
        expected.append(torch.cat([single.mean, single.var]).clone())

    other = []  # the tables the other rank sends: it visits h2 before h1
    for update in signals:
        for micro in update:
            for site in (1, 0):
                s = micro[1][site]
                table = torch.zeros(2, 3, dtype=torch.float64)
                table[site] = torch.stack([torch.tensor(float(s.numel()), dtype=torch.float64), s.mean(),
                                           (s - s.mean()).pow(2).sum()])
                other.append(table)
    sent = iter(other)

    def fake_all_gather(tables, local):
        assert len(tables) == 2 and local.shape == (2, 3)
        tables[0].copy_(local)
        tables[1].copy_(next(sent))

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_gather", fake_all_gather)
    ranks = fresh()
    for update, want in zip(signals, expected):
        with one_update():
            for micro in update:
                for site in (0, 1):
                    ranks.update(f"h{site + 1}", micro[0][site])
        torch.testing.assert_close(torch.cat([ranks.mean, ranks.var]), want, rtol=0.0, atol=1e-12)
    assert next(sent, None) is None  # one collective per call
    assert (expected[-1][2:] > 1.5).all()  # the variances moved far from their start
    ranks.update("h1", signals[0][0][0][0])  # outside fit: a step of its own, no collective (none is left)


def _times_a_per_step_warning_shows(make_elbo) -> int:
    """Under Python's default filters, how many of 10 SVI steps show a warning the model raises at every step."""
    import warnings

    from pyro.infer import SVI

    from hybridpgm.generative import SigmoidBeliefNet

    pyro.clear_param_store()
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3])
    x = torch.randint(0, 2, (8, 6)).float()

    def model(x):
        warnings.warn("a note of the user's model")
        return sbn.model(x)

    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        svi = SVI(model, sbn.guide, pyro.optim.Adam({"lr": 1e-3}), make_elbo(sbn))
        for _ in range(10):
            svi.step(x)
    pyro.clear_param_store()
    return sum("a note of the user's model" in s for s in shown)


def test_the_baselines_do_not_make_a_once_shown_warning_show_at_every_step():
    """Before, registering the baselines entered ``warnings.catch_warnings()`` at every step, which resets Python's
    record of the warnings shown: a warning shown once under Pyro's own ELBO showed at all 10 steps."""
    from pyro.infer import TraceGraph_ELBO

    reference = _times_a_per_step_warning_shows(lambda sbn: TraceGraph_ELBO())
    assert 1 <= reference < 10
    assert _times_a_per_step_warning_shows(
        lambda sbn: NVIL_ELBO(NVILBaselines(sbn.latent_sites, input_dim=6, hidden_dim=4))) == reference


def test_options_assigned_after_construction_are_the_elbos_or_refused():
    """Before, ``nvil.variance_normalization = False`` (or ``centering``, ``decay``, ``num_particles``) made a
    new attribute nothing read.  Now the first three are the ELBO's and baselines', validated; num_particles
    (which fixes the vectorized particle plate) is read-only."""
    sbn, _ = _setup()
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=2)
    objective.variance_normalization, objective.centering, objective.decay = False, False, 0.5
    assert (objective.elbo.variance_normalization, objective.elbo.centering, objective.baselines.decay) == \
        (False, False, 0.5)
    for name, value in (("variance_normalization", "no"), ("centering", 1), ("decay", 1.0), ("decay", -0.1)):
        with pytest.raises(ConfigError, match=name):
            setattr(objective, name, value)
    assert objective.num_particles == 1
    with pytest.raises(AttributeError, match=r"NVIL.num_particles is fixed at construction"):
        objective.num_particles = 3
    assert objective.elbo.num_particles == 1
