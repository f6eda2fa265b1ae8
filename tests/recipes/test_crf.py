import pytest

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
