"""Which plate :func:`~hybridpgm.infer.subsample_scale.scaled_batch_plate` takes for the data plate: a site's
outermost one.  A subsampled plate nested inside the batch's (a few words drawn from each document) is part of
the model's per-example loss, whatever its size, and must not be refused when it happens to draw as many entries
as the batch has rows (a short last batch once stopped a run mid-way with advice that was wrong for the model)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.nn import PyroModule, PyroParam

from hybridpgm import SVIObjective, fit
from hybridpgm.infer.subsample_scale import scaled_batch_plate


class _Documents(PyroModule):
    """Documents (the batch, not subsampled) of 20 word scores, of which each step scores a random 5."""

    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(()))

    def model(self, x):
        with pyro.plate("docs", x.shape[0], dim=-2):
            with pyro.plate("words", 20, subsample_size=5, dim=-1) as idx:
                pyro.sample("w", dist.Normal(self.loc, 1.0), obs=x[:, idx])

    def guide(self, x):
        pass


def test_a_nested_plate_drawing_as_many_entries_as_the_batch_has_rows_is_not_the_data_plate():
    trace = poutine.trace(_Documents().model).get_trace(torch.randn(5, 20))
    assert [frame.name for frame in trace.nodes["w"]["cond_indep_stack"]] == ["docs", "words"]  # outside in
    assert scaled_batch_plate([("model", trace)], 5) is None


def test_a_run_whose_short_last_batch_matches_a_nested_subsample_trains_to_the_end():
    steps = []

    class Count:
        def on_step_end(self, info):
            steps.append(info.step)

    from hybridpgm.train import Callback

    counter = type("Counter", (Callback,), {"on_step_end": Count.on_step_end})()
    docs = _Documents()
    fit(SVIObjective(docs.model, docs.guide), torch.randn(101, 20), batch_size=16, epochs=3, progress=False,
        seed=0, callbacks=[counter])  # 16 x 6 + a last batch of 5 rows, three epochs
    assert len(steps) == 21


def test_the_outermost_subsampled_data_plate_is_found():
    def model(x):
        with pyro.plate("data", 100, subsample=torch.arange(x.shape[0])):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    trace = poutine.trace(model).get_trace(torch.randn(5))
    assert scaled_batch_plate([("model", trace)], 5) == ("model", "data", 100)


def test_the_subsample_factor_is_the_plates_not_a_scale_of_the_users_own():
    """:func:`subsample_factor`: N / B of each subsampled plate of a site (a product over nested ones), 1 for a
    site in none, whatever ``poutine.scale`` (a KL weight) multiplies its ``scale`` by."""
    from hybridpgm.infer.subsample_scale import subsample_factor

    def model():
        with poutine.scale(scale=0.1):
            pyro.sample("global", dist.Normal(0.0, 1.0))
            with pyro.plate("data", 100, subsample_size=5, dim=-1):
                pyro.sample("local", dist.Normal(0.0, 1.0))
                with pyro.plate("words", 20, subsample_size=4, dim=-2):
                    pyro.sample("word", dist.Normal(0.0, 1.0))

    trace = poutine.trace(model).get_trace()
    assert subsample_factor(trace.nodes["global"]) == 1.0
    assert subsample_factor(trace.nodes["local"]) == 20.0
    assert subsample_factor(trace.nodes["word"]) == 100.0


@pytest.mark.parametrize("data_outer", [True, False], ids=["data entered first", "feature plate entered first"])
def test_the_refusal_does_not_depend_on_which_plate_is_entered_first(data_outer):
    """Found by an audit: with the feature plate (dim -1) entered outside the subsampled data plate (dim -2), the
    check read the stack's first entry and let the loss be divided by the batch size again (69.13 per example
    where the full-data value is 553.02); Pyro's model is the same whichever ``with`` comes first."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import Trace_ELBO

    from hybridpgm.errors import ConfigError
    from hybridpgm.infer import SVIObjective

    n, b, d = 100, 8, 3
    loc = torch.zeros(d)

    def model(x, idx):
        data = pyro.plate("data", n, subsample=idx, dim=-2)
        feat = pyro.plate("feat", d, dim=-1)
        with (data if data_outer else feat), (feat if data_outer else data):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    objective = SVIObjective(model, lambda x, idx: None, Trace_ELBO(), module=torch.nn.Module())
    with pytest.raises(ConfigError, match=r"plate 'data' subsamples the batch's 8 row\(s\) from 100"):
        objective.loss("elbo", (torch.randn(b, d), torch.arange(b)))
