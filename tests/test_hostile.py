"""The hostile-input battery of the core: outputs, inputs, saved models, signals.

Each case runs ``lmeval`` as a user would (a child process, see ``hostile.py``)
and asserts the exit status, that the one error line names the problem, and
that nothing is left or destroyed on disk; a case about memory runs under an
address-space cap, so that a regression fails instead of filling the machine.
The download, ARPA and RNN cases live beside their code's tests
(``test_hostile_download.py``, ``test_hostile_arpa.py``, ``test_hostile_rnn.py``).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from hostile import DEFAULT_CAP_MB, leftovers, run_lmeval

import lmeval

TEXT = "".join(
    f"the time traveller said line {i} was {'odd' if i % 2 else 'even'}.\n" for i in range(40)
)


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def compare(*args, cwd, **kw):
    return run_lmeval("compare", "-m", "uniform", *args, cwd=cwd, **kw)


# -- 1. never write where the user did not mean --------------------------------------


def test_output_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, text):
    target = tmp_path / "results" / "r.json"
    target.parent.mkdir()
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    run = compare("--text", text, "--format", "json", "-o", link, cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert json.loads(target.read_text(encoding="utf-8"))["results"][0]["label"] == "uniform"
    assert leftovers(tmp_path) == leftovers(target.parent) == []


def test_output_to_a_dangling_symlink_creates_its_target(tmp_path, text):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "new.json")
    assert compare("--text", text, "--format", "json", "-o", link, cwd=tmp_path).code == 0
    assert link.is_symlink() and json.loads((tmp_path / "new.json").read_text())["results"]


@pytest.mark.skipif(not os.path.islink("/dev/stdout"), reason="needs /dev/stdout as a link")
def test_output_to_dev_stdout_writes_through_and_leaves_it_a_link(tmp_path, text):
    out = tmp_path / "captured.json"
    with open(out, "w") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "lmeval", "compare", "-m", "uniform", "--text", str(text)]
            + ["--format", "json", "-o", "/dev/stdout"],
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    assert os.path.islink("/dev/stdout")
    assert json.loads(out.read_text())["results"][0]["label"] == "uniform"


def test_output_dash_is_standard_output(tmp_path, text):
    run = compare("--text", text, "--format", "json", "-o", "-", cwd=tmp_path)
    assert run.code == 0 and json.loads(run.stdout)["results"]
    assert not (tmp_path / "-").exists() and "wrote" not in run.stderr


def test_output_to_a_fifo_is_written_in_place(tmp_path, text):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    run = compare("--text", text, "--format", "json", "-o", fifo, cwd=tmp_path)
    reader.join(30)
    assert run.code == 0, run.stderr
    assert fifo.is_fifo() and json.loads(received[0])["results"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_one_line_naming_it(tmp_path, text):
    run = compare("--text", text, "-o", "/dev/full", cwd=tmp_path)
    run.assert_one_line_error(1, "no space left on device /dev/full")


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    old = tmp_path / "results.json"
    old.write_text("the previous results", encoding="utf-8")

    with pytest.raises(lmeval.LmevalError, match="no space left on the file system at") as info:
        with lmeval.atomic_write(old, "w") as handle:
            handle.write("half of the new results")
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises
    assert "\n" not in str(info.value) and str(old) in str(info.value)
    assert old.read_text(encoding="utf-8") == "the previous results"
    assert leftovers(tmp_path) == []


def test_a_read_only_output_is_refused_before_any_work(tmp_path, text):
    out = tmp_path / "kept.json"
    out.write_text("keep me", encoding="utf-8")
    out.chmod(0o444)
    if os.access(out, os.W_OK):
        pytest.skip("running as a user who may write read-only files (root)")
    compare("--text", text, "-o", out, cwd=tmp_path).assert_one_line_error(2, "read-only")
    assert out.read_text(encoding="utf-8") == "keep me"


def test_a_failed_run_never_destroys_an_existing_output(tmp_path, text):
    out = tmp_path / "out.json"
    out.write_text("keep me", encoding="utf-8")
    run = run_lmeval("compare", "-m", "nosuch", "--text", text, "-o", out, cwd=tmp_path)
    run.assert_one_line_error(2, "nosuch")
    assert out.read_text(encoding="utf-8") == "keep me" and leftovers(tmp_path) == []


def test_two_models_saved_to_one_file_are_refused_before_training(tmp_path, text):
    arpas = tmp_path / "arpas"
    arpas.mkdir()
    (tmp_path / "arpas_m.arpa").write_text("", encoding="utf-8")
    (arpas / "m.arpa").write_text("", encoding="utf-8")
    run = run_lmeval(
        "compare",
        "-m",
        "arpa:path=arpas/m.arpa",
        "-m",
        "arpa:path=arpas_m.arpa",
        "--text",
        text,
        "--save-models",
        "saved",
        cwd=tmp_path,
    )
    run.assert_one_line_error(2, "arpa:path=arpas/m.arpa", "arpa:path=arpas_m.arpa", "label")
    assert not (tmp_path / "saved").exists() or not list((tmp_path / "saved").iterdir())


def test_saved_models_say_where_they_went(tmp_path, text):
    result = lmeval.compare(
        ["a=uniform", "b=ngram:order=2"], text=text, save_models=tmp_path / "m", verify_seed=0
    )
    paths = [Path(r["details"]["saved_to"]) for r in result.results]
    assert [p.name for p in paths] == ["a.lmz", "b.lmz"] and all(p.is_file() for p in paths)


# -- 3. bounded memory: inputs checked before they are allocated --------------------


def test_an_endless_stream_of_zeros_is_refused_at_once(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    run = compare("--text", "/dev/zero", cwd=tmp_path, memory_mb=DEFAULT_CAP_MB, timeout=60)
    run.assert_one_line_error(1, "/dev/zero", "binary")


def test_an_endless_text_stream_stops_at_max_bytes(tmp_path):
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "w") as handle:
                while not stop.is_set():
                    handle.write("an endless line of text\n" * 1000)
        except OSError:
            pass  # the reader gave up: that is the point

    threading.Thread(target=feed, daemon=True).start()
    try:
        run = compare("--text", fifo, "--max-bytes", "1M", cwd=tmp_path, memory_mb=DEFAULT_CAP_MB)
    finally:
        stop.set()
    run.assert_one_line_error(1, "more than 1 MiB", "--max-bytes")


def test_a_gzip_bomb_stops_at_max_bytes(tmp_path):
    bomb = tmp_path / "bomb.txt.gz"
    with gzip.open(bomb, "wb") as handle:
        for _ in range(64):
            handle.write(b"a" * 2**20)  # 64 MiB of text, 64 KiB compressed
    run = compare("--text", bomb, "--max-bytes", "8M", cwd=tmp_path, memory_mb=DEFAULT_CAP_MB)
    run.assert_one_line_error(1, "more than 8 MiB once decompressed")


def test_a_damaged_gzip_file_is_named(tmp_path):
    good = gzip.compress(TEXT.encode() * 50)
    damaged = tmp_path / "t.txt.gz"
    damaged.write_bytes(good[:40] + bytes(b ^ 0xFF for b in good[40:80]) + good[80:])
    compare("--text", damaged, cwd=tmp_path).assert_one_line_error(1, "damaged gzip")


def test_a_nul_byte_anywhere_is_binary(tmp_path):
    late = tmp_path / "late.txt"
    late.write_bytes(TEXT.encode() * 3000 + b"\x00" + TEXT.encode())  # past 64 KiB
    compare("--text", late, cwd=tmp_path).assert_one_line_error(1, "binary", "offset")


def test_utf16_text_points_at_encoding(tmp_path):
    wide = tmp_path / "wide.txt"
    wide.write_text(TEXT, encoding="utf-16")
    compare("--text", wide, cwd=tmp_path).assert_one_line_error(1, "UTF-16", "--encoding utf-16")
    assert compare("--text", wide, "--encoding", "utf-16", cwd=tmp_path).code == 0


@pytest.mark.parametrize("size", ["0", "-5", "lots", "3X"])
def test_bad_max_bytes_is_a_usage_error(tmp_path, text, size):
    compare("--text", text, "--max-bytes", size, cwd=tmp_path).assert_one_line_error(2, size)


def _patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make the zip at ``path`` declare ``size`` bytes for ``member`` (in its central
    directory, which readers trust), as a hostile archive would."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.find(b"PK\x01\x02" + b"\x00" * 0)  # the first central directory entry
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name:
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not in {path}")


@pytest.fixture
def saved_model(tmp_path, text) -> Path:
    lmeval.compare(["m=ngram:order=2"], text=text, save_models=tmp_path / "saved", verify=0)
    return tmp_path / "saved" / "m.lmz"


@pytest.mark.parametrize("member", ["model", "meta.json"])
def test_an_archive_declaring_a_huge_member_is_refused_before_extraction(
    tmp_path, text, saved_model, member
):
    _patch_declared_size(saved_model, member, 2**31)
    run = run_lmeval(
        "compare",
        "-m",
        f"saved:path={saved_model}",
        "--text",
        text,
        cwd=tmp_path,
        memory_mb=DEFAULT_CAP_MB,
    )
    run.assert_one_line_error(1, str(saved_model), member)


def _rewrite(path: Path, members: dict[str, bytes | None]) -> None:
    """Replace (bytes) or drop (None) members of the zip at ``path``."""
    with zipfile.ZipFile(path) as archive:
        kept = {n: archive.read(n) for n in archive.namelist()}
    for name, data in members.items():
        if data is None:
            kept.pop(name, None)
        else:
            kept[name] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in kept.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ({"meta.json": b"[1, 2]"}, ["meta.json", "list"]),
        ({"meta.json": b"null"}, ["meta.json", "NoneType"]),
        ({"meta.json": b'{"format": "lmeval-model/1"}'}, ["meta.json", "'model'"]),
        ({"meta.json": b"{not json"}, ["damaged meta.json"]),
        ({"model": None}, ["no 'model' member"]),
        ({"meta.json": None}, ["no 'meta.json' member"]),
        ({"model": b"garbage, not a model"}, ["(its model)"]),
    ],
)
def test_damaged_archives_are_one_line_naming_the_file(tmp_path, text, saved_model, members, words):
    _rewrite(saved_model, members)
    run = run_lmeval("generate", "--load", saved_model, "-n", "5", cwd=tmp_path)
    line = run.assert_one_line_error(1, str(saved_model), *words)
    assert "/tmp" not in line.replace(str(tmp_path), "") and ".tmp" not in line


def test_an_rnn_checkpoint_error_names_the_archive_not_a_temporary_file(tmp_path, text):
    lmeval.compare(
        ["r=rnn:hidden=8,budget=300tok,threads=1"], text=text, save_models=tmp_path, verify=0
    )
    archive = tmp_path / "r.lmz"
    _rewrite(archive, {"model": b"not a torch checkpoint at all"})
    run = run_lmeval("generate", "--load", archive, "-n", "3", cwd=tmp_path)
    line = run.assert_one_line_error(1, str(archive))
    assert "tmp" not in line.replace(str(tmp_path), "")


# -- 7. one line, the right code, the right words -----------------------------------


def model_plugin(folder: Path, name: str, fit: str, score: str, ntl: str | None = None) -> Path:
    """A plugin file registering model ``name`` whose methods run the given lines."""
    body = [
        "import ctypes, time",
        "import numpy as np",
        "import lmeval",
        "",
        "class Model(lmeval.LanguageModel):",
        f"    name = {name!r}",
        "    def fit(self, train_ids, valid_ids=None):",
        f"        {fit}",
        "    def score(self, ids):",
        f"        return {score}",
    ]
    if ntl is not None:
        body += ["    def next_token_logprobs(self, context_ids):", f"        return {ntl}"]
    body += ["", "@lmeval.hookimpl", "def register_models(register):", "    register(Model)"]
    path = folder / f"{name}_model.py"
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["-m", "ngram:order=3,order=4"], 2, ["order is given twice"]),
        (["--split", "0.5,0.5"], 2, ["test set empty"]),
        (["--split", "0,0.5,0.5"], 2, ["training set empty"]),
        (["--seed", "-1"], 2, ["--seed"]),
        (["--seed", str(2**32)], 2, ["--seed"]),
        (["--verify-seed", str(2**64)], 2, ["--verify-seed"]),
    ],
)
def test_bad_requests_fail_before_any_work(tmp_path, text, args, code, words):
    run_lmeval("compare", *args, "--text", text, cwd=tmp_path).assert_one_line_error(code, *words)


def test_generating_from_a_model_with_no_probability_left_is_one_line(tmp_path, text):
    zeros = "np.full(len(self.vocab), -np.inf)"
    plugin = model_plugin(tmp_path, "zero", "pass", "np.full(len(ids), -np.inf)", zeros)
    run = run_lmeval(
        "generate", "-m", "zero", "--text", text, "-n", "5", "--plugin", plugin, cwd=tmp_path
    )
    run.assert_one_line_error(1, "cannot sample", "probability 0")


# -- 5. one process never dies for one model ------------------------------------------


def test_isolate_turns_a_crash_in_native_code_into_a_failed_row(tmp_path, text):
    # a segmentation fault, as a bug in native code makes
    plugin = model_plugin(tmp_path, "crash", "ctypes.string_at(0)", "np.zeros(len(ids))")
    args = ["-m", "crash", "-m", "uniform", "--text", text, "--plugin", plugin]
    args += ["--format", "json", "-o", "out.json"]
    unprotected = run_lmeval("compare", *args, cwd=tmp_path)
    assert unprotected.code < 0 and not (tmp_path / "out.json").exists()  # the whole run lost
    run = run_lmeval("compare", *args, "--isolate", cwd=tmp_path)
    assert run.code == 1, run.stderr
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    crash, uniform = results
    assert "killed by SIGSEGV" in crash["error"] and crash["details"]["isolated"]
    assert uniform["verified"] and uniform["perplexity"] > 1


def test_isolated_rows_equal_in_process_rows(text):
    rows = [
        lmeval.compare(["uniform", "ngram:order=3"], text=text, verify_seed=3, isolate=i).results
        for i in (False, True)
    ]
    keys = ["label", "perplexity", "tokens", "verified", "params"]
    assert [[r[k] for k in keys] for r in rows[0]] == [[r[k] for k in keys] for r in rows[1]]
    assert all(r["details"]["isolated"] for r in rows[1])


# -- 6. signals ------------------------------------------------------------------------


def _start_slow_comparison(tmp_path: Path, text: Path, *extra: str) -> subprocess.Popen:
    uniform = "np.full(len(ids), -np.log(len(self.vocab)))"
    plugin = model_plugin(tmp_path, "slow", "time.sleep(60)", uniform)
    env = {k: v for k, v in os.environ.items() if k != "LMEVAL_PLUGINS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmeval", "compare", "-m", "uniform", "-m", "slow"]
        + ["-m", "ngram", "--text", str(text), "--plugin", str(plugin)]
        + ["--format", "json", "-o", "out.json", *extra],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as a shell starts a background job: SIGINT ignored, which a child inherits
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN) if extra else None,
    )
    time.sleep(4 if extra else 2.5)  # uniform finished, slow is fitting
    return proc


@pytest.mark.parametrize(
    ("signum", "extra"),
    [(signal.SIGTERM, []), (signal.SIGINT, []), (signal.SIGTERM, ["--isolate"])],
)
def test_a_signal_keeps_the_finished_rows(tmp_path, text, signum, extra):
    proc = _start_slow_comparison(tmp_path, text, *extra)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    lines = stderr.splitlines()
    assert (
        lines[-1].startswith("lmeval: error: interrupted") and "not run: slow, ngram" in lines[-1]
    )
    assert "" not in lines and "Traceback" not in stderr  # no stray blank line
    written = json.loads((tmp_path / "out.json").read_text())
    assert [r["label"] for r in written["results"]] == ["uniform"]
    assert written["meta"]["interrupted"] == {"not_run": ["slow", "ngram"]}
    assert leftovers(tmp_path) == []


def test_interrupted_exception_holds_the_finished_rows(text):
    calls = []

    def interrupt_after_first(record):
        calls.append(record["label"])
        raise KeyboardInterrupt

    with pytest.raises(lmeval.Interrupted) as info:
        lmeval.compare(["uniform", "ngram"], text=text, on_result=interrupt_after_first)
    assert isinstance(info.value, KeyboardInterrupt)
    assert [r["label"] for r in info.value.comparison.results] == ["uniform"] == calls
    assert info.value.comparison.meta["interrupted"]["not_run"] == ["ngram"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("args", [["generate", "--load"], ["compare", "-m", "saved:path="]])
def test_a_device_as_saved_model_is_refused_not_read(tmp_path, text, args):
    *command, last = args
    argv = [*command, last + "/dev/zero"] if last.endswith("=") else [*args, "/dev/zero"]
    run = run_lmeval(*argv, "--text", text, cwd=tmp_path, memory_mb=DEFAULT_CAP_MB, timeout=60)
    run.assert_one_line_error(1, "/dev/zero is not a regular file")


def test_save_models_into_a_file_is_refused_before_any_work(tmp_path, text):
    taken = tmp_path / "models"
    taken.write_text("a file", encoding="utf-8")
    run = compare("--text", text, "--save-models", taken, cwd=tmp_path)
    run.assert_one_line_error(2, "is a file")
    assert taken.read_text(encoding="utf-8") == "a file"


FLAWED = """
import math, numpy as np, lmeval
class U(lmeval.LanguageModel):
    name = "u0"
    def fit(self, t, v=None): pass
    def score(self, ids): return np.full(len(ids), -math.log(len(self.vocab)))
class BadDetails(U):
    name = "baddetails"
    def details(self): raise TypeError("details broke")
class Refuses(U):
    name = "refuses"
    def fit(self, t, v=None): raise lmeval.UsageError("cannot fit this text")
@lmeval.hookimpl
def register_models(register): register(BadDetails); register(Refuses)
"""


@pytest.mark.parametrize(
    ("model", "words"), [("baddetails", "details broke"), ("refuses", "cannot fit")]
)
def test_a_model_failing_anywhere_fails_only_its_row(tmp_path, text, model, words):
    (tmp_path / "flawed.py").write_text(FLAWED, encoding="utf-8")
    run = run_lmeval(
        "compare", "-m", "uniform", "-m", model, "--text", text, "--plugin", "flawed.py",
        "--format", "json", "-o", "out.json", cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 1, run.stderr
    good, bad = json.loads((tmp_path / "out.json").read_text())["results"]
    assert good["verified"] and words in bad["error"]


def test_a_folder_where_a_model_would_be_saved_is_refused_before_training(tmp_path, text):
    (tmp_path / "m" / "uniform.lmz").mkdir(parents=True)
    run = compare("--text", text, "--save-models", tmp_path / "m", cwd=tmp_path)
    run.assert_one_line_error(2, "uniform.lmz", "folder")


def test_a_long_but_legal_output_name_is_written(tmp_path, text):
    out = tmp_path / ("r" * 246 + ".json")
    assert compare("--text", text, "--format", "json", "-o", out, cwd=tmp_path).code == 0
    assert json.loads(out.read_text())["results"] and leftovers(tmp_path) == []


def test_dev_stdout_appended_to_keeps_what_was_there(tmp_path, text):
    log = tmp_path / "log.txt"
    log.write_text("earlier\n", encoding="utf-8")
    with open(log, "a") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "lmeval", "compare", "-m", "uniform", "--text", str(text)]
            + ["--format", "csv", "-o", "/dev/stdout"],
            stdout=handle,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
    assert proc.returncode == 0
    assert log.read_text().splitlines()[:2] == ["earlier", log.read_text().splitlines()[1]]
    assert log.read_text().splitlines()[1].startswith("label,spec")


@pytest.mark.parametrize("encoding", ["utf-32", "utf-16-be", "utf-16-le"])
def test_wide_text_gets_its_own_encoding_named(tmp_path, encoding):
    wide = tmp_path / "wide.txt"
    wide.write_bytes(TEXT.encode(encoding))
    compare("--text", wide, cwd=tmp_path).assert_one_line_error(1, f"--encoding {encoding}")
    assert compare("--text", wide, "--encoding", encoding, cwd=tmp_path).code == 0


def test_a_nul_in_wide_text_is_refused(tmp_path):
    wide = tmp_path / "wide.txt"
    wide.write_bytes(TEXT.encode("utf-32"))
    run = compare("--text", wide, "--encoding", "utf-16", cwd=tmp_path)
    run.assert_one_line_error(1, "NUL")


def test_an_encoding_that_is_not_for_text_is_a_usage_error(tmp_path, text):
    compare("--text", text, "--encoding", "undefined", cwd=tmp_path).assert_one_line_error(
        2, "--encoding undefined"
    )


def test_an_archive_of_an_unknown_model_names_the_file(tmp_path, text, saved_model):
    with zipfile.ZipFile(saved_model) as archive:
        meta = json.loads(archive.read("meta.json"))
    _rewrite(saved_model, {"meta.json": json.dumps({**meta, "model": "nosuch"}).encode()})
    run = run_lmeval("generate", "--load", saved_model, "-n", "3", cwd=tmp_path)
    run.assert_one_line_error(1, str(saved_model), "'nosuch'", "not registered")


def test_many_short_lines_cost_memory_set_by_the_text_not_the_line_count(tmp_path):
    # 40 MB of two-character lines from a 39 KB file: a list of 20 M lines took 1.6 GB
    small = tmp_path / "lines.txt.gz"
    small.write_bytes(gzip.compress(b"a\n" * 20_000_000, 9))
    run = compare("--text", small, "--verify-seed", "1", cwd=tmp_path, memory_mb=1024)
    assert run.code == 0, run.stderr
