"""Bad or edge-case input to the Boltzmann machines raises a named hybridpgm error, not a torch one."""

import pytest
import torch

from hybridpgm.energy import DBM, DBN, RBM, ClassificationObjective, ReconstructionObjective
from hybridpgm.energy.annealing import base_rate_bias
from hybridpgm.energy.doubled_rbm import DoubledRBM
from hybridpgm.errors import ConfigError, DataError, DeviceError, ModelSpecError


@pytest.fixture
def v():
    return torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("build, match", [
    (lambda: RBM(True, 3), r"RBM num_visible must be a positive integer, got True"),
    (lambda: RBM(6, 3, visible="gaussian", sigma=float("inf")), r"RBM sigma must be a finite number > 0, got inf"),
    (lambda: RBM(6, 3, sigma="1"), r"RBM sigma must be a finite number > 0, got '1'"),
    (lambda: RBM(6, 3, init_scale=float("nan")), r"RBM init_scale must be a finite number >= 0, got nan"),
    (lambda: DBN([6, True]), r"DBN sizes \[V, H1, \.\.\.\]\[1\] must be a positive integer, got True"),
    (lambda: DBN(6), r"DBN sizes .* must be a sequence of positive integers, got 6"),
    (lambda: DBM([6, 3, True]), r"DBM sizes .*\[2\] must be a positive integer, got True"),
    (lambda: DBM([6, 3], mean_field_steps=True), r"DBM mean_field_steps must be a positive integer, got True"),
    (lambda: DoubledRBM(RBM(6, 3, visible="gaussian")), r"DoubledRBM needs an RBM with Bernoulli visible units"),
    (lambda: DoubledRBM(DBN([6, 3])), r"DoubledRBM needs an RBM with Bernoulli visible units, got DBN"),
])
def test_bad_constructor_arguments_are_model_spec_errors(build, match):
    with pytest.raises(ModelSpecError, match=match):
        build()


def test_doubled_rbm_scales_must_be_finite_positive():
    with pytest.raises(ConfigError, match=r"DoubledRBM up must be a finite number > 0, got nan"):
        DoubledRBM(RBM(6, 3), up=float("nan"))


def test_rbm_hidden_states_are_converted_or_refused_like_visible_data(v):
    rbm = RBM(6, 3)
    h = torch.tensor([[1, 0, 1]] * 4)
    assert torch.equal(rbm.visible(h.bool()).mean, rbm.visible(h.float()).mean)
    assert torch.equal(rbm.energy(v, h), rbm.energy(v, h.float()))
    with pytest.raises(DataError, match=r"RBM hidden states 'h' has dtype torch.float64.*computes in torch.float32"):
        rbm.visible(h.double())
    with pytest.raises(DataError, match=r"RBM.energy: the batch shapes of v \(4, 6\) and h \(3, 3\) do not match"):
        rbm.energy(v, h[:3])


def test_rbm_gibbs_and_sample_arguments(v):
    rbm = RBM(6, 3)
    with pytest.raises(ConfigError, match=r"RBM.gibbs steps must be an integer >= 0, got 1.5"):
        rbm.gibbs(v, 1.5)
    with pytest.raises(ConfigError, match=r"RBM.gibbs steps must be an integer >= 0, got -1"):
        rbm.gibbs(v, -1)
    with pytest.raises(DataError, match=r"RBM.gibbs start states 'v' must have shape \(\.\.\., 6\), got \(4, 5\)"):
        rbm.gibbs(v[:, :5], 1)
    assert rbm.gibbs(v.long(), 1).dtype == torch.float32
    with pytest.raises(ConfigError, match=r"RBM.sample steps must be a positive integer, got True"):
        rbm.sample(2, True)
    with pytest.raises(DataError, match=r"RBM.sample init must have shape \(3, 6\) for num_samples=3, got \(4, 6\)"):
        rbm.sample(3, 2, init=v)


def test_rbm_gibbs_checks_the_given_hidden_sample_as_energy_does(v):
    rbm = RBM(6, 3)
    with pytest.raises(DataError, match=r"RBM hidden states 'h' must have shape \(\.\.\., 3\), got \(4, 4\)"):
        rbm.gibbs(v, 1, h=torch.ones(4, 4))
    with pytest.raises(DataError, match=r"RBM hidden states 'h' has dtype torch.float64.*computes in torch.float32"):
        rbm.gibbs(v, 1, h=torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(DataError, match=r"RBM hidden states 'h' must lie in \[0, 1\]"):
        rbm.gibbs(v, 1, h=torch.full((4, 3), 2.0))
    for rows in (7, 1):  # another batch, or one that would broadcast: v would be ignored
        with pytest.raises(DataError, match=rf"RBM.gibbs hidden sample 'h' has shape \({rows}, 3\), expected the "
                                            r"batch shape of the start states 'v' \(4, 6\): \(4, 3\)"):
            rbm.gibbs(v, 1, h=torch.ones(rows, 3))
    torch.manual_seed(0)
    out = rbm.gibbs(v, 2, h=torch.ones(4, 3, dtype=torch.bool))  # bool converts exactly, as for v
    assert out.shape == (4, 6) and out.dtype == torch.float32


def test_dbm_sample_steps_are_checked_as_rbm_sample_checks_them():
    import numpy as np

    rbm, dbm = RBM(4, 3), DBM([4, 3, 2])
    for model, name in ((rbm, "RBM"), (dbm, "DBM")):
        for steps in (True, 0, 1.5):
            with pytest.raises(ConfigError, match=rf"{name}.sample steps must be a positive integer, got {steps}"):
                model.sample(2, steps=steps)
        assert model.sample(2, steps=np.int64(3)).shape == (2, 4)
    dbn = DBN([4, 3, 2])  # its own name, and integer scalars for num_classes too
    with pytest.raises(ConfigError, match=r"DBN.sample steps must be a positive integer, got True"):
        dbn.sample(2, steps=True)
    assert dbn.sample(2, steps=np.int64(2)).shape == (2, 4)
    assert dbn.to_classifier(np.int64(3))[-1].out_features == 3
    with pytest.raises(ConfigError, match=r"to_classifier needs num_classes >= 2, got True"):
        dbn.to_classifier(True)


def test_log_partition_options(v):
    rbm, dbm = RBM(6, 3), DBM([6, 3, 2])
    for model in (rbm, dbm):
        with pytest.raises(ConfigError, match=r"chunk_size must be a positive integer, got 0"):
            model.log_partition(chunk_size=0)
        with pytest.raises(ConfigError, match=r"log_partition\('exact'\) takes no AIS options, got \['num_chains'\]"):
            model.log_partition("exact", num_chains=3)
    with pytest.raises(ConfigError, match=r"RBM.log_likelihood log_z must be a finite scalar, got nan"):
        rbm.log_likelihood(v, float("nan"))
    with pytest.raises(ConfigError, match=r"DBM.log_likelihood log_z must be a finite scalar, got a tensor of shape"):
        dbm.log_likelihood(v, torch.zeros(3))


def test_empty_batches(v):
    rbm, dbm = RBM(6, 3), DBM([6, 3, 2])
    with pytest.raises(DataError, match=r"RBM.reconstruction_error data 'v' is an empty batch"):
        rbm.reconstruction_error(v[:0])
    assert [m.shape for m in dbm.mean_field(v[:0])] == [(0, 6), (0, 3), (0, 2)]
    assert dbm.log_likelihood_bound(v[:0]).shape == (0,)
    with pytest.raises(DataError, match=r"AIS base-rate data is empty"):
        rbm.annealing_path(v[:0])


def test_ais_base_rate_data_for_bernoulli_units_must_lie_in_0_1(v):
    with pytest.raises(DataError, match=r"AIS base-rate data for Bernoulli units must lie in \[0, 1\]"):
        RBM(6, 3).annealing_path(v * 3)
    RBM(6, 3, visible="gaussian").annealing_path(v * 3)  # real data are fine for Gaussian units


def test_dbm_mean_field_checks_its_data_and_steps(v):
    dbm = DBM([6, 3, 2])
    with pytest.raises(DataError, match=r"DBM visible data 'v' must have shape \(\.\.\., 6\), got \(4, 7\)"):
        dbm.mean_field(torch.zeros(4, 7))
    with pytest.raises(DataError, match=r"DBM visible data 'v' holds NaN"):
        dbm.mean_field(v * float("nan"))
    with pytest.raises(DataError, match=r"DBM visible data 'v' must be binary"):
        dbm.mean_field(v * 3)
    assert dbm.mean_field(v.bool())[1].dtype == torch.float32
    for steps in (0, -1, 1.5):
        with pytest.raises(ConfigError, match=rf"DBM.mean_field steps must be a positive integer, got {steps}"):
            dbm.mean_field(v, steps)


def test_dbm_state_checks(v):
    dbm = DBM([6, 3, 2])
    state = [v, torch.ones(4, 3), torch.zeros(4, 2)]
    assert torch.equal(dbm.energy([s.long() for s in state]), dbm.energy(state))
    with pytest.raises(DataError, match=r"DBM state must be a list of 3 layer tensors .* got a tensor of shape"):
        dbm.energy(v)
    with pytest.raises(DataError, match=r"DBM layer 1 has dtype torch.float64"):
        dbm.energy([v, state[1].double(), state[2]])
    with pytest.raises(DataError, match=r"batch shapes that do not match"):
        dbm.energy([v, state[1][:3], state[2]])
    with pytest.raises(DataError, match=r"DBM layer 0 must hold values in \[0, 1\]"):
        dbm.energy([v * float("nan"), state[1], state[2]])
    # any batch shape is taken (tests/energy/test_dbm_batch_shapes.py); a wrong width is named with the caller's shape
    with pytest.raises(DataError, match=r"DBM.unnormalized_log_prob: v has shape \(2, 4, 5\), expected \(\.\.\., 6\)"):
        dbm.unnormalized_log_prob(v[:, :5].expand(2, 4, 5))
    with pytest.raises(ModelSpecError, match=r"DBM.load_rbms needs Bernoulli RBMs, got \['Linear', 'Linear'\]"):
        dbm.load_rbms([torch.nn.Linear(6, 3), torch.nn.Linear(3, 2)])


def test_dbn_transform_layers_must_name_a_hidden_layer(v):
    dbn = DBN([6, 4, 3])
    assert dbn.transform(v, 1).shape == (4, 4)
    for layers in (0, 3, -1, 1.5, True):
        with pytest.raises(ConfigError, match=r"DBN.transform layers must be"):
            dbn.transform(v, layers)


def test_data_on_another_device_is_a_device_error(v):
    meta = v.to("meta")
    for call in (RBM(6, 3).free_energy, DBM([6, 3]).log_likelihood_bound, DBN([6, 3]).to_autoencoder()):
        with pytest.raises(DeviceError, match=r"is on device meta, the model's parameters on cpu"):
            call(meta)


def test_finetune_objectives_name_bad_batches(v):
    dbn = DBN([6, 4])
    ae = dbn.to_autoencoder()
    with pytest.raises(DataError, match=r"DBNAutoencoder input 'x' must have shape \(batch, 6\), got \(4, 5\)"):
        ae(v[:, :5])
    assert ae(v.long()).shape == (4, 6)
    recon = ReconstructionObjective(ae)
    assert torch.equal(recon.loss("model", v.bool()), recon.loss("model", v))
    with pytest.raises(DataError, match=r"ReconstructionObjective input 'x' is an empty batch"):
        recon.loss("model", v[:0])
    with pytest.raises(DataError, match=r"likelihood='bernoulli'\) needs data in \[0, 1\]"):
        recon.loss("model", v * 3)
    with pytest.raises(DataError, match=r"ReconstructionObjective input 'x' \(shape \(4, 6\)\) holds \d+ NaN"):
        recon.loss("model", torch.where(v.bool(), torch.nan, v))
    clf = ClassificationObjective(dbn.to_classifier(3))
    y = torch.tensor([0, 1, 2, 0])
    assert torch.equal(clf.loss("model", (v, y.int())), clf.loss("model", (v, y)))
    with pytest.raises(DataError, match=r"labels 'y' must be a 1-D integer tensor .* dtype torch.float32"):
        clf.loss("model", (v, y.float()))
    with pytest.raises(DataError, match=r"got 2 labels for 4 rows of x"):
        clf.loss("model", (v, y[:2]))
    with pytest.raises(DataError, match=r"labels 'y' must lie in 0..2 .* found \[5\]"):
        clf.loss("model", (v, torch.tensor([0, 1, 5, 0])))
    with pytest.raises(DataError, match=r"ClassificationObjective input 'x' is an empty batch"):
        clf.loss("model", (v[:0], y[:0]))


@pytest.mark.parametrize("model", [RBM(4, 3), DBM([4, 3, 2])], ids=["RBM", "DBM"])
def test_an_unknown_ais_option_is_named_with_the_known_ones(model):
    """Before, AIS's own TypeError (unexpected keyword argument 'num_chain')."""
    with pytest.raises(ConfigError, match=r"log_partition\('ais'\) got unknown option\(s\) \['num_chain'\]; the AIS "
                                          r"options are \['num_chains', 'num_steps', 'schedule', 'betas', 'data', "
                                          r"'generator'\]"):
        model.log_partition("ais", num_chain=10)


def test_rbm_probabilities_and_dbm_mean_field_tol_are_checked():
    """Before, probabilities="yes" was taken as true and a tol of -1 or NaN ran every sweep without a word."""
    with pytest.raises(ModelSpecError, match="RBM probabilities must be True or False, got 'yes'"):
        RBM(4, 3, probabilities="yes")
    dbm = DBM([4, 3, 2])
    for tol in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="DBM.mean_field tol must be a finite number >= 0"):
            dbm.mean_field(torch.ones(2, 4), tol=tol)


FLAG_VALUES = ["no", "False", 1, None]


@pytest.mark.parametrize("value", FLAG_VALUES)
@pytest.mark.parametrize("call, match", [
    (lambda x, value: DBN([6, 3, 2]).sample(4, steps=1, mean=value), "DBN.sample mean"),
    (lambda x, value: RBM(6, 3).pseudo_log_likelihood(x, exact=value), "RBM.pseudo_log_likelihood exact"),
    (lambda x, value: RBM(6, 3).log_partition(differentiable=value), "RBM.log_partition differentiable"),
    (lambda x, value: DBM([6, 3, 2]).log_partition(differentiable=value), "DBM.log_partition differentiable"),
    (lambda x, value: DBN([6, 3]).pretrain(x, persistent=value, batch_size=2, progress=False),
     "DBN.pretrain persistent"),
    (lambda x, value: RBM(6, 3).annealing_path().step(x, 0.0, 0.5, transition=value),
     "RBMAnnealingPath.step transition"),
    (lambda x, value: DBM([6, 3, 2]).annealing_path().step([x, torch.zeros(4, 3), torch.zeros(4, 2)], 0.0, 0.5,
                                                           transition=value), "DBMAnnealingPath.step transition"),
    (lambda x, value: base_rate_bias(x, torch.zeros(6), gaussian=value), "base_rate_bias gaussian"),
], ids=["DBN.sample", "RBM.pseudo_log_likelihood", "RBM.log_partition", "DBM.log_partition", "DBN.pretrain",
        "RBMAnnealingPath.step", "DBMAnnealingPath.step", "base_rate_bias"])
def test_on_off_method_options_must_be_true_or_false(v, call, match, value):
    """Before, a string such as 'False' or 'no' was truthy and switched the option on, and 1 or None passed."""
    with pytest.raises(ConfigError, match=f"{match} must be True or False, got {value!r}"):
        call(v, value)


@pytest.mark.parametrize("value", FLAG_VALUES)
def test_dbm_probabilities_must_be_true_or_false(value):
    """Before, DBM stored 'no' (truthy) and accepted grey-level data; RBM and DBN refused it already."""
    with pytest.raises(ModelSpecError, match=f"DBM probabilities must be True or False, got {value!r}"):
        DBM([6, 3], probabilities=value)
