"""``lmeval bench``: records appended as runs finish, nothing run twice, same records
whichever executor runs them, and a killed benchmark resumed without loss."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import run_lmeval

import lmeval
from lmeval.bench import stable
from lmeval.benchtables import read_records

NGRAM_SUITE = """
name = "t"
seeds = [0, 1]
bootstrap = 200
[datasets.doc]
dataset = "pydoc-topics"
[datasets.nums]
text = "nums.txt"
split = "0.8,0.1,0.1"
[models.u]
model = "uniform"
[models.kn]
model = "ngram"
order = [2, 3]
"""


@pytest.fixture
def suite(tmp_path, numbered_text, monkeypatch):
    """A suite file of 12 quick n-gram runs, its own cache folder in the environment."""
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copy(numbered_text(200), tmp_path / "nums.txt")
    path = tmp_path / "s.toml"
    path.write_text(NGRAM_SUITE)
    return path


def stable_by_run(records):
    return {r["run_id"]: stable(r) for r in records}


def test_a_second_invocation_runs_nothing_and_prints_the_same_table(suite, tmp_path):
    first = run_lmeval("bench", suite, "--format", "markdown", cwd=tmp_path)
    assert first.code == 0, first.stderr
    results = tmp_path / "s.results.jsonl"
    records = read_records(results)
    assert len(records) == 2 * 3 * 2
    assert all(r["verified"] is True and r.get("error") is None for r in records)
    second = run_lmeval("bench", suite, "--format", "markdown", cwd=tmp_path)
    assert second.code == 0
    assert second.stdout == first.stdout
    assert "0 run(s) done" in second.stderr and "12 recorded before" in second.stderr
    assert read_records(results) == records  # nothing appended
    # the report, from the file alone, is the same table
    report = run_lmeval("bench", "report", results, "--format", "markdown", cwd=tmp_path)
    assert report.stdout == first.stdout


def test_records_hold_what_reproduces_them(suite, tmp_path):
    [record] = [
        r
        for r in lmeval.run_suite(suite, host=lmeval.load_host())
        if r["label"] == "kn-order3" and r["dataset"] == "nums" and r["seed"] == 0
    ]
    assert record["format"] == "lmeval-bench/1"
    assert record["resolved"]["order"] == 3 and record["model"] == "ngram"
    assert set(record["checksums"]) == {"train", "valid", "test"}
    assert record["data"]["text"].endswith("nums.txt") and record["data"]["tokenizer"] == "char"
    versions = record["versions"]
    assert versions["lmeval"] == lmeval.__version__ and versions["numpy"]
    assert versions["plugins"]["ngram"]["distribution"] == "lmeval"
    assert record["peak_memory_bytes"] > 10 * 2**20
    assert record["fit_seconds"] >= 0 and record["score_seconds"] >= 0
    assert record["host"] and record["started"].endswith("+00:00")
    assert record["bits_per_char_ci"][0] < record["bits_per_char"] < record["bits_per_char_ci"][1]
    assert record["from_cache"] is False and len(record["cache_key"]) == 32
    # a bench record is compare's row and the bench keys, nothing else
    from lmeval.bench import BENCH_KEYS
    from lmeval.records import EXTRA_KEYS, RECORD_KEYS

    row_keys = set(RECORD_KEYS) | set(EXTRA_KEYS) | set(lmeval.load_host().metrics)
    assert set(record) - row_keys == set(BENCH_KEYS)


def test_a_model_that_draws_no_random_numbers_is_fitted_once_for_every_seed(suite, tmp_path):
    records = lmeval.run_suite(suite, host=lmeval.load_host())
    by_seed = {(r["dataset"], r["label"], r["seed"]): r for r in records}
    for data in ("doc", "nums"):
        for label in ("u", "kn-order2", "kn-order3"):  # uniform and ngram say seeded = False
            first, second = by_seed[data, label, 0], by_seed[data, label, 1]
            assert first["from_cache"] is False and second["from_cache"] is True
            assert first["cache_key"] == second["cache_key"]
            assert first["bits_per_char"] == second["bits_per_char"]


def test_a_rerun_uses_the_cached_models_and_gives_the_same_records(suite, tmp_path):
    host = lmeval.load_host()
    first = lmeval.run_suite(suite, host=host)
    again = lmeval.run_suite(suite, host=host, rerun=True)
    assert all(r["from_cache"] for r in again if r["model"] != "uniform" or r["cache_key"])
    assert stable_by_run(again) == stable_by_run(first)
    assert len(read_records(tmp_path / "s.results.jsonl")) == 2 * len(first)


def test_dry_run_says_what_is_recorded_cached_or_to_run(suite, tmp_path):
    before = run_lmeval("bench", suite, "--dry-run", cwd=tmp_path)
    assert "12 to run" in before.stdout
    assert not (tmp_path / "s.results.jsonl").exists()
    lmeval.run_suite(suite, host=lmeval.load_host())
    recorded = run_lmeval("bench", suite, "--dry-run", cwd=tmp_path)
    assert "12 recorded" in recorded.stdout
    cached = run_lmeval("bench", suite, "--dry-run", "-o", tmp_path / "other.jsonl", cwd=tmp_path)
    assert "12 cached" in cached.stdout


def test_jobs_give_the_records_of_a_sequential_run(suite, tmp_path):
    host = lmeval.load_host()
    sequential = lmeval.run_suite(suite, output=tmp_path / "a.jsonl", cache=False, host=host)
    # the command line forks its workers (no torch imported, no thread running)
    out = run_lmeval("bench", suite, "--jobs", "2", "--no-cache", "-o", tmp_path / "b.jsonl")
    assert out.code == 0, out.stderr
    forked = read_records(tmp_path / "b.jsonl")
    # a process that imported torch spawns them instead
    import torch  # noqa: F401

    spawned = lmeval.run_suite(suite, output=tmp_path / "c.jsonl", cache=False, jobs=2, host=host)
    for parallel in (forked, spawned):
        assert {r["executor"] for r in parallel} == {"processes"}
        assert stable_by_run(parallel) == stable_by_run(sequential)


SLOW_SUITE = """
name = "slow"
bootstrap = 0
seeds = [0, 1, 2]
[datasets.nums]
text = "nums.txt"
[models.kn]
model = "ngram"
order = [2, 3]
[models.lstm]
model = "rnn"
hidden = 16
budget = "4000tok"
"""


def test_a_killed_benchmark_loses_only_the_run_in_progress(tmp_path, numbered_text):
    shutil.copy(numbered_text(200), tmp_path / "nums.txt")
    suite = tmp_path / "slow.toml"
    suite.write_text(SLOW_SUITE)
    results = tmp_path / "slow.results.jsonl"
    env = {**os.environ, "LMEVAL_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "lmeval", "bench", str(suite), "-q"]
    child = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    kept = read_records(results) if results.exists() else []
    assert 3 <= len(kept) < 9, "the kill should land midway"
    resumed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = read_records(results)
    assert final[: len(kept)] == kept  # what was recorded is still there, untouched
    assert len({r["run_id"] for r in final}) == 9 == len(final)
    clean = lmeval.run_suite(
        suite, output=tmp_path / "clean.jsonl", cache=False, host=lmeval.load_host()
    )
    assert stable_by_run(final) == stable_by_run(clean)


def test_a_record_cut_short_by_a_kill_is_cut_off_and_its_run_done_again(suite, tmp_path):
    host = lmeval.load_host()
    first = lmeval.run_suite(suite, host=host)
    results = tmp_path / "s.results.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # the last write, torn
    with pytest.warns(UserWarning, match="cut short"):
        again = lmeval.run_suite(suite, host=host)
    assert stable_by_run(again) == stable_by_run(first)
    assert len(read_records(results)) == len(first)  # the torn line replaced, not kept


def test_a_results_file_of_something_else_is_refused_untouched(suite, tmp_path):
    other = tmp_path / "notes.jsonl"
    other.write_text('{"a": 1}\n')
    result = run_lmeval("bench", suite, "-o", other, cwd=tmp_path)
    result.assert_one_line_error(1, f"{other}:1", "not an lmeval bench record")
    assert other.read_text() == '{"a": 1}\n'


def test_a_failed_run_is_recorded_exits_1_and_is_tried_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    plugin = tmp_path / "flaky.py"
    plugin.write_text(
        "import os, numpy as np, lmeval\n"
        "class Flaky(lmeval.LanguageModel):\n"
        "    name = 'flaky'\n"
        "    def fit(self, train_ids, valid_ids=None):\n"
        "        if os.environ.get('FLAKY_FAIL'):\n"
        "            raise RuntimeError('flaky broke')\n"
        "    def score(self, ids):\n"
        "        return np.full(len(ids), -np.log(len(self.vocab)))\n"
        "    def next_token_logprobs(self, context_ids):\n"
        "        return np.full(len(self.vocab), -np.log(len(self.vocab)))\n"
        "@lmeval.hookimpl\n"
        "def register_models(register):\n"
        "    register(Flaky)\n"
    )
    suite = tmp_path / "f.toml"
    suite.write_text(
        'plugins = ["flaky.py"]\nbootstrap = 0\n[datasets.d]\ndataset = "pydoc-topics"\n'
        '[models.f]\nmodel = "flaky"\n[models.u]\nmodel = "uniform"\n'
    )
    failed = run_lmeval("bench", suite, cwd=tmp_path, env={"FLAKY_FAIL": "1"})
    assert failed.code == 1
    assert "run(s) failed: d/f/seed 0" in failed.stderr
    [bad, good] = read_records(tmp_path / "f.results.jsonl")
    assert bad["error"] == "RuntimeError: flaky broke" and good.get("error") is None
    fixed = run_lmeval("bench", suite, cwd=tmp_path)
    assert fixed.code == 0, fixed.stderr
    assert "1 run(s) done" in fixed.stderr
    records = read_records(tmp_path / "f.results.jsonl")
    assert len(records) == 3 and records[-1]["label"] == "f" and records[-1].get("error") is None


def test_report_groups_and_filters(suite, tmp_path):
    lmeval.run_suite(suite, host=lmeval.load_host())
    results = tmp_path / "s.results.jsonl"
    out = run_lmeval(
        "bench", "report", results, "--format", "json", "--group-by", "label",
        "--filter", "dataset=nums", "--filter", "resolved.order>2",
    )  # fmt: skip
    assert out.code == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert row["label"] == "kn-order3" and row["runs"] == 2 and row["seeds"] == [0, 1]
    bad = run_lmeval("bench", "report", results, "--filter", "colour=red")
    bad.assert_one_line_error(2, "colour")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path, monkeypatch):
    """A local Ray cluster on 127.0.0.1 with two CPUs, started and stopped by the test."""
    pytest.importorskip("ray", reason="needs the ray extra (pip install 'lmeval[ray]')")
    # Ray takes 127.0.0.1 for the machine's routable address unless told that this
    # is a one-machine cluster; the head listens on loopback only
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # one token for the head, the driver and the workers, whatever ~/.ray holds
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    temp = Path("/tmp") / f"ray-{port}"  # Ray's socket paths must stay short
    start = subprocess.run(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_ray_executor_gives_the_records_of_a_sequential_run(suite, tmp_path, ray_cluster):
    out = run_lmeval(
        "bench", suite, "--executor", "ray", "--address", ray_cluster, "-o", tmp_path / "ray.jsonl",
        "--no-cache", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert out.code == 0, out.stderr
    on_ray = read_records(tmp_path / "ray.jsonl")
    assert {r["executor"] for r in on_ray} == {"ray"}
    sequential = lmeval.run_suite(
        suite, output=tmp_path / "seq.jsonl", cache=False, host=lmeval.load_host()
    )
    assert stable_by_run(on_ray) == stable_by_run(sequential)


def test_a_ray_address_where_nothing_listens_is_one_line_at_once(suite, tmp_path):
    pytest.importorskip("ray", reason="needs the ray extra (pip install 'lmeval[ray]')")
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    out = run_lmeval("bench", suite, "--executor", "ray", "--address", address, cwd=tmp_path)
    out.assert_one_line_error(1, f"cannot reach the Ray cluster at {address}")
    assert not (tmp_path / "s.results.jsonl").exists()


# -- what a review of bench found, each held here ------------------------------------

PLUGIN = """
import os, time
import numpy as np
import lmeval

class Probe(lmeval.LanguageModel):
    '''A uniform model whose fit does what the environment says: sleep, report a
    fit cut short by Ctrl-C, or kill its own process.'''
    name = "probe"
    params = (lmeval.Param("n", int, 0, "a number, to make several runs"),)
    def fit(self, train_ids, valid_ids=None):
        self.cut = os.environ.get("PROBE_INTERRUPT") == str(self.config["n"])
        if os.environ.get("PROBE_KILL") == str(self.config["n"]):
            os.kill(os.getpid(), 9)
        time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    def score(self, ids):
        return np.full(len(ids), -np.log(len(self.vocab)))
    def next_token_logprobs(self, context_ids):
        return np.full(len(self.vocab), -np.log(len(self.vocab)))
    def details(self):
        return {"interrupted": self.cut}
    def save(self, path):
        import json
        path.write_text(json.dumps(self.vocab.to_dict()))
    @classmethod
    def load(cls, path):
        import json
        model = cls(lmeval.Vocabulary.from_dict(json.loads(path.read_text())))
        model.cut = False
        return model

@lmeval.hookimpl
def register_models(register):
    register(Probe)
"""


@pytest.fixture
def probe_suite(tmp_path, monkeypatch):
    """A suite of 4 runs of the probe model (n = 0..3), its own cache folder."""
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "probe.py").write_text(PLUGIN)
    path = tmp_path / "p.toml"
    path.write_text(
        'plugins = ["probe.py"]\nbootstrap = 0\n[datasets.d]\ndataset = "pydoc-topics"\n'
        '[models.p]\nmodel = "probe"\nn = [0, 1, 2, 3]\n'
    )
    return path


def test_a_fit_cut_short_by_ctrl_c_is_an_interruption_never_a_result(probe_suite, tmp_path):
    """A model that stops its fit on Ctrl-C (the RNN keeps its best epoch) would give
    a half-trained row: bench takes it as the interruption it is, records nothing for
    that run, and the cache never keeps it, so the next invocation trains it whole."""
    stopped = run_lmeval("bench", probe_suite, env={"PROBE_INTERRUPT": "2"}, cwd=tmp_path)
    assert stopped.code == 130, stopped.stderr
    records = read_records(tmp_path / "p.results.jsonl")
    assert [r["label"] for r in records] == ["p-n0", "p-n1"]
    cached = json.loads(run_lmeval("cache", "list", "--format", "json").stdout)
    assert sorted(e["spec"] for e in cached) == ["probe:n=0", "probe:n=1"]  # not n=2
    finished = run_lmeval("bench", probe_suite, cwd=tmp_path)
    assert finished.code == 0 and "2 run(s) done" in finished.stderr


def test_jobs_stop_at_once_on_sigterm_and_keep_what_was_recorded(probe_suite, tmp_path):
    env = {**os.environ, "PROBE_SLEEP": "30", "LMEVAL_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "lmeval", "bench", str(probe_suite), "-j", "2", "-q"]
    child = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    time.sleep(3)  # the workers are asleep in their first fits
    began = time.monotonic()
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert time.monotonic() - began < 10  # not the 30 s the workers would still sleep
    assert b"interrupted" in err
    assert not (tmp_path / "p.results.jsonl").exists()  # no run finished: nothing written


def test_a_worker_that_dies_fails_its_run_alone(probe_suite, tmp_path):
    out = run_lmeval("bench", probe_suite, "-j", "2", env={"PROBE_KILL": "1"}, cwd=tmp_path)
    assert out.code == 1
    records = {r["label"]: r for r in read_records(tmp_path / "p.results.jsonl")}
    assert sorted(records) == ["p-n0", "p-n1", "p-n2", "p-n3"]
    assert "worker process died" in records["p-n1"]["error"]
    assert all(records[k].get("error") is None for k in ("p-n0", "p-n2", "p-n3"))


def test_bench_refuses_to_run_under_torchrun(suite, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(lmeval.UsageError, match="torchrun"):
        lmeval.run_suite(suite, host=lmeval.load_host())


def test_data_without_a_validation_split_and_an_infinite_perplexity(tmp_path, monkeypatch):
    """A split with no validation text, and an MLE row whose perplexity is infinite
    (test words never seen): both recorded, the infinity as null as compare's JSON has it."""
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "t.txt").write_text("one two three\n" * 40 + "four five six\n" * 5)
    suite = tmp_path / "s.toml"
    suite.write_text(
        'bootstrap = 0\n[datasets.d]\ntext = "t.txt"\nsplit = [0.9, 0.0, 0.1]\n'
        'tokenizer = "word"\n[models.mle]\nspec = "ngram:smoothing=mle,order=2"\n'
        '[models.kn]\nmodel = "ngram"\n'
    )
    records = lmeval.run_suite(suite, host=lmeval.load_host())
    assert [r.get("error") for r in records] == [None, None]
    assert records[0]["perplexity"] is None and records[1]["perplexity"] > 1
    assert read_records(tmp_path / "s.results.jsonl") == records


def test_a_whole_last_record_without_its_newline_is_kept(suite, tmp_path):
    host = lmeval.load_host()
    first = lmeval.run_suite(suite, host=host)
    results = tmp_path / "s.results.jsonl"
    results.write_bytes(results.read_bytes().rstrip(b"\n"))  # whole, only the newline lost
    suite.write_text(suite.read_text() + '[models.wb]\nspec = "ngram:smoothing=witten-bell"\n')
    again = lmeval.run_suite(suite, host=host)
    kept = read_records(results)
    assert kept[: len(first)] == first and len(kept) == len(again) == len(first) + 4


@pytest.mark.parametrize("name", ["r.jsonl.gz", "fifo"])
def test_results_that_cannot_be_appended_to_are_refused_before_running(suite, tmp_path, name):
    target = tmp_path / name
    if name == "fifo":
        os.mkfifo(target)
    out = run_lmeval("bench", suite, "-o", target, cwd=tmp_path, timeout=30)
    out.assert_one_line_error(2, str(target))


def test_cache_clear_touches_nothing_but_cache_entries(tmp_path):
    folder = tmp_path / "notacache"
    (folder / "js").mkdir(parents=True)
    (folder / "js" / "jsconfig.json").write_text("{}")
    (folder / "tt").mkdir()
    out = run_lmeval("cache", "clear", "--cache-dir", folder)
    assert out.code == 0 and "removed 0 cached model(s)" in out.stdout
    assert (folder / "js" / "jsconfig.json").exists() and (folder / "tt").is_dir()


def test_a_changed_model_file_is_a_new_run_and_paths_start_at_the_suite(tmp_path, monkeypatch):
    """An arpa model reads a file: editing the file makes another run (its content,
    not its name, is in the run id), and its path is taken from the suite's folder
    whatever the working directory."""
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "s").mkdir()
    text = tmp_path / "s" / "t.txt"
    text.write_text("".join(f"line {i} of {i % 7}\n" for i in range(200)))
    corpus = lmeval.load_corpus(text=text)
    for order in (1, 3):
        model, _ = lmeval.train(f"ngram:order={order}", corpus=corpus)
        model.save(tmp_path / "s" / f"o{order}.arpa")
    (tmp_path / "s" / "m.arpa").write_bytes((tmp_path / "s" / "o3.arpa").read_bytes())
    suite = tmp_path / "s" / "a.toml"
    suite.write_text(
        'bootstrap = 0\n[datasets.d]\ntext = "t.txt"\n[models.a]\nmodel = "arpa"\npath = "m.arpa"\n'
    )
    first = run_lmeval("bench", suite, "--format", "json", cwd=tmp_path)  # not the suite's folder
    assert first.code == 0, first.stderr
    (tmp_path / "s" / "m.arpa").write_bytes((tmp_path / "s" / "o1.arpa").read_bytes())
    second = run_lmeval("bench", suite, "--format", "json", cwd=tmp_path)
    assert "1 run(s) done" in second.stderr
    bpc = [json.loads(x.stdout)[0]["bits_per_char"]["mean"] for x in (first, second)]
    assert bpc[1] > bpc[0]  # the unigram file, not the old trigram's record
    report = run_lmeval("bench", "report", tmp_path / "s" / "a.results.jsonl", "--format", "json")
    [row] = json.loads(report.stdout)
    assert row["runs"] == 1 and row["bits_per_char"]["mean"] == bpc[1]  # the old one superseded
