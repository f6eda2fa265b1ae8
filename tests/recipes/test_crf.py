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


def test_a_one_token_maximum_length_is_a_valid_task():
    """Before, make_task set min_len = max(2, max_len // 3) = 2 > max_len = 1, and `hybridpgm train crf
    --max-len 1` failed on a min_len the command has no option for."""
    hmm, (x, y, lengths), test = make_task(3, 4, 20, 10, max_len=1, seed=0)
    assert x.shape == y.shape == (20, 1) and bool((lengths == 1).all()) and bool((test[2] == 1).all())
    for max_len in (2, 3, 9, 30):  # longer tasks keep their lengths max(2, max_len // 3)..max_len
        lengths = make_task(3, 4, 200, 1, max_len=max_len, seed=0)[1][2]
        assert int(lengths.min()) == max(2, max_len // 3) and int(lengths.max()) == max_len


def test_the_recipe_trains_with_one_token_sequences(tmp_path):
    args = ["--epochs", "1", "--num-train", "40", "--num-test", "20", "--max-len", "1", "--hidden", "4",
            "--batch-size", "20"]
    metrics, tagger = train_and_check("crf", tmp_path, args, plots=("marginals.png",))
    assert isinstance(tagger, CRFTagger) and metrics["max_len"] == 1 and metrics["steps"] == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and 0.0 <= metrics["bayes_test_accuracy"] <= 1.0
    assert metrics["test_accuracy"] == metrics["test_viterbi_accuracy"]  # one token: the marginal argmax is the mode
    assert 0.0 < metrics["bayes_test_loss"] < float("inf") and 0.0 < metrics["test_loss"] < float("inf")


def test_resume_with_another_max_len_is_refused_naming_it_unless_overridden(tmp_path, capsys):
    """Before, the recipe's own options were not recorded in the checkpoint: ``--resume --max-len 7`` after a
    run with ``--max-len 5`` trained on other sequences as if it continued the first run."""
    import json

    from hybridpgm.cli import main
    from hybridpgm.train import load_checkpoint

    base = ["train", "crf", "--num-train", "40", "--num-test", "20", "--hidden", "4", "--batch-size", "20",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path)]
    assert main(base + ["--epochs", "1", "--max-len", "5"]) == 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["config"]["--max-len"] == 5
    capsys.readouterr()
    assert main(base + ["--epochs", "2", "--max-len", "7", "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("hybridpgm: error: ")
    assert "config['--max-len']: checkpoint 5, requested 7" in err and "--override-hyperparameters" in err
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2  # untouched
    # an option that changes only the report (the test sequences, drawn after the training ones) is no difference
    assert main(base + ["--num-test", "30", "--epochs", "2", "--max-len", "5", "--resume"]) == 0
    assert main(base + ["--epochs", "3", "--max-len", "7", "--resume", "--override-hyperparameters"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["max_len"] == 7 and metrics["steps"] == 6 and metrics["precision"] == "fp32"
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["config"]["--max-len"] == 7
