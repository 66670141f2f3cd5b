"""Suites: grids expand into runs; every malformed suite is one line before anything runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hostile import run_lmeval

import lmeval
from lmeval.suite import build_suite, load_suite


@pytest.fixture
def host():
    return lmeval.load_host()


def suite_dict(**overrides):
    data = {
        "name": "t",
        "seeds": [0, 1],
        "datasets": {"doc": {"dataset": "pydoc-topics"}},
        "models": {
            "uniform": {"model": "uniform"},
            "kn": {"model": "ngram", "order": [2, 3], "smoothing": "mkn"},
        },
    }
    data.update(overrides)
    return data


def test_a_grid_expands_into_labelled_runs_with_every_seed(host):
    suite = build_suite(suite_dict(), host)
    labels = [s.label for s in suite.models]
    assert labels == ["uniform", "kn-order2", "kn-order3"]
    assert [s.text for s in suite.models] == [
        "uniform",
        "ngram:order=2,smoothing=mkn",
        "ngram:order=3,smoothing=mkn",
    ]
    runs = suite.runs()
    assert len(runs) == 1 * 3 * 2
    assert [(r.spec.label, r.seed) for r in runs[:2]] == [("uniform", 0), ("uniform", 1)]


def test_two_grids_make_their_product_and_a_spec_can_fix_parameters(host):
    suite = build_suite(
        suite_dict(
            models={"kn": {"spec": "ngram:smoothing=add-k", "order": [2, 3], "sentences": [True]}},
            seeds=2,
        ),
        host,
    )
    assert [s.label for s in suite.models] == ["kn-order2", "kn-order3"]
    assert suite.models[0].params == {"smoothing": "add-k", "order": "2", "sentences": "true"}
    assert suite.seeds == [0, 1]


def test_paths_are_relative_to_the_suite_file(tmp_path, host):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.txt").write_text("a b\n" * 30)
    (tmp_path / "s.toml").write_text(
        '[datasets.t]\ntext = "data/t.txt"\n[models.u]\nmodel = "uniform"\n'
    )
    suite = load_suite(tmp_path / "s.toml", host)
    assert suite.name == "s"
    assert suite.datasets[0].source == {"text": str(tmp_path / "data" / "t.txt")}


DATA = '[datasets.d]\ndataset = "pydoc-topics"\n'
MODEL = '[models.x]\nmodel = "uniform"\n'
#: case -> (the whole suite file, the key the error names, a word it holds)
BAD = {
    "unknown top key": ("sedes = [1]\n" + DATA + MODEL, "sedes", "unknown key"),
    "bad seed type": ('seeds = ["one"]\n' + DATA + MODEL, "seeds", "whole number"),
    "unknown metric": ('metrics = ["bleu"]\n' + DATA + MODEL, "metrics", "bleu"),
    "unknown model": (DATA + '[models.x]\nmodel = "ngramm"\n', "models.x.model", "unknown model"),
    "bad parameter": (DATA + '[models.x]\nmodel = "ngram"\norder = ["two"]\n', "models.x", "order"),
    "unknown parameter": (DATA + '[models.x]\nmodel = "ngram"\nordr = 3\n', "models.x", "ordr"),
    "empty grid": (DATA + '[models.x]\nmodel = "ngram"\norder = []\n', "models.x.order", "empty"),
    "no models": (DATA, "models", "missing"),
    "unknown data key": (DATA + "shuffle = true\n" + MODEL, "datasets.d.shuffle", "unknown key"),
    "unknown dataset": ('[datasets.d]\ndataset = "nope"\n' + MODEL, "datasets.d.dataset", "nope"),
    "bad split": (DATA + "split = [0.5, 0.6, 0.1]\n" + MODEL, "datasets.d.split", "split"),
    "two labels alike": (
        DATA + '[models.x]\nmodel = "uniform"\n[models.y]\nmodel = "ngram"\norder = [2, 2]\n',
        "models.y.order",
        "twice",
    ),
    "not toml": ("[models.x\n", "not valid toml", "line"),
    "a comma in a value": (
        DATA + '[models.x]\nmodel = "arpa"\npath = "a,b.arpa"\n',
        "models.x.path",
        "comma",
    ),
    "a label ending in a newline": (
        DATA + '[models."x\\n"]\nmodel = "uniform"\n',
        "models.x",
        "label",
    ),
    "too few replicates": ("bootstrap = 5\n" + DATA + MODEL, "bootstrap", "at least"),
    "a malformed spec": (DATA + '[models.x]\nspec = "ngram:order"\n', "models.x.spec", "key=value"),
    "a fixed seed and several seeds": (
        "seeds = [0, 1]\n" + DATA + '[models.x]\nspec = "rnn:seed=3"\n',
        "seeds",
        "fixes its seed",
    ),
    "a grid of millions": (
        DATA
        + '[models.x]\nmodel = "ngram"\norder = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n'
        + "k = ["
        + ", ".join(str(1 + i / 1e5) for i in range(10_001))
        + "]\n",
        "models.x",
        "cut it",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_suite_is_one_line_naming_the_file_and_key(case, tmp_path):
    text, key, word = BAD[case]
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    result = run_lmeval("bench", suite, cwd=tmp_path)
    result.assert_one_line_error(2, str(suite), key, word)
    assert not (tmp_path / "bad.results.jsonl").exists()  # nothing half-written


def test_a_missing_data_file_fails_before_any_run(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[datasets.a]\ndataset = "pydoc-topics"\n[datasets.b]\ntext = "missing.txt"\n'
        '[models.u]\nmodel = "uniform"\n'
    )
    result = run_lmeval("bench", suite, cwd=tmp_path)
    result.assert_one_line_error(1, "datasets.b", "missing.txt")  # as compare --text
    assert not (tmp_path / "s.results.jsonl").exists()


def test_a_suite_built_in_python_needs_no_file(host):
    records = lmeval.bench.run_suite(
        suite_dict(models={"u": {"model": "uniform"}}, seeds=[3]), cache=False, host=host
    )
    [record] = records
    assert (record["label"], record["seed"], record["dataset"]) == ("u", 3, "doc")
    assert record["perplexity"] == pytest.approx(record["vocab_size"])


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "bench"


def test_the_example_suite_and_sweep_expand_as_their_comments_say(host):
    suite = load_suite(EXAMPLES / "suite.toml", host)
    assert [d.label for d in suite.datasets] == ["pydoc", "pydoc-words"]
    assert [m.label for m in suite.models] == [
        "uniform", "kn-order2", "kn-order3", "kn-order4", "kn-order5", "lstm",
    ]  # fmt: skip
    assert suite.seeds == [0, 1] and len(suite.runs()) == 24
    spec = importlib.util.spec_from_file_location("sweep", EXAMPLES / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    swept = build_suite(sweep.sweep_suite(None), host)
    assert [m.label for m in swept.models] == [
        *(f"kn-order{n}" for n in range(2, 7)),
        *(f"lstm-hidden{h}" for h in (32, 64, 128)),
    ]


@pytest.mark.slow
def test_the_example_suite_runs_end_to_end_and_a_second_time_at_once(tmp_path):
    env = {"LMEVAL_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "r.jsonl"
    args = ("bench", EXAMPLES / "suite.toml", "-o", out, "--format", "markdown")
    first = run_lmeval(*args, env=env, timeout=900)
    assert first.code == 0, first.stderr
    second = run_lmeval(*args, env=env)
    assert second.code == 0 and second.stdout == first.stdout
    assert "0 run(s) done" in second.stderr and "24 recorded before" in second.stderr
    records = lmeval.read_records(out)
    assert len(records) == 24 and all(r["verified"] for r in records)
