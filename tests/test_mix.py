"""The mix model: interpolated rows, weights by EM, a proper distribution everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hostile import run_lmeval

import lmeval
from lmeval.cli import cli
from lmeval_mix import em_weights


def test_em_finds_the_weights_of_the_mixture_that_made_the_text():
    """Tokens drawn from 0.3 A + 0.7 B, two known distributions over 50 ids: EM on
    their log-probabilities recovers the weights (to sampling noise), and a text
    drawn from A alone gives A nearly all the weight."""
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.full(50, 0.3))
    b = rng.dirichlet(np.full(50, 0.3))
    for share, expected in ((0.3, (0.3, 0.7)), (1.0, (1.0, 0.0))):
        from_a = rng.random(40_000) < share
        tokens = np.where(from_a, rng.choice(50, 40_000, p=a), rng.choice(50, 40_000, p=b))
        logs = np.log(np.stack([a[tokens], b[tokens]]))
        weights, steps, history = em_weights(logs, iterations=500)
        assert weights == pytest.approx(expected, abs=0.02)
        assert weights.sum() == pytest.approx(1.0)
        assert all(
            later >= earlier - 1e-12 for earlier, later in zip(history, history[1:], strict=False)
        )
        assert 1 < steps <= 500


@pytest.fixture
def text(numbered_text):
    return numbered_text(400)


def compare(text, *specs, **kw):
    return lmeval.compare(list(specs), text=text, bootstrap=0, **kw)


def test_a_mixture_of_rows_beats_or_ties_each_and_is_verified(text):
    result = compare(text, "kn2=ngram:order=2", "kn4=ngram:order=4", "both=mix:of=kn2+kn4")
    rows = {r["label"]: r for r in result.results}
    mix = rows["both"]
    assert mix.get("error") is None and mix["verified"] is True
    assert [r["label"] for r in result.results] == ["kn2", "kn4", "both"]  # as asked
    details = mix["details"]
    assert sum(details["weights"].values()) == pytest.approx(1.0)
    assert details["fitted"] is True and details["em_iterations"] >= 1
    ppl = details["valid_ppl"]
    assert ppl["mix"] <= min(ppl["kn2"], ppl["kn4"]) + 1e-9  # on the text it was fitted on
    assert (
        mix["bits_per_char"]
        <= min(rows["kn2"]["bits_per_char"], rows["kn4"]["bits_per_char"]) + 0.01
    )


def test_a_mixture_of_one_model_is_that_model(text):
    result = compare(text, "kn=ngram:order=3", "one=mix:of=kn")
    rows = {r["label"]: r for r in result.results}
    assert rows["one"]["details"]["weights"] == {"kn": 1.0}
    np.testing.assert_array_equal(result.scores["one"].logprobs, result.scores["kn"].logprobs)


def test_given_weights_are_normalised_and_used(text):
    result = compare(text, "a=uniform", "b=ngram:order=3", "m=mix:of=a+b,weights=1+3")
    rows = {r["label"]: r for r in result.results}
    assert rows["m"]["details"]["weights"] == {"a": 0.25, "b": 0.75}
    a, b = result.scores["a"].logprobs, result.scores["b"].logprobs
    np.testing.assert_allclose(
        result.scores["m"].logprobs, np.log(0.25 * np.exp(a) + 0.75 * np.exp(b)), rtol=1e-12
    )


def test_a_mixture_of_specs_fits_its_own_parts(text):
    [row] = compare(text, "mix:of=uniform+ngram:order=3").results
    assert row.get("error") is None and row["verified"] is True
    assert set(row["details"]["weights"]) == {"uniform", "ngram:order=3"}


def test_rows_of_other_tokens_cannot_be_mixed(tmp_path, text):
    """A saved word model predicts other tokens than the comparison's characters: the
    mixture's row fails, saying which row and tokenizer."""
    words = lmeval.compare(
        ["w=ngram:order=2"], text=text, tokenizer="word", save_models=tmp_path, bootstrap=0
    )
    assert words.results[0].get("error") is None
    result = compare(text, f"w=saved:path={tmp_path / 'w.lmz'}", "c=ngram:order=2", "m=mix:of=w+c")
    [row] = [r for r in result.results if r["label"] == "m"]
    assert "predict different tokens" in row["error"] and "'w'" in row["error"]


class Failing(lmeval.LanguageModel):
    name = "failing"

    def fit(self, train_ids, valid_ids=None):
        raise RuntimeError("out of cheese")

    def score(self, ids):
        raise AssertionError("never scored")


def test_a_failed_part_fails_the_mixture_naming_it(text):
    host = lmeval.load_host()
    host.models.add("failing", Failing, "test")
    result = compare(text, "bad=failing", "m=mix:of=bad+uniform", host=host)
    bad, mixed = result.results
    assert "out of cheese" in bad["error"]
    assert "'bad'" in mixed["error"] and "failed" in mixed["error"]


@pytest.mark.parametrize(
    ("specs", "word"),
    [
        (["m=mix:of=a+b", "a=uniform"], "does not have"),
        (["m=mix:of=n", "n=mix:of=m"], "circle"),
        (["m=mix:of=a+a", "a=uniform"], "twice"),
        (["m=mix:of=a,weights=1+2", "a=uniform"], "one per model"),
    ],
)
def test_bad_mixtures_are_one_line_before_any_training(text, specs, word):
    out = run_lmeval("compare", *sum((["-m", s] for s in specs), []), "--text", text)
    out.assert_one_line_error(2, word)


def test_a_mixture_needs_held_out_text_to_fit_its_weights_on_rows(tmp_path, text):
    """Its rows were trained on all the training text; weights fitted there would favour
    the one that memorised it. With no validation split the row says so."""
    result = compare(text, "a=ngram:order=2", "m=mix:of=a+uniform", split=(0.9, 0.0, 0.1))
    assert "validation" in result.results[1]["error"]


def test_the_mixture_saves_its_parts_and_passes_the_kit(tmp_path, text):
    out = CliRunner().invoke(cli, ["check", "mix:of=uniform+ngram:order=2", "--format", "json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["passed"] is True, report


def test_generate_samples_from_a_mixture(text):
    out = run_lmeval(
        "generate", "-m", "mix:of=ngram:order=3+ngram:order=5", "--text", text, "-n", "40",
        "--prefix", "the time", "--seed", "3",
    )  # fmt: skip
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("the time") and len(out.stdout) > 40


def test_a_suite_mixes_its_own_rows_through_the_cache(tmp_path, monkeypatch, numbered_text):
    """In a suite, mix:of= names other models of the suite: the mixture's run fits them
    too, and finds them in the model cache when their own runs came first."""
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'bootstrap = 0\n[datasets.d]\ntext = "{numbered_text(300)}"\n'
        '[models.kn]\nmodel = "ngram"\norder = [2, 4]\n'
        '[models.both]\nspec = "mix:of=kn-order2+kn-order4"\n'
    )
    records = lmeval.run_suite(suite, host=lmeval.load_host())
    mixed = next(r for r in records if r["label"] == "both")
    assert mixed.get("error") is None and mixed["verified"] is True
    best = min(r["bits_per_char"] for r in records if r["label"].startswith("kn"))
    assert mixed["bits_per_char"] <= best + 0.01


def test_the_default_comparison_mixes_its_own_rows():
    # a bare `lmeval compare` runs every recommended spec: the mixture's parts must be
    # rows of it (labelled by their specs), or it would fit them a second time
    host = lmeval.load_host()
    specs = [
        lmeval.parse_spec(cls.recommended) for _, cls in host.models.items() if cls.recommended
    ]
    mixes = [spec for spec in specs if spec.name == "mix"]
    assert len(mixes) == 1
    rows = {spec.label for spec in specs} - {mixes[0].label}
    parts = mixes[0].params["of"].split("+")
    assert len(parts) == 2 and set(parts) <= rows


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("weights", [1.0], "weights are not 2 numbers"),
        ("weights", [0.5, -0.5], "weights are not 2 numbers"),
        ("weights", [0.0, 0.0], "weights are not 2 numbers"),
        ("weights", "many", "weights are not 2 numbers"),
        ("parts", [{"item": "kn3", "model": "ngram"}], "parts are not the models of its of="),
    ],
)
def test_a_tampered_saved_mixture_is_refused_on_load(tmp_path, text, key, value, message):
    import zipfile

    from lmeval_mix import Mix

    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text.read_text())
    model = lmeval.build_model("mix:of=uniform+ngram:order=2", vocab)
    model.fit(tok.encode(text.read_text()))
    model.save(tmp_path / "m")
    with zipfile.ZipFile(tmp_path / "m") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(members["mix.json"])
    meta[key] = value
    members["mix.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "bad", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert np.isfinite(Mix.load(tmp_path / "m").score(tok.encode("the"))).all()
    with pytest.raises(lmeval.LmevalError, match=message):
        Mix.load(tmp_path / "bad")


def _default_host(with_rnn: bool):
    """The usual models, with a stand-in for the rnn (the default mixture's part) that
    fits in no time, or none."""
    from lmeval_uniform import Uniform

    class StandIn(Uniform):
        name = "rnn"
        yardstick = False
        recommended = "rnn:budget=60s"
        params = (lmeval.Param("budget", str, "60s", "ignored: a stand-in"),)

    host = lmeval.load_host()
    host.models.remove("rnn")
    if with_rnn:
        host.models.add("rnn", StandIn, "test")
    return host


def test_the_default_comparison_has_its_mixture_row(text):
    result = lmeval.compare(None, text=text, host=_default_host(True), bootstrap=0)
    rows = {r["label"]: r for r in result.results}
    mix = rows["mix:of=ngram:order=5+rnn:budget=60s"]
    assert mix.get("error") is None and mix["verified"] is True
    assert mix["bits_per_char"] <= rows["ngram:order=5"]["bits_per_char"] + 0.01


@pytest.mark.parametrize(
    ("with_rnn", "data", "why"),
    [
        (True, {"split": (0.9, 0.0, 0.1)}, "no validation text"),
        (False, {}, "rnn:budget=60s"),  # its part's plugin is not installed
    ],
)
def test_the_default_comparison_leaves_out_a_mixture_it_cannot_make(text, with_rnn, data, why):
    with pytest.warns(lmeval.LmevalWarning, match=f"leaves out mix:of=.*{why}"):
        result = lmeval.compare(None, text=text, host=_default_host(with_rnn), bootstrap=0, **data)
    labels = [r["label"] for r in result.results]
    assert "ngram:order=5" in labels and not any(label.startswith("mix") for label in labels)
    assert all(r.get("error") is None for r in result.results)


def test_a_suite_built_in_python_mixes_its_rows_and_ranks_no_mixture(tmp_path, numbered_text):
    path = tmp_path / "s.toml"
    path.write_text(f'[datasets.d]\ntext = "{numbered_text(300)}"\n[models.u]\nmodel = "uniform"\n')
    host = lmeval.load_host()
    data = lmeval.load_suite(path, host).datasets
    models = [lmeval.parse_spec(s) for s in ("a=ngram:order=2", "m=mix:of=a+uniform", "uniform")]
    suite = lmeval.Suite(name="py", datasets=data, models=models, bootstrap=200)
    records = lmeval.run_suite(suite, output=tmp_path / "r.jsonl", cache=False, host=host)
    by_label = {r["label"]: r for r in records}
    assert by_label["m"].get("error") is None and by_label["m"]["verified"] is True
    assert by_label["m"]["vs_best"] is None  # its own parts are no rivals


def test_weights_of_any_size_and_a_one_model_mixture_without_validation(text):
    result = compare(
        text,
        "kn=ngram:order=2",
        "w=mix:of=kn+uniform,weights=100000000000000000000+1",
        "one=mix:of=kn",
        split=(0.9, 0.0, 0.1),
    )
    rows = {r["label"]: r for r in result.results}
    assert rows["w"].get("error") is None and rows["one"].get("error") is None
    assert rows["w"]["details"]["weights"]["kn"] == pytest.approx(1.0, abs=1e-15)
    assert rows["one"]["bits_per_char"] == pytest.approx(rows["kn"]["bits_per_char"], rel=1e-12)


def test_a_suite_of_mixtures_in_a_circle_is_one_line_naming_the_model(tmp_path, numbered_text):
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'[datasets.d]\ntext = "{numbered_text(50)}"\n'
        '[models.m]\nspec = "mix:of=n"\n[models.n]\nspec = "mix:of=m"\n'
    )
    with pytest.raises(lmeval.UsageError) as caught:
        lmeval.load_suite(suite, lmeval.load_host())
    assert (
        str(caught.value)
        == f"{suite}: models.m: models made from each other in a circle: m -> n -> m"
    )


def test_a_mixture_with_a_cheating_part_is_refused(text):
    cheats = str(Path(__file__).resolve().parent / "cheating_models.py")
    result = compare(
        text, "kn=ngram:order=3", "m=mix:of=kn+peek-current", plugins=[cheats], verify=8
    )
    rows = {r["label"]: r for r in result.results}
    assert rows["kn"]["verified"] is True
    assert rows["m"]["perplexity"] is None and "normalisation" in rows["m"]["error"]


@pytest.mark.slow
def test_the_default_comparison_under_isolate_leaves_out_its_mixture(text):
    # slow: the isolated children know only the real rnn, which trains its 60 s there
    with pytest.warns(lmeval.LmevalWarning, match="leaves out mix:of=.*--isolate"):
        result = lmeval.compare(
            None, text=text, host=_default_host(True), bootstrap=0, isolate=True
        )
    labels = [r["label"] for r in result.results]
    assert "ngram:order=5" in labels and not any(label.startswith("mix") for label in labels)
