"""renamed_keyword: the old keyword of a renamed parameter still works for one release, with a FutureWarning."""

import inspect
import warnings

import pytest

from hybridpgm.errors import ConfigError
from hybridpgm.keyword_alias import keyword_only_soon, renamed_keyword


class _Model:
    @renamed_keyword(n="num_samples")
    def sample(self, num_samples, mean=True):
        """Draw ``num_samples``."""
        return num_samples, mean


def test_new_and_positional_calls_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _Model().sample(3) == (3, True) and _Model().sample(num_samples=3, mean=False) == (3, False)


def test_the_old_keyword_warns_naming_the_new_one_at_the_callers_line():
    with pytest.warns(FutureWarning, match=r"_Model\.sample: the keyword n= is renamed num_samples=") as record:
        assert _Model().sample(n=4, mean=False) == (4, False)
    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("args, kwargs", [((3,), {"n": 3}), ((), {"num_samples": 3, "n": 3})])
def test_both_names_at_once_are_refused(args, kwargs):
    with pytest.raises(ConfigError, match=r"_Model\.sample got both num_samples= and its old name n="):
        _Model().sample(*args, **kwargs)


def test_the_wrapper_keeps_name_doc_and_signature():
    assert _Model.sample.__name__ == "sample" and _Model.sample.__doc__ == "Draw ``num_samples``."
    assert list(inspect.signature(_Model.sample).parameters) == ["self", "num_samples", "mean"]


def test_a_keyword_only_new_name_and_a_wrong_declaration():
    @renamed_keyword(num="size")
    def f(*, size):
        return size

    with pytest.warns(FutureWarning):
        assert f(num=2) == 2
    with pytest.raises(TypeError, match="has no parameter 'num_samples'"):
        renamed_keyword(n="num_samples")(lambda count: count)
    with pytest.raises(TypeError, match="still has a parameter 'n'"):
        renamed_keyword(n="num_samples")(lambda n, num_samples: n)


class _Net:
    @keyword_only_soon("evidence", "context")
    def marginals(self, method="exact", *, evidence=None, context=None, **options):
        """Marginals."""
        return method, evidence, context, options


def test_keyword_calls_of_a_soon_keyword_only_parameter_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _Net().marginals("bp", evidence=1, num_iters=3) == ("bp", 1, None, {"num_iters": 3})
        assert _Net().marginals() == ("exact", None, None, {})


def test_old_positional_calls_bind_as_before_and_warn_at_the_callers_line():
    with pytest.warns(FutureWarning, match=r"_Net\.marginals: pass evidence=, context= by keyword; passing them by "
                                           r"position will stop") as record:
        assert _Net().marginals("bp", 1, 2, num_iters=3) == ("bp", 1, 2, {"num_iters": 3})
    assert [w.filename for w in record] == [__file__]
    with pytest.warns(FutureWarning, match="pass evidence= by keyword; passing it by"):
        assert _Net().marginals("bp", 1) == ("bp", 1, None, {})


def test_soon_keyword_only_conflicts_and_surplus_are_refused():
    with pytest.raises(ConfigError, match=r"_Net\.marginals got evidence= both by position and by keyword"):
        _Net().marginals("bp", 1, evidence=2)
    with pytest.raises(TypeError, match=r"takes at most 4 positional arguments \(5 given\)"):
        _Net().marginals("bp", 1, 2, 3)


def test_soon_keyword_only_keeps_the_signature_and_checks_its_declaration():
    assert _Net.marginals.__doc__ == "Marginals."
    assert inspect.signature(_Net.marginals).parameters["evidence"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError, match="has no keyword-only parameter 'evidence'"):
        keyword_only_soon("evidence")(lambda method, evidence=None: method)
