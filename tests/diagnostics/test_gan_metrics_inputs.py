"""What :func:`inception_score` and :func:`target_accuracy` take: class logits ``batch x C`` only (a binary
classifier's ``(batch,)`` logit is refused by name, whatever the batch size), and NumPy arrays as the module's
other metrics take them (audit_read_adv findings 1 and 6)."""

import pytest
import torch
from torch import nn

from hybridpgm.diagnostics.gan_metrics import inception_score, target_accuracy
from hybridpgm.errors import DataError


class OneLogit(nn.Module):
    """A binary classifier returning one logit per sample, ``(batch,)``, as the discriminators of the family do."""

    def forward(self, x):
        return 3.0 * x[:, 0]


class TwoLogits(nn.Module):
    """The same classifier written as the two classes' logits ``[0, l]``."""

    def forward(self, x):
        logit = 3.0 * x[:, 0]
        return torch.stack([torch.zeros_like(logit), logit], -1)


@pytest.mark.parametrize("batch_size", [1000, 10, 1])
def test_inception_score_refuses_one_logit_per_sample_whatever_the_batch_size(batch_size):
    samples = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"class logits \(batch, C\), got shape \(\d+,\)"):
        inception_score(OneLogit(), samples, batch_size=batch_size)


def test_inception_score_of_two_logits_independent_of_batch_size():
    """Guard (passes on the old code too): the score the refusal points to is the same for every batch size and
    equals the hand value."""
    samples = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    scores = [inception_score(TwoLogits(), samples, batch_size=b) for b in (1000, 10, 1)]
    p = torch.sigmoid(3.0 * samples[:, 0].double())
    probs = torch.stack([1 - p, p], -1)
    marginal = probs.mean(0)
    expected = float((probs * (probs.log() - marginal.log())).sum(-1).mean().exp())
    for score in scores:
        assert score == pytest.approx(expected, rel=1e-6)
    assert 1.0 <= scores[0] <= 2.0


def test_inception_score_refuses_wrong_row_count_and_tuples():
    samples = torch.randn(6, 2)
    with pytest.raises(DataError, match=r"got shape \(1, 2\) for a batch of 6"):
        inception_score(lambda s: torch.zeros(1, 2), samples)
    with pytest.raises(DataError, match="inception_score classifier must return one tensor, got a tuple"):
        inception_score(lambda s: (torch.zeros(len(s), 2), None), samples)


def test_inception_score_reads_numpy_samples():
    samples = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    assert inception_score(TwoLogits(), samples.numpy()) == inception_score(TwoLogits(), samples)


def test_inception_score_reads_a_float64_array_in_the_classifiers_dtype():
    """Found by a review: NumPy's default float64 array into a float32 network raised torch's "mat1 and mat2 must
    have the same dtype"."""
    torch.manual_seed(3)
    net = torch.nn.Linear(2, 3)
    samples = torch.randn(40, 2, generator=torch.Generator().manual_seed(4))
    assert inception_score(net, samples.double().numpy()) == inception_score(net, samples)


def test_target_accuracy_reads_numpy_labels():
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    y = x.argmax(-1)
    y[0] = (y[0] + 1) % 3
    assert target_accuracy(lambda v: v, x, y.numpy()) == target_accuracy(lambda v: v, x, y) == 7 / 8


def test_target_accuracy_refuses_labels_that_are_not_numbers():
    with pytest.raises(DataError, match="target_accuracy labels y"):
        target_accuracy(lambda v: v, torch.randn(2, 3), ["a", "b"])


def test_inception_score_refuses_logits_of_one_class():
    """audit_empty: a classifier of one class scored 1.0 for any samples (the softmax of one class is 1)."""
    samples = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"logits of one class, shape \(3, 1\).*torch\.stack"):
        inception_score(nn.Linear(2, 1), samples)


def test_inception_score_names_a_missing_batch_dimension():
    """audit_empty: one example ``x[0]`` of shape ``(2,)`` got the advice for a binary classifier's logit."""
    net = nn.Linear(2, 3)
    samples = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"got shape \(3,\).*samples of shape \(2,\) have no batch dimension.*"
                                        r"x\[None\]") as caught:
        inception_score(net, samples[0])
    assert "binary" not in str(caught.value)
    assert 1.0 <= inception_score(net, samples[0][None]) <= 3.0  # the advice works


def test_target_accuracy_refuses_one_logit_per_sample():
    """INPUTS audit (session 39, finding 2): a perfect binary classifier ``nn.Linear(h, 1)`` scored the share of
    class 0 (argmax over one column is always 0), and its logits squeezed to floats ``[B]`` scored about 0 (compared
    with the labels as labels).  Both are refused, pointing to the two forms that score it right."""
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    head = nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[10.0, 0.0]]))
        head.bias.zero_()
    with pytest.raises(DataError, match=r"logits of shape \(100, 1\), one class.*\(logit > 0\)\.long\(\)"):
        target_accuracy(head, x, y)
    with pytest.raises(DataError, match=r"labels of dtype torch\.float32 \(shape \(100,\)\).*torch\.stack"):
        target_accuracy(lambda v: head(v).squeeze(-1), x, y)
    # the forms the message gives score the perfect classifier 1
    assert target_accuracy(lambda v: (head(v).squeeze(-1) > 0).long(), x, y) == 1.0
    assert target_accuracy(lambda v: torch.cat([torch.zeros_like(head(v)), head(v)], -1), x, y) == 1.0


def test_train_classifier_reads_array_likes_as_tensors():
    """INPUTS audit (session 39, finding 5): NumPy ``x``, or NumPy / pandas / list ``y``, ended in raw
    ``AttributeError``s ('numpy.ndarray' object has no attribute 'dim'); the same network is now trained as from
    the tensors."""
    from hybridpgm.diagnostics.gan_metrics import train_classifier

    pd = pytest.importorskip("pandas")
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    kwargs = dict(hidden=(4,), num_steps=2, batch_size=8, device="cpu")
    want = train_classifier(x, y, **kwargs).state_dict()
    for xs, ys in ((x.numpy(), y), (x, y.numpy()), (x, pd.Series(y.numpy())), (x, y.tolist()),
                   (pd.DataFrame(x.numpy()), y)):
        got = train_classifier(xs, ys, **kwargs).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(DataError, match="train_classifier labels y must be a tensor or an array of numbers"):
        train_classifier(x, ["a"] * 20, **kwargs)


def test_target_accuracy_reads_whole_number_floats_as_labels():
    """Review A (session 39): the one-logit refusal must not refuse labels given as floats (``logits.argmax(-1)
    .float()``, labels from a float tensor), which scored right before it; floats that are not whole numbers are
    still refused."""
    y = torch.tensor([0, 1, 2, 1])
    assert target_accuracy(lambda v: v.float(), y, y) == 1.0
    assert target_accuracy(lambda v: torch.tensor([0.0, 1.0, 0.0, 1.0]), y, y) == 0.75
    with pytest.raises(DataError, match=r"labels of dtype torch\.float32"):
        target_accuracy(lambda v: v.float() + 0.5, y, y)
