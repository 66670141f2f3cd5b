import pytest

import lmeval
from lmeval import Param, UsageError, parse_spec
from lmeval.models import resolve_params


class Toy(lmeval.LanguageModel):
    name = "toy"
    params = (
        Param("order", int, 3, "n-gram order", check=lmeval.at_least(1)),
        Param("smoothing", str, "mkn", "method", choices=("mkn", "kn")),
        Param("alpha", float, 0.5, "weight", check=lmeval.in_range(0, 1)),
        Param("lower", bool, False, "lower-case"),
    )

    def fit(self, train_ids, valid_ids=None):
        pass

    def score(self, ids):
        return ids * 0.0


@pytest.mark.parametrize(
    "text, name, params, label",
    [
        ("ngram", "ngram", {}, "ngram"),
        (
            "ngram:order=5,smoothing=mkn",
            "ngram",
            {"order": "5", "smoothing": "mkn"},
            "ngram:order=5,smoothing=mkn",
        ),
        ("kn5=ngram:order=5", "ngram", {"order": "5"}, "kn5"),
        ("saved:path=a=b.lmz", "saved", {"path": "a=b.lmz"}, "saved:path=a=b.lmz"),
        (" rnn : budget = 60s ", "rnn", {"budget": "60s"}, "rnn:budget=60s"),
    ],
)
def test_parse_spec(text, name, params, label):
    spec = parse_spec(text)
    assert (spec.name, spec.params, spec.label) == (name, params, label)


@pytest.mark.parametrize("bad", ["", ":order=3", "ngram:order", "ngram:", "ngram:=3", "9x"])
def test_parse_spec_rejects_malformed(bad):
    with pytest.raises(UsageError, match="bad model spec"):
        parse_spec(bad)


def test_params_are_typed_and_defaulted():
    assert resolve_params(Toy, {"order": "5", "alpha": "1", "lower": "yes"}) == {
        "order": 5,
        "smoothing": "mkn",
        "alpha": 1.0,
        "lower": True,
    }


@pytest.mark.parametrize(
    "given, message",
    [
        ({"order": "x"}, "order='x': expected int"),
        ({"order": "0"}, "order='0': must be at least 1"),
        ({"smoothing": "wb"}, "choose one of mkn, kn"),
        ({"alpha": "2"}, "must be between 0 and 1"),
        ({"lower": "maybe"}, "expected true or false"),
        ({"ordr": "3"}, "no parameter 'ordr' \\(did you mean 'order'\\?\\)"),
    ],
)
def test_bad_params_raise_usage_errors_naming_the_problem(given, message):
    with pytest.raises(UsageError, match=message):
        resolve_params(Toy, given)


def test_default_generate_samples_from_next_token_distribution():
    class Peaked(Toy):
        def next_token_logprobs(self, context_ids):
            import numpy as np

            out = np.full(len(self.vocab), -50.0)
            out[len(context_ids) % len(self.vocab)] = 0.0
            return out

    model = Peaked(lmeval.Vocabulary(["a", "b"]))
    # greedy: always the argmax, which cycles through the ids
    assert model.generate([], 5, temperature=0).tolist() == [0, 1, 2, 0, 1]


def test_sampling_at_a_tiny_temperature_is_greedy_without_warnings():
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picks = {
            lmeval.sample_id(np.log([0.2, 0.5, 0.3]), 1e-320, np.random.default_rng(i))
            for i in range(5)
        }
    assert picks == {1}
