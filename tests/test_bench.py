"""``lmeval bench``: records appended as runs finish, nothing run twice, same records
whichever executor runs them, and a killed benchmark resumed without loss."""

from __future__ import annotations

import json
import os
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
def ray_cluster(tmp_path):
    """A local Ray cluster on 127.0.0.1 with two CPUs, started and stopped by the test."""
    pytest.importorskip("ray", reason="needs the ray extra (pip install 'lmeval[ray]')")
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
