"""The rnn model against hostile parameters and checkpoints, and the signals a run gets.

What must hold: scoring memory is set by the model and the chunk, not by the
text; a checkpoint is checked before anything is built from it; a network too
large for the memory there is, a thread count beyond the cores, a seed torch
cannot take and a budget that rounds to nothing are refused before anything
trains (exit 2); SIGTERM stops training as Ctrl-C does. The cases about memory
run under an address-space cap (:func:`hostile.run_lmeval`, or a child that sets
its own), so that a regression fails instead of filling the machine.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import DEFAULT_CAP_MB, run_lmeval

import lmeval
from lmeval_rnn import RNN

TEXT = "".join(
    f"the time traveller said line {i} was {'odd' if i % 2 else 'even'}.\n" for i in range(40)
)
# device=cpu everywhere: the address-space cap and the estimates here are the CPU's
TINY = "hidden=8,budget=300tok,threads=1,device=cpu"
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="the memory there is is read from /proc (Linux)"
)


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A tiny rnn saved by ``compare --save-models`` (an ``.lmz``)."""
    folder = tmp_path_factory.mktemp("saved")
    (folder / "small.txt").write_text(TEXT, encoding="utf-8")
    lmeval.compare([f"tiny=rnn:{TINY}"], text=folder / "small.txt", save_models=folder, verify=0)
    return folder / "tiny.lmz"


def edited(archive: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of ``archive`` in ``folder`` whose checkpoint ``edit`` changed in place."""
    with zipfile.ZipFile(archive) as src:
        meta = src.read("meta.json")
        checkpoint = torch.load(io.BytesIO(src.read("model")), weights_only=True)
    edit(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    path = folder / "edited.lmz"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("meta.json", meta)
        out.writestr("model", buffer.getvalue())
    return path


def checkpoint(archive: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    """The checkpoint inside ``archive`` (what ``RNN.save`` writes), changed by ``edit``."""
    with zipfile.ZipFile(archive) as src:
        data = torch.load(io.BytesIO(src.read("model")), weights_only=True)
    edit(data)
    path = folder / "model.pt"
    torch.save(data, path)
    return path


# -- refused before anything trains ---------------------------------------------------


@linux_only
@pytest.mark.parametrize(
    ("params", "words"),
    [
        # 6.4 GB of weights; everything training keeps, about 35 GB
        (
            "hidden=20000",
            ["rnn:hidden=20000,", "needs about", "weights 6.4 GB", "GB of address space left"],
        ),
        # 400 MB of weights fit, not the 2.7 GB that training them takes
        ("hidden=5000", ["hidden=5000", "adam state", "address space", "lower hidden"]),
        ("layers=1000000000", ["layers=1000000000", "needs about", "TB"]),
        ("batch=100000,steps=100000", ["batch=100000", "activations"]),
        ("threads=100000", ["threads", f"{CORES} CPU core"]),
        ("seed=-1", ["seed", "2**64 - 1"]),
        ("seed=99999999999999999999", ["seed", "2**64 - 1"]),
        ("budget=0.0001s", ["budget", "rounds to 0s", "0.001s"]),
        ("budget=0tok", ["budget", "positive"]),
        ("budget=0.4tok", ["budget", "rounds to 0 tokens", "1tok"]),
    ],
)
def test_a_bad_spec_is_refused_before_anything_trains(tmp_path, text, params, words):
    given = dict(item.split("=") for item in params.split(","))
    spec = "rnn:" + ",".join(f"{k}={v}" for k, v in {**given, "device": "cpu"}.items())
    spec += "" if "threads" in given else ",threads=1"
    # uniform comes first: refused before it trains, nothing is written
    run = run_lmeval(
        "compare", "-m", "uniform", "-m", spec, "--text", text,
        "--format", "json", "-o", "out.json", cwd=tmp_path, memory_mb=DEFAULT_CAP_MB,
    )  # fmt: skip
    run.assert_one_line_error(2, *words)
    assert not (tmp_path / "out.json").exists()


def test_the_estimate_counts_the_real_parameters():
    """The estimate is made from the parameters alone; the network fitted has exactly
    the weights it counted, whatever the cell, input and depth."""
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(TEXT)
    for params in [
        {"cell": "rnn"},
        {"cell": "gru", "layers": 2},
        {"cell": "lstm", "layers": 3, "embedding": 5},
        {"cell": "rnn", "layers": 2, "embedding": 3},
    ]:
        model = RNN(vocab, hidden=8, budget="100tok", threads=1, device="cpu", **params)
        estimate = model.memory_estimate()
        assert model.num_params is None  # nothing was built to make it
        model.fit(tok.encode(TEXT))
        assert estimate.params == model.num_params, params
        weights = 4 * model.num_params
        assert (estimate.weights, estimate.gradients, estimate.optimizer) == (
            weights,
            weights,
            2 * weights,
        )
        assert estimate.total > 5 * weights and estimate.activations > 0
    assert RNN(vocab, optimizer="sgd", device="cpu").memory_estimate().optimizer == 0


def test_training_is_refused_when_the_memory_went_since_construction(monkeypatch):
    """Checked again at fit, with the data, against what is there then: a failed row
    (LmevalError), not a failed comparison."""
    import lmeval_rnn.model

    tok = lmeval.CharTokenizer()
    model = RNN(tok.fit(TEXT), hidden=8, budget="100tok", threads=1, device="cpu")
    monkeypatch.setattr(lmeval_rnn.model, "available_memory", lambda device: (1000, "available"))
    with pytest.raises(lmeval.LmevalError, match=r"needs about .*data .*, 1.0 kB available"):
        model.fit(tok.encode(TEXT))
    assert model.num_params is None


# -- scoring memory: the model and the chunk, not the text ----------------------------

#: In a child: train a tiny model, then cap the address space at what it uses plus the
#: answer (8 bytes a token) plus 24 MB, and score and take the distribution after a
#: text of N tokens. Copying the text even once (8 bytes a token) does not fit.
LONG_TEXT_CHILD = """
import resource, sys
import numpy as np
import lmeval
from lmeval_rnn import RNN

n = int(sys.argv[1])
text = "".join(f"the time traveller said {i % 7} things.\\n" for i in range(200))
tok = lmeval.CharTokenizer()
vocab = tok.fit(text)
model = RNN(vocab, hidden=16, budget="300tok", threads=1, device="cpu")
model.fit(tok.encode(text))
ids = np.resize(tok.encode(text), n)
ids.flags.writeable = False  # as the evaluator passes them
model.score(ids[:5000]), model.next_token_logprobs(ids[:5000])  # kernels loaded
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
cap = used + 8 * n + 24 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
logp = model.score(ids)
dist = model.next_token_logprobs(ids)
assert len(logp) == n and np.isfinite(logp).all() and np.exp(dist).sum() > 0.999
assert abs(dist[ids[-1]] - logp[-1]) < 1, "the distribution follows the text"
print("ok")
"""


@linux_only
def test_scoring_a_long_text_holds_the_answer_and_one_chunk(tmp_path):
    # two million tokens: the old scoring (a copy of the ids, the shifted inputs, the
    # float32 pieces and their concatenation, then float64: 31 bytes a token, and 16
    # for a long context) needed 62 MB more than this cap allows
    env = {k: v for k, v in os.environ.items() if k != "LMEVAL_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-c", LONG_TEXT_CHILD, "2000000"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.slow
def test_a_20_mb_line_scores_under_the_cap(tmp_path, text):
    """The whole command on one line of 20 MB (about 17 s on two cores): under 2 GB of
    address space with the scoring above (1.4 GB measured), where the old scoring
    peaked at 1.7 to 2.9 GB. What is left is the core's (the ids, their read-only
    copy, the scores and their checks)."""
    letters = np.frombuffer(b"the time traveller said line was odd even.", dtype=np.uint8)
    line = np.random.default_rng(0).choice(letters, size=20_000_000)
    (tmp_path / "big.txt").write_bytes(line.tobytes() + b"\n")
    run = run_lmeval(
        "compare", "-m", "rnn:hidden=16,budget=2000tok,threads=1,device=cpu", "--train", text,
        "--test", "big.txt", "--verify-seed", "1", "--format", "json", "-o", "out.json",
        cwd=tmp_path, memory_mb=DEFAULT_CAP_MB, timeout=300,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    [row] = json.loads((tmp_path / "out.json").read_text())["results"]
    assert row["tokens"] == 20_000_001 and row["verified"], row


# -- checkpoints: checked before anything is built from them --------------------------


@pytest.mark.parametrize(
    ("config", "words"),
    [
        # 8 kB whose config says hidden=12000: building it first allocated 2.4 GB
        ({"hidden": 12000}, ["tensor core.weight_ih_l0", "(32, ", "(48000, ", "hidden=12000"]),
        # a billion layers: not even their names are listed
        ({"layers": 10**9}, ["holds 6 tensors", "layers=1000000000", "implies 4000000002"]),
    ],
)
def test_a_small_checkpoint_claiming_a_huge_network_allocates_nothing(
    tmp_path, archive, config, words
):
    path = edited(archive, tmp_path, lambda c: c["config"].update(config))
    run = run_lmeval("generate", "--load", path, "-n", "3", cwd=tmp_path, memory_mb=DEFAULT_CAP_MB)
    run.assert_one_line_error(1, str(path), "damaged rnn checkpoint", *words)


def _set(key: str, value) -> Callable[[dict], None]:
    return lambda c: c["state"].update({key: value(c["state"][key]) if callable(value) else value})


# only configs no larger than their file here: these run in the test process
@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c["config"].update(hidden=9), ["core.weight_ih_l0", "(32, ", "(36, "]),
        (lambda c: c["state"].pop("head.bias"), ["missing head.bias"]),
        (_set("stray", torch.zeros(3)), ["unexpected stray"]),
        (_set("head.bias", [0.0, 1.0]), ["head.bias is a list, not a tensor"]),
        (_set("head.bias", lambda t: t.double()), ["head.bias", "float64", "float32"]),
        (_set("head.bias", lambda t: t.half()), ["head.bias", "float16"]),
        # a stride-0 view: 4 bytes claiming to be a 32 x 8 matrix
        (_set("core.weight_hh_l0", torch.zeros(1).expand(32, 8)), ["not stored contiguously"]),
        (lambda c: c.update(state=[1, 2]), ["state is a list"]),
        (lambda c: c["config"].update(cell="rnn"), ["missing core.W_xh.0", "unexpected"]),
        (lambda c: c["config"].update(seed=-1), ["seed", "2**64 - 1"]),
    ],
)
def test_a_checkpoint_unlike_its_config_is_one_line(tmp_path, archive, edit, words):
    path = checkpoint(archive, tmp_path, edit)
    with pytest.raises(lmeval.LmevalError) as caught:
        RNN.load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "damaged" in message, message
    for word in words:
        assert word in message, (word, message)


def test_a_checkpoint_from_a_machine_with_more_cores_is_clamped(tmp_path, archive):
    path = edited(archive, tmp_path, lambda c: c["config"].update(threads=100_000))
    # in a child: 100000 threads crashed the process (a segmentation fault)
    run = run_lmeval("generate", "--load", path, "-n", "5", "--prefix", "the", cwd=tmp_path)
    assert run.code == 0 and run.stdout.startswith("the"), run.stderr
    path = checkpoint(archive, tmp_path, lambda c: c["config"].update(threads=100_000))
    assert RNN.load(path).config["threads"] == CORES


# -- SIGTERM stops training as Ctrl-C does ---------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_stops_training_and_keeps_the_rows(tmp_path, text):
    """What ``timeout``, ``docker stop`` and batch schedulers send: training stops at the
    end of the batch, the model trained so far is scored, the comparison goes on."""
    # stderr on a terminal, so that the progress bars show when training starts
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "LMEVAL_PLUGINS"}
    spec = "rnn:hidden=16,budget=60s,threads=1,device=cpu,epochs=1000000,patience=0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmeval", "compare", "-m", spec, "-m", "uniform"]
        + ["--text", str(text), "--format", "json", "-o", "out.json"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env={**env, "PYTHONWARNINGS": "ignore"},
    )
    os.close(slave)
    seen = b""

    def drain(seconds: float) -> None:
        nonlocal seen
        if select.select([master], [], [], seconds)[0]:
            try:
                seen += os.read(master, 1 << 16)
            except OSError:  # the child closed the terminal
                time.sleep(seconds)

    try:
        deadline = time.monotonic() + 60
        while b"train rnn" not in seen and proc.poll() is None and time.monotonic() < deadline:
            drain(0.1)
        assert b"train rnn" in seen, seen.decode(errors="replace")[-2000:]
        drain(0.3)  # a few batches in
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        while proc.poll() is None and time.monotonic() - sent < 30:
            drain(0.1)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 0, seen.decode(errors="replace")[-2000:]
    assert took < 15  # not the 60 s budget
    rnn, uniform = json.loads((tmp_path / "out.json").read_text())["results"]
    assert rnn["details"]["stop_reason"] == "interrupted" and rnn["verified"]
    assert rnn["details"]["train_seconds"] < 30
    assert uniform["verified"] and np.isfinite(uniform["perplexity"])
