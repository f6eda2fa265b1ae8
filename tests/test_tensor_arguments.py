"""A NumPy array, pandas object or list given to a tensor-only argument is refused by name, type, shape and dtype,
with the call that makes a tensor of it (:mod:`hybridpgm.tensor_arguments`); nothing is converted silently.

Before, the messages printed the type where the shape belongs ("train_x has shape ndarray, expected (N, ...)",
"series has shape ndarray") and never said that a tensor was needed."""

import re

import numpy as np
import pytest
import torch

from hybridpgm.data.timeseries import make_windows, split_series
from hybridpgm.energy import DBM, RBM
from hybridpgm.energy.annealing import base_rate_bias
from hybridpgm.energy.finetune import ClassificationObjective
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.generative.gan import MLPDiscriminator
from hybridpgm.generative.sbn import SigmoidBeliefNet
from hybridpgm.generative.sbn_gibbs import SBNGibbs
from hybridpgm.gp import DeepKernelGP
from hybridpgm.tensor_arguments import described_value, require_tensor

Z = np.zeros((50, 64))


def test_require_tensor_names_what_was_given_and_the_conversion():
    t = torch.zeros(2)
    assert require_tensor(t, "x") is t
    pd = pytest.importorskip("pandas")
    cases = [
        (Z, r"train_x is a numpy\.ndarray of shape \(50, 64\) and dtype float64, not a torch\.Tensor: "
            r"pass torch\.as_tensor\(train_x\)$"),
        (pd.Series([1.0, 2.0]), r"train_x is a pandas\.\S*Series of shape \(2,\) and dtype float64, not a "
                                r"torch\.Tensor: pass torch\.as_tensor\(train_x\.to_numpy\(\)\)$"),
        ([1.0, 2.0, 3.0], r"train_x is a list of length 3, not a torch\.Tensor: pass torch\.tensor\(train_x\)$"),
        (2.5, r"train_x is a float, not a torch\.Tensor: pass torch\.tensor\(train_x\)$"),
        (None, r"train_x is None: pass a torch\.Tensor$"),
    ]
    for value, message in cases:
        with pytest.raises(DataError, match=message):
            require_tensor(value, "train_x")
    with pytest.raises(ModelSpecError, match=r"RBM visible data 'v' is a tuple of length 1, .*torch\.tensor\(v\)"):
        require_tensor((1,), "RBM visible data 'v'", arg="v", error=ModelSpecError)
    assert described_value(np.zeros(3, dtype=np.int8)) == "a numpy.ndarray of shape (3,) and dtype int8"


def test_the_gp_and_series_apis_say_a_tensor_is_needed():
    pd = pytest.importorskip("pandas")
    x = torch.as_tensor(Z, dtype=torch.float32)
    y = torch.zeros(50)
    with pytest.raises(DataError, match=r"train_x is a numpy\.ndarray of shape \(50, 64\) and dtype float64, "
                                        r"not a torch\.Tensor: pass torch\.as_tensor\(train_x\)"):
        DeepKernelGP(Z, y)
    with pytest.raises(DataError, match=r"train_y is a pandas\.\S*Series of shape \(50,\)"):
        DeepKernelGP(x, pd.Series(y.numpy()))
    for call in (lambda: make_windows(Z[:, 0], 12), lambda: split_series(Z[:, 0], 24)):
        with pytest.raises(DataError, match=r"series is a numpy\.ndarray of shape \(50,\) and dtype float64, not a "
                                            r"torch\.Tensor: pass torch\.as_tensor\(values\)"):
            call()


def test_the_energy_and_generative_apis_say_a_tensor_is_needed():
    v = np.zeros((2, 4))
    array = r"is a numpy\.ndarray of shape \(2, 4\) and dtype float64, not a torch\.Tensor"
    rbm = RBM(4, 3)
    with pytest.raises(DataError, match=rf"RBM visible data 'v' {array}: pass torch\.as_tensor\(v\)"):
        rbm.check_visible(v)
    with pytest.raises(DataError, match=r"RBM hidden states 'h' is a list of length 2"):
        rbm.check_hidden([0.0, 1.0])
    with pytest.raises(DataError, match=rf"RBM\.gibbs start states 'v' {array}"):
        rbm.gibbs(v)
    dbm = DBM([4, 3])
    with pytest.raises(DataError, match=rf"DBM visible data 'v' {array}"):
        dbm.check_visible(v)
    with pytest.raises(DataError, match=rf"DBM layer 0 {array}: pass torch\.as_tensor\(x\[0\]\)"):
        dbm.check_state([v, torch.zeros(2, 3)])
    with pytest.raises(DataError, match=rf"AIS base-rate data {array}"):
        base_rate_bias(v, torch.zeros(4))
    classifier = ClassificationObjective(torch.nn.Linear(4, 2))
    with pytest.raises(DataError, match=rf"ClassificationObjective input 'x' {array}"):
        classifier.loss("model", (v, torch.zeros(2, dtype=torch.long)))
    with pytest.raises(DataError, match=r"ClassificationObjective labels 'y' is a list of length 2"):
        classifier.loss("model", (torch.zeros(2, 4), [0, 1]))
    with pytest.raises(DataError, match=rf"MLPDiscriminator input 'x' {array}: pass torch\.as_tensor\(x\)"):
        MLPDiscriminator(4)(v)
    gibbs = SBNGibbs(SigmoidBeliefNet([4, 3]))
    with pytest.raises(DataError, match=rf"SBNGibbs\.sweep: x {array}"):
        gibbs.sweep(v, [torch.zeros(2, 3)])
    with pytest.raises(DataError, match=r"SBNGibbs\.sweep: hs\[0\] \(layer h1\) is a numpy\.ndarray .*"
                                        r"torch\.as_tensor\(hs\[0\]\)"):
        gibbs.sweep(torch.zeros(2, 4), [np.zeros((2, 3))])


def test_the_suggested_conversion_names_the_argument():
    with pytest.raises(DataError, match=r"MLPGenerator noise 'z' is a list of length 2, .*pass torch\.tensor\(z\)$"):
        require_tensor([0.0, 1.0], "MLPGenerator noise 'z'")
    with pytest.raises(DataError, match=r"pass torch\.as_tensor\(x\)$"):
        require_tensor(Z, "hs[0] (layer h1)")


def test_the_gp_lstm_hmm_and_adversarial_apis_say_a_tensor_is_needed():
    """The same refusal where fix_interop's list left it to the lead: GPLSTM's windows, hmm_posterior's symbols,
    a GAN's or AAVAE's data, InfoGAN.code_log_prob, ADA.paired_data."""
    from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm
    from hybridpgm.generative import VAE
    from hybridpgm.generative.gan import MLPGenerator
    from hybridpgm.gp import GPLSTM
    from hybridpgm.infer.adversarial import ADA, AAVAE, GAN, InfoGAN

    torch.manual_seed(0)
    gan = GAN(MLPGenerator(4, (2,), (8,)), MLPDiscriminator((2,), (8,)))
    info = InfoGAN(MLPGenerator(4 + 3 + 2, (2,), (8,)), MLPDiscriminator((2,), (8,)),
                   MLPDiscriminator(2, (8,), out_dim=5), num_categories=3, num_continuous=2)
    aavae = AAVAE(VAE(6, z_dim=2, hidden=(8,)), MLPDiscriminator(6, (8,)))
    hmm = random_hmm(2, 3, generator=torch.Generator().manual_seed(0))
    calls = [(lambda: GPLSTM(np.zeros((6, 3, 1)), torch.zeros(6)), r"GPLSTM train_x is a numpy\.ndarray of shape "
              r"\(6, 3, 1\) and dtype float64, not a torch\.Tensor: pass torch\.as_tensor\(train_x\)$"),
             (lambda: hmm_posterior(hmm, [[0, 1]]), r"hmm_posterior: x is a list of length 1, not a torch\.Tensor"),
             (lambda: gan.real(np.zeros((5, 2))), r"GAN data is a numpy\.ndarray of shape \(5, 2\)"),
             (lambda: aavae.real(np.zeros((5, 6))), r"AAVAE data is a numpy\.ndarray of shape \(5, 6\)"),
             (lambda: info.code_log_prob(np.zeros((5, 2)), torch.zeros(5, dtype=torch.long), torch.zeros(5, 2)),
              r"InfoGAN\.code_log_prob x is a numpy\.ndarray"),
             (lambda: ADA.paired_data(np.zeros((4, 2)), torch.zeros(4), torch.zeros(3, 2)),
              r"ADA\.paired_data x_source is a numpy\.ndarray of shape \(4, 2\) and dtype float64, not a "
              r"torch\.Tensor: pass torch\.as_tensor\(x_source\)$"),
             (lambda: ADA.paired_data(torch.zeros(4, 2), [0, 1, 0, 1], torch.zeros(3, 2)),
              r"ADA\.paired_data y_source is a list of length 4, not a torch\.Tensor")]
    for call, message in calls:
        with pytest.raises(DataError, match=message):
            call()


def test_a_dataset_or_loader_gets_advice_that_works():
    """INPUTS audit (session 39, finding 6): a Dataset (``training_data(load_dataset(..., binarize="dynamic"))``,
    what the README hands ``fit``) given to ``DBN.pretrain`` or ``RBM.free_energy`` was told "pass
    torch.tensor(data)", which raises "only one element tensors can be converted".  The advice now names a call
    that makes the tensor."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    from hybridpgm.data.binarize import DynamicBinarized
    from hybridpgm.energy import DBN

    class Rows(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((64,), float(i % 2))

    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))  # grey levels; binary for the RBM below
    for data, advice in ((TensorDataset(x.round()), "v.tensors[0]"),
                         (Rows(), "torch.stack([v[i] for i in range(len(v))])")):
        with pytest.raises(DataError, match=r"RBM visible data 'v' is a \S+, not a torch\.Tensor: pass " +
                                            re.escape(advice)):
            RBM(64, 8).free_energy(data)
        made = eval(advice, {"torch": torch, "v": data})  # the advice works: the examples as one tensor
        rows = x.round() if isinstance(data, TensorDataset) else torch.stack([data[i] for i in range(3)])
        assert torch.equal(made, rows)
        assert RBM(64, 8).free_energy(made).shape == (len(data),)
    with pytest.raises(DataError, match=r"DynamicBinarized, not a torch\.Tensor: pass data\.x, its grey levels "
                                        r"in \[0, 1\] \(to a model built with probabilities=True\), or one fixed "
                                        r"binarization, torch\.bernoulli\(data\.x\)"):
        DBN([64, 8]).pretrain(DynamicBinarized(x), max_steps=1)
    with pytest.raises(DataError, match=r"DataLoader, not a torch\.Tensor: pass the tensor behind v\.dataset"):
        RBM(64, 8).free_energy(DataLoader(TensorDataset(x)))
