import pytest
import torch

from hybridpgm.recipes.crf import make_task
from hybridpgm.recipes.models import CRFTagger
from tests.recipes.report import evaluate, train_and_check


def test_crf_recipe_writes_the_report_and_evaluate_agrees(tmp_path):
    args = ["--epochs", "2", "--num-train", "300", "--num-test", "100", "--max-len", "12", "--hidden", "8"]
    metrics, tagger = train_and_check("crf", tmp_path, args, plots=("marginals.png",))
    assert isinstance(tagger, CRFTagger)
    # the Bayes-optimal tagger (the true HMM's posterior) bounds the learned one
    assert metrics["bayes_test_loss"] < metrics["test_loss"]
    assert 0.2 < metrics["test_accuracy"] <= metrics["bayes_test_accuracy"] + 0.05
    report = evaluate(tmp_path)
    for key in ("test_loss", "test_accuracy", "bayes_test_accuracy"):
        assert report[key] == pytest.approx(metrics[key])


def test_the_task_is_fixed_by_the_seed():
    a, b = make_task(3, 4, 5, 2, 6, seed=1), make_task(3, 4, 5, 2, 6, seed=1)
    assert all(map(lambda u, v: bool((u == v).all()), a[1] + a[2], b[1] + b[2]))
    assert not bool((make_task(3, 4, 5, 2, 6, seed=2)[1][0] == a[1][0]).all())


@pytest.mark.parametrize("pad", [0, 4])
def test_the_tagger_scores_a_sequence_as_if_it_were_alone(pad):
    """Before, the convolution read the symbol after a sequence's end: its log-probability, marginals and
    tags changed with the padding and so with the batch it was in."""
    from hybridpgm.recipes.models import CRFTagger

    torch.manual_seed(0)
    tagger = CRFTagger(num_symbols=5, num_labels=3, hidden=8)
    x, y = torch.tensor([[1, 2, 3]]), torch.tensor([[0, 2, 1]])
    alone = tagger(x, torch.tensor([3]))
    batch_x = torch.tensor([[1, 2, 3, pad, pad], [4, 4, 1, 0, 2]])
    batch_y = torch.tensor([[0, 2, 1, 0, 0], [1, 1, 1, 1, 1]])
    padded = tagger(batch_x, torch.tensor([3, 5]))
    torch.testing.assert_close(padded.log_prob(batch_y)[0], alone.log_prob(y)[0])
    torch.testing.assert_close(padded.marginals[0, :3], alone.marginals[0])
