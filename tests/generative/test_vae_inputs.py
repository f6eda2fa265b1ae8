"""What the VAE does with bad input: dtypes, NaN batches, (x, labels) tuples."""

import pyro
import pytest
import torch
from torch.utils.data import Dataset

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.data.validation import batch_origin
from hybridpgm.errors import ConfigError, DataError


@pytest.fixture
def binary():
    return torch.bernoulli(torch.full((12, 6), 0.4), generator=torch.Generator().manual_seed(0))


def _loss(vae, *args):
    pyro.set_rng_seed(0)
    return pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, *args)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64])
def test_exact_dtypes_are_converted_to_the_model_dtype(binary, dtype):
    torch.manual_seed(0)
    vae = VAE(6, 2, (8,))
    torch.testing.assert_close(_loss(vae, binary.to(dtype)), _loss(vae, binary))
    assert vae.reconstruct(binary.to(dtype)).dtype == torch.float32


def test_float64_data_for_a_float32_model_is_refused_naming_both_dtypes(binary):
    vae = VAE(6, 2, (8,))
    with pytest.raises(DataError, match=r"VAE argument 'x' has dtype torch.float64.*computes in torch.float32"):
        _loss(vae, binary.double())
    # and accepted by a float64 model
    assert _loss(VAE(6, 2, (8,)).double(), binary.double()).dtype == torch.float64


def test_nan_batch_names_the_data_and_the_step(binary):
    vae = VAE(6, 2, (8,), likelihood="gaussian")
    bad = binary.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(DataError, match=r"VAE argument 'x' \(shape \(12, 6\)\) holds 1 NaN/inf.*row 3"):
        _loss(vae, bad)
    with batch_origin("training data, step 4"):
        with pytest.raises(DataError, match=r"VAE argument 'x' \(training data, step 4\).*1 NaN/inf"):
            _loss(vae, bad)


class _NanAtRow(Dataset):
    """Rows are made when read (as a transform would), so fit's up-front scan cannot see the NaN."""

    def __init__(self, x, row):
        self.x, self.row = x, row

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] * float("nan") if i == self.row else self.x[i]


def test_nan_batch_inside_fit_is_a_data_error_not_a_pyro_error(binary):
    vae = VAE(6, 2, (8,), likelihood="gaussian")
    with pytest.raises(DataError, match=r"VAE argument 'x'.*NaN/inf"):
        fit(SVIObjective(vae.model, vae.guide), _NanAtRow(binary, 5), epochs=1, batch_size=4, shuffle=False,
            progress=False, seed=0)


def test_an_x_labels_tuple_is_refused_not_taken_as_num_data(binary):
    vae = VAE(6, 2, (8,))
    labels = torch.arange(12)
    objective = SVIObjective(vae.model, vae.guide)
    with pytest.raises(DataError, match=r"tensor of shape \(12,\).*num_data.*\(x, labels\) tuple"):
        objective.loss("elbo", (binary, labels))
    with pytest.raises(DataError, match=r"\(x, labels\)"):
        _loss(vae, (binary, labels))
    assert torch.isfinite(_loss(vae, binary, 100))  # an int num_data still scales the plate


def test_bernoulli_model_names_nan_as_nan_and_non_binary_as_such(binary):
    vae = VAE(6, 2, (8,))
    bad = binary.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError, match=r"VAE argument 'x' \(shape \(12, 6\)\) holds 1 NaN/inf"):
        vae.model(bad)
    with pytest.raises(DataError, match="Bernoulli likelihood needs binary data"):
        vae.model(binary * 0.5)


@pytest.mark.parametrize("x, expected", [
    # one example (6,) is refused as such: tests/generative/test_vae_batch_shapes.py
    (torch.zeros(5), r"has shape \(5,\), expected \(batch, 6\) or \(\.\.\., batch, 6\)"),
    (torch.zeros(2, 3, 5), r"has shape \(2, 3, 5\), expected \(batch, 6\) or \(\.\.\., batch, 6\)"),
])
def test_the_guide_still_names_wrong_shapes_with_leading_dimensions_allowed(x, expected):
    vae = VAE(6, 2, (8,))
    with pytest.raises(DataError, match=r"VAE argument 'x' " + expected):
        vae.guide(x)
    with pytest.raises(DataError, match=r"VAE argument 'x' has shape \(2, 4, 6\), expected \(batch, 6\)$"):
        vae.model(torch.zeros(2, 4, 6))  # the model takes batch x D only (the evaluation methods any [..., D])
    with pytest.raises(DataError, match=r"empty batch"):
        vae.guide(torch.zeros(2, 0, 6))


def test_batch_norm_with_a_training_batch_of_one_is_a_config_error(binary):
    vae = VAE(6, 2, (8,), batch_norm=True)
    with pytest.raises(ConfigError, match=r"VAE\(batch_norm=True\) got a training batch of one row "
                                          r"\(training data, step 0, player 'elbo'\).*drop_last=True"):  # batch of 1
        fit(SVIObjective(vae.model, vae.guide), binary, epochs=1, batch_size=1, shuffle=False, progress=False, seed=0)
    # an epoch's last batch of one: refused at step 0 by fit (hybridpgm/train/one_row_batches.py), at step 1 before
    with pytest.raises(ConfigError, match=r"fit: the data's 12 examples in batches of batch_size=11 end each epoch "
                                          r"with a batch of 1 row, but batch norm layer '(en|de)coder\.1'.*drop_last"):
        fit(SVIObjective(vae.model, vae.guide), binary, epochs=1, batch_size=11, shuffle=False, progress=False, seed=0)
    with pytest.raises(ConfigError, match=r"batch of one row .*decoder's input has shape \(1, 2\)"):
        vae.sample(1)
    vae.eval()  # the running statistics serve a single row
    assert torch.isfinite(_loss(vae, binary[:1])) and vae.sample(1).shape == (1, 6)


def test_data_conditioned_through_pyro_is_validated_as_the_likelihood_s_support():
    """``poutine.condition(vae.model, {"x": grey})`` with ``vae.model(None)`` puts the data past the model's own
    check: Pyro's support check of the Bernoulli likelihood refuses them (before, the Bernoulli site was built
    unvalidated, and non-binary data scored a log density, -22.9 for a grey 4 x 5 batch, without a word), as the
    Gaussian likelihood's refuses a NaN."""
    torch.manual_seed(0)
    grey = torch.full((4, 5), 0.5)
    conditioned = pyro.poutine.condition(VAE(5, 2, (8,)).model, {"x": grey})
    with pytest.raises(ValueError, match="Expected value argument.*support"):
        pyro.poutine.trace(conditioned).get_trace(None, num_data=4).log_prob_sum()
    nan = pyro.poutine.condition(VAE(5, 2, (8,), likelihood="gaussian").model, {"x": torch.full((4, 5), float("nan"))})
    with pytest.raises(ValueError, match="Expected value argument.*support"):
        pyro.poutine.trace(nan).get_trace(None, num_data=4).log_prob_sum()
    binary = pyro.poutine.condition(VAE(5, 2, (8,)).model, {"x": grey.round()})
    assert torch.isfinite(pyro.poutine.trace(binary).get_trace(None, num_data=4).log_prob_sum())


class _ListRows(Dataset):
    """Examples as Python lists (or tuples) of numbers: torch's default_collate makes one tensor per feature."""

    def __init__(self, x, kind=list):
        self.x, self.kind = x, kind

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.kind(self.x[i].tolist())


@pytest.mark.parametrize("features", [1, 2, 6])
@pytest.mark.parametrize("kind", [list, tuple])
@pytest.mark.parametrize("elbo", ["direct", "trace"])
def test_a_dataset_of_lists_of_numbers_is_a_data_error_naming_the_per_feature_batch(binary, features, kind, elbo):
    # the direct path (SVIObjective's default) and Trace_ELBO's traced programs alike; D >= 3 was a raw
    # TypeError of the positional arguments, D <= 2 a shape error that did not say why
    vae = VAE(features, 2, (8,))
    objective = SVIObjective(vae.model, vae.guide, None if elbo == "direct" else pyro.infer.Trace_ELBO())
    with pytest.raises(DataError, match=rf"VAE\.(direct_elbo_loss|guide) got {features} tensor\(s\) of shape \(4,\) "
                       r"as its positional arguments \(training data.*one per feature: the batch of a Dataset whose "
                       r"__getitem__ returns a list or tuple of numbers.*torch.tensor\(values"):
        fit(objective, _ListRows(binary[:, :features], kind), epochs=1, batch_size=4, progress=False)


@pytest.mark.parametrize("method", ["model", "guide", "direct_elbo_loss"])
def test_positional_arguments_after_num_data_are_a_data_error(binary, method):
    vae = VAE(6, 2, (8,))
    labels = torch.zeros(12)
    with pytest.raises(DataError, match=rf"VAE\.{method}\(x, num_data, \.\.\.\) got 1 positional argument\(s\) "
                                        r"after num_data=12"):
        getattr(vae, method)(binary, 12, labels)
