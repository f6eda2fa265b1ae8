"""What the refusal of positional arguments after ``x`` (and the VAE's ``num_data``) says
(hybridpgm/data/validation.py ``check_no_extra_arguments``, hybridpgm/generative/vae_inputs.py).

Before, ``vae.model(x, 12, labels)`` (a data size, then labels) was told "got 2 positional argument(s) after x, the
first a int: was the batch an (x, labels) tuple?": 12 is a valid ``num_data``, what came after it was the labels,
and no ``(x, labels)`` batch makes that call; ``sbn.model(x, 12)`` was asked the same question of a number."""

import numpy as np
import pytest
import torch

from hybridpgm import VAE, SigmoidBeliefNet
from hybridpgm.data.validation import batch_origin, check_no_extra_arguments
from hybridpgm.errors import DataError

X = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])


@pytest.mark.parametrize("method", ["model", "guide", "direct_elbo_loss"])
def test_what_follows_a_num_data_is_named_after_it(method):
    vae = VAE(4, 2, (8,))
    with pytest.raises(DataError) as raised:
        getattr(vae, method)(X, 12, torch.zeros(3))
    assert str(raised.value) == (
        f"VAE.{method}(x, num_data, ...) got 1 positional argument(s) after num_data=12, the first a tensor of shape "
        f"(3,) and dtype torch.float32: VAE.{method} takes x and num_data by position and models x only (no "
        "labels); its other options are keywords (prefix=...)")
    with pytest.raises(DataError, match=r"after num_data=12, the first the int 5: VAE.model takes x and num_data "
                                        r"by position; its other options"):
        vae.model(X, 12, 5)


def test_labels_in_the_place_of_num_data_are_still_asked_about():
    """A tensor of values right after x: the (x, labels) question, as before."""
    with pytest.raises(DataError, match=r"VAE.model\(x, \.\.\.\) got 2 positional argument\(s\) after x, the first "
                                        r"a tensor of shape \(3,\).*: was the batch an \(x, labels\) tuple\?"):
        VAE(4, 2, (8,)).model(X, torch.zeros(3), 1)


def test_a_number_after_x_of_a_keyword_only_program_is_named_as_a_number():
    with pytest.raises(DataError) as raised:
        SigmoidBeliefNet([4, 3]).model(X, 12)
    message = str(raised.value)
    assert "(x, labels)" not in message and message.startswith(
        "SigmoidBeliefNet.model(x, ...) got 1 positional argument(s) after x, the first the int 12: "
        "SigmoidBeliefNet.model takes x alone by position; its options are keywords (")


@pytest.mark.parametrize("first, got", [(None, "None"), (2.5, "the float 2.5"), ("a" * 60, "the str 'aaaa"),
                                        ([1, 2], "a list"), (torch.tensor(3), "a tensor of shape () and dtype")])
def test_the_first_extra_argument_is_described(first, got):
    with batch_origin("training data, step 3"):
        with pytest.raises(DataError) as raised:
            check_no_extra_arguments((first,), model="M", method="guide", keywords="k=...")
    message = str(raised.value)
    assert message.startswith(f"M.guide(x, ...) got 1 positional argument(s) after x (training data, step 3), "
                              f"the first {got}") and "(x, labels)" not in message and len(message) < 200


@pytest.mark.parametrize("num_data", [None, 12.0, True, "12", torch.tensor(12.0)])
def test_a_vae_is_never_said_to_take_x_alone(num_data):
    """Whatever stands in num_data's place but a batch of values, the VAE took it as num_data (valid or not): what
    follows is named after it, and the VAE is not said to take x alone by position (it takes x and num_data)."""
    with pytest.raises(DataError) as raised:
        VAE(4, 2, (8,)).model(X, num_data, torch.zeros(3))
    message = str(raised.value)
    assert message.startswith(f"VAE.model(x, num_data, ...) got 1 positional argument(s) after num_data={num_data!r}, "
                              "the first a tensor of shape (3,)") and "takes x alone" not in message


def test_numpy_labels_are_asked_about_as_tensor_labels_are():
    """A NumPy array of values in num_data's place, or right after x, is labels as a tensor is: not a num_data."""
    labels = np.array([0, 1, 1])
    for call in (lambda: VAE(4, 2, (8,)).guide(X, labels, 1), lambda: SigmoidBeliefNet([4, 3]).model(X, labels)):
        with pytest.raises(DataError, match=r"after x, the first a NumPy array of shape \(3,\) and dtype int64: was "
                                            r"the batch an \(x, labels\) tuple\?"):
            call()
    with pytest.raises(DataError, match=r"after x, the first the NumPy int64 12: SigmoidBeliefNet.model takes x "
                                        r"alone by position"):
        SigmoidBeliefNet([4, 3]).model(X, np.int64(12))
