"""Inception score, ring coverage, target accuracy and clustering accuracy."""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.data.toy import ring_centers, ring_of_gaussians
from hybridpgm.diagnostics.gan_metrics import (clustering_accuracy, inception_score, ring_coverage, target_accuracy,
                                               train_classifier)
from hybridpgm.errors import DataError


def identity(x):
    return x


def test_inception_score_extremes():
    # every sample the same class with certainty: IS = 1
    assert inception_score(identity, torch.tensor([[30.0, 0.0, 0.0]]).repeat(9, 1)) == pytest.approx(1.0, abs=1e-9)
    # uniform predictions: IS = 1
    assert inception_score(identity, torch.zeros(9, 3)) == pytest.approx(1.0)
    # confident and balanced over C classes: IS = C
    logits = 60.0 * torch.eye(4).repeat(5, 1)
    assert inception_score(identity, logits) == pytest.approx(4.0, rel=1e-9)


def test_inception_score_formula():
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]], dtype=torch.float64)
    p = logits.softmax(-1)
    marginal = p.mean(0)
    expected = math.exp(float((p * (p / marginal).log()).sum(-1).mean()))
    assert inception_score(identity, logits, batch_size=2) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 30), st.integers(2, 6), st.integers(0, 10**6))
def test_inception_score_bounds(n, c, seed):
    logits = 5 * torch.randn(n, c, generator=torch.Generator().manual_seed(seed))
    score = inception_score(identity, logits)
    assert 1.0 - 1e-9 <= score <= min(n, c) + 1e-9


def test_ring_coverage():
    x = ring_of_gaussians(4000, generator=torch.Generator().manual_seed(0))
    full = ring_coverage(x)
    assert full.modes_covered == 8 and full.high_quality_rate > 0.98 and sum(full.counts) > 3900
    three = x[torch.cdist(x, ring_centers()).argmin(1) < 3]
    assert ring_coverage(three).modes_covered == 3
    assert ring_coverage(torch.zeros(100, 2)).high_quality_rate == 0.0
    # a handful of samples on a mode does not cover it
    few = torch.cat([three, ring_centers()[5:6].repeat(3, 1)])
    assert ring_coverage(few).modes_covered == 3
    with pytest.raises(DataError, match=r"\(N, 2\)"):
        ring_coverage(torch.zeros(5, 3))


def test_target_accuracy_and_clustering():
    y = torch.tensor([0, 1, 2, 2, 1])
    assert target_accuracy(identity, torch.eye(3)[y], y) == 1.0
    assert target_accuracy(lambda x: torch.zeros(5, dtype=torch.long), None, y) == pytest.approx(0.2)
    perm = torch.tensor([2, 0, 1])
    assert clustering_accuracy(perm[y], y) == 1.0
    assert clustering_accuracy(torch.zeros(5, dtype=torch.long), y) == pytest.approx(0.4)
    with pytest.raises(DataError):
        clustering_accuracy(torch.zeros(3, dtype=torch.long), y)


def test_train_classifier_on_digits():
    from hybridpgm.data import load_dataset

    data = load_dataset("digits")
    clf = train_classifier(data.train.x, data.train.y, device="cpu")
    assert target_accuracy(clf, data.test.x, data.test.y) > 0.9
    assert inception_score(clf, data.test.x) > 6.0  # real digits: near 10 classes, confidently
    with pytest.raises(DataError):
        train_classifier(data.train.x, data.train.y[:5])


@pytest.mark.parametrize("clusters, labels, match", [
    (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), "clusters must be integers, got dtype torch.float32"),
    (torch.tensor([0, 1]), torch.tensor([True, False]), "labels must be integers, got dtype torch.bool"),
    (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), "at least one item"),
    (torch.tensor([0, -1]), torch.tensor([0, 1]), "non-negative clusters and labels, got minima -1 and 0"),
])
def test_clustering_accuracy_refuses_what_is_not_a_labelling(clusters, labels, match):
    with pytest.raises(DataError, match=match):
        clustering_accuracy(clusters, labels)


def test_target_accuracy_needs_one_prediction_per_label():
    with pytest.raises(DataError, match="predictions of shape \\(10, 3\\) against labels y of shape \\(9,\\)"):
        target_accuracy(lambda x: torch.zeros(x.shape[0], 3), torch.zeros(10, 2), torch.zeros(9, dtype=torch.long))


def test_inception_score_of_no_samples_is_named():
    with pytest.raises(DataError, match="at least one sample, got shape \\(0, 2\\)"):
        inception_score(lambda x: torch.zeros(x.shape[0], 3), torch.zeros(0, 2))


@pytest.mark.parametrize("samples, match", [(torch.zeros(0, 2), "N >= 1, got \\(0, 2\\)"),
                                            (torch.zeros(4, 2, dtype=torch.long), "dtype torch.int64")])
def test_ring_coverage_refuses_empty_or_integer_samples(samples, match):
    with pytest.raises(DataError, match=match):
        ring_coverage(samples)


@pytest.mark.parametrize("x, y, kwargs, match", [
    (torch.zeros(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]), {}, "labels y must be integers, got dtype torch.float32"),
    (torch.zeros(4, 2), torch.tensor([0, 1, -1, 1]), {}, "must lie in \\[0, 2\\), got values from -1 to 1"),
    (torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]), {"num_classes": 2},
     "must lie in \\[0, 2\\), got values from 0 to 2"),
    (torch.zeros(4, 2, dtype=torch.long), torch.tensor([0, 1, 0, 1]), {},
     "floating-point inputs x, got dtype torch.int64"),
    (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), {}, "at least one example"),
])
def test_train_classifier_refuses_bad_labels_and_inputs(x, y, kwargs, match):
    with pytest.raises(DataError, match=match):
        train_classifier(x, y, num_steps=1, device="cpu", **kwargs)


@pytest.mark.parametrize("shape", [(1, 6), (6, 1), (2, 3)])
def test_clustering_accuracy_refuses_inputs_that_are_not_1d(shape):
    """Before, 2-D inputs were accepted and (2, 3) or (1, 6) gave an accuracy above 1."""
    c, y = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 2, 1, 1, 2])
    with pytest.raises(DataError, match=re.escape(f"1-D clusters and labels (N,), got shapes {shape} and {shape}")):
        clustering_accuracy(c.reshape(shape), y.reshape(shape))


@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32])
def test_train_classifier_trains_in_the_inputs_float_dtype(label_dtype):
    """Before, float64 inputs met a float32 network and fit raised a raw dtype error."""
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    clf = train_classifier(x, torch.tensor([0, 1] * 4, dtype=label_dtype), hidden=(4,), num_steps=2, device="cpu")
    assert all(p.dtype == torch.float64 for p in clf.parameters()) and not clf.training
    assert clf(x).dtype == torch.float64


def test_inception_score_reads_zero_log_zero_as_zero():
    """Before, a class ruled out by a -inf logit gave 0 * -inf = NaN."""
    logits = torch.tensor([[0.0, -float("inf")], [0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    marginal = p.mean(0)
    expected = math.exp(float(((1.0 * (1.0 / marginal[0]).log()) + (p[1] * (p[1] / marginal).log()).sum()) / 2))
    assert inception_score(lambda s: logits, torch.zeros(2, 5)) == pytest.approx(expected, rel=1e-6)


def test_scoring_leaves_a_classifiers_batch_norm_statistics():
    """A classifier in training mode is scored in eval() mode and its running statistics do not move: an
    evaluation is not a training batch (a network or a bound method of one)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(50, 3) + 2, torch.randint(4, (50,))
    score = inception_score(net, x, batch_size=20)
    accuracy = target_accuracy(net.forward, x, y)
    assert 1 <= score <= 4 and 0 <= accuracy <= 1
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # fails before: each chunk normalised by its own statistics (1.08117, 1.080223, 1.080899 for chunks of 1000,
    # 20, 10), and a last chunk of one row (batch_size=7) was torch's raw ValueError
    # (float32 products of other row counts may round differently: to float32's precision)
    assert [inception_score(net, x, batch_size=b) for b in (1000, 10, 7)] == pytest.approx([score] * 3, rel=1e-6)
    assert net.training
    net(x)  # a forward pass of its own moves them
    assert not torch.equal(before["1.running_mean"], net.state_dict()["1.running_mean"])


def test_ring_coverage_and_clustering_accuracy_take_arrays_as_the_other_diagnostics_do():
    """NumPy arrays (flipped and read-only ones too) and lists give the tensor's answer.  Before:
    ``AttributeError: 'numpy.ndarray' object has no attribute 'dim'`` (and ``'is_floating_point'``)."""
    import numpy as np

    x = ring_of_gaussians(500, generator=torch.Generator().manual_seed(0)).double()
    expected = ring_coverage(x)
    flipped = np.flip(x.numpy(), 0)  # a negative stride: torch cannot view it
    read_only = x.numpy().copy()
    read_only.flags.writeable = False
    for samples in (x.numpy(), flipped, read_only, x.tolist()):
        got = ring_coverage(samples)
        assert (got.modes_covered, got.counts, got.high_quality_rate) == \
            (expected.modes_covered, expected.counts, expected.high_quality_rate)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 0])
    clusters = torch.tensor([2, 0, 1, 1, 0, 2, 1])
    expected = clustering_accuracy(clusters, y)
    assert expected == pytest.approx(6 / 7)
    for c, labels in ((clusters.numpy(), y.numpy()), (np.flip(clusters.numpy()), np.flip(y.numpy())),
                      (clusters.tolist(), y.numpy().astype(np.int8)), (clusters.numpy(), y)):
        assert clustering_accuracy(c, labels) == expected
    with pytest.raises(DataError, match="clustering_accuracy labels must be integers, got dtype torch.float64"):
        clustering_accuracy(clusters.numpy(), y.numpy().astype(float))
    with pytest.raises(DataError, match="ring_coverage samples must be a tensor or an array of numbers, got str"):
        ring_coverage("not samples")


def _clusters_and_labels(n=1000, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    clusters = torch.where(torch.rand(n, generator=g) < 0.6, (labels + 3) % k, torch.randint(0, k, (n,), generator=g))
    return clusters, labels


def test_clustering_accuracy_of_sparse_ids_builds_a_table_of_the_ids_that_occur_only():
    """Before, the count table was (largest cluster id + 1) x (largest label + 1): here 1808 x 1903 floats, 27 MB
    (55 MB Python peak) for 1,000 items in 10 x 10 groups (11 GB for ids up to 27,000).  Now the ids are
    renumbered first: the peak is a few int64 arrays of the N items (about 50 bytes per item), below
    sixteen of them."""
    import tracemalloc

    clusters, labels = _clusters_and_labels()
    sparse_clusters, sparse_labels = clusters * 200 + 7, labels * 211 + 3
    expected = clustering_accuracy(clusters, labels)
    tracemalloc.start()
    try:
        got = clustering_accuracy(sparse_clusters, sparse_labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == expected
    assert peak < 16 * 8 * len(labels), f"{peak} bytes traced for {len(labels)} items"


def test_clustering_accuracy_is_the_same_for_any_ids_of_the_same_groups():
    """Guard (passes before and after): the best map depends on the co-occurrence counts only, so renaming the
    ids one-to-one (sparse, out of order) keeps the accuracy; checked against a brute force over the maps on a
    small case."""
    import itertools

    clusters, labels = _clusters_and_labels(n=60, k=4, seed=1)
    rename_c, rename_y = torch.tensor([900, 5, 41, 1200]), torch.tensor([77, 1500, 0, 3])
    accuracy = clustering_accuracy(rename_c[clusters], rename_y[labels])
    assert accuracy == clustering_accuracy(clusters, labels)
    best = max(sum(int(((clusters == c) & (labels == p[c])).sum()) for c in range(4))
               for p in itertools.permutations(range(4)))
    assert accuracy == best / 60
    # fewer clusters than labels, ids that occur once: the unmatched labels count as errors
    assert clustering_accuracy([1000, 1000, 3, 3, 3], [2, 2, 1999, 2, 1999]) == pytest.approx(4 / 5)


def _dropout_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(16),
                              torch.nn.Linear(16, 4))
    with torch.no_grad():
        net[2].running_mean.uniform_(-1, 1), net[2].running_var.uniform_(0.5, 2)
    net[2].eval()  # frozen by the caller: must stay so
    return net


def test_a_classifier_in_training_mode_is_scored_in_eval_mode_its_modes_put_back():
    """Found by an API audit: the classifier ran in the mode it was in, so a dropout layer in training mode drew
    from torch's global stream (two calls gave two scores, and the caller's stream moved) and a batch norm in
    training mode normalised each chunk by its own statistics (the score depended on ``batch_size``).  Now: the
    score of the network in eval() mode, the same every call, whatever the chunks; the global stream untouched;
    each sub-module's mode as it was."""
    net = _dropout_net()
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(1))
    net.eval()
    expected = inception_score(net, x)
    net.train()
    net[2].eval()
    state = torch.get_rng_state()
    scores = [inception_score(net, x), inception_score(net.forward, x), inception_score(net, x, batch_size=59)]
    assert torch.equal(torch.get_rng_state(), state)
    assert scores == pytest.approx([expected] * 3, rel=1e-6, abs=0) and expected > 1.01  # 1.0296; float32 rounding
    assert [m.training for m in net.modules()] == [True, True, True, False, True]


def test_target_accuracy_evaluates_a_network_in_eval_mode_as_inception_score_does():
    """Found by an API audit, as for :func:`inception_score`: a dropout layer in training mode gave a fixed
    network a different accuracy per call and moved torch's global stream."""
    net = _dropout_net()
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = net.eval()(x).argmax(-1)  # the eval-mode labels: accuracy 1 in eval mode
    net.train()
    net[2].eval()
    state = torch.get_rng_state()
    assert [target_accuracy(net, x, y) for _ in range(3)] == [1.0, 1.0, 1.0]
    assert torch.equal(torch.get_rng_state(), state)
    assert [m.training for m in net.modules()] == [True, True, True, False, True]
