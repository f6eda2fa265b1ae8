import pytest

from hybridpgm.energy import DBM, DBN
from tests.recipes.report import evaluate, train_and_check


@pytest.mark.parametrize("model", ["dbn", "dbm"])
def test_dbn_dbm_recipes_write_the_report(model, tmp_path):
    args = ["--epochs", "1", "--batch-size", "256", "--hidden", "8", "6", "--gibbs-steps", "5"]
    if model == "dbm":
        args += ["--chains", "10", "--ais-chains", "10", "--ais-steps", "50"]
    metrics, loaded = train_and_check(model, tmp_path, args, plots=("samples.png",))
    assert isinstance(loaded, DBN if model == "dbn" else DBM) and loaded.sizes == [64, 8, 6]
    if model == "dbn":
        # the unrolled autoencoder of the loaded model reconstructs exactly as the trained one did
        assert evaluate(tmp_path)["test_reconstruction_loss"] == pytest.approx(metrics["test_reconstruction_loss"])
        assert 0 < metrics["test_reconstruction_loss"] < 64 * 0.7
    else:
        assert metrics["log_z_stderr"] >= 0 and metrics["test_log_likelihood_bound"] < 0
