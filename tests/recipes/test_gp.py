import pytest

from hybridpgm.gp import GPLSTM, DeepKernelGP
from tests.recipes.report import evaluate, train_and_check


@pytest.mark.parametrize("model,args,kind", [
    ("dkl", ["--epochs", "10", "--hidden", "8"], DeepKernelGP),
    ("gp-lstm", ["--epochs", "1", "--hidden", "4", "--window", "6"], GPLSTM),
])
def test_gp_recipes_write_the_report_and_reload(model, args, kind, tmp_path):
    metrics, gp = train_and_check(model, tmp_path, args, plots=("coverage.png",), checkpoint=False)
    assert isinstance(gp, kind) and gp.train_x.shape[0] == metrics["train_size"]
    assert metrics["test_rmse"] > 0 and 0 <= metrics["test_coverage_95"] <= 1
    report = evaluate(tmp_path)
    for key in ("test_rmse", "test_nlpd", "test_coverage_95"):
        assert report[key] == pytest.approx(metrics[key], rel=1e-4)
