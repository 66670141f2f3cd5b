"""The rnn plugin: d2l's cell by hand, exact scoring, checkpoints, training paths.

Sizes are tiny so the whole file runs in seconds; the quality of training is
measured by ``benchmarks/rnn_quality.py``, not here.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import lmeval
import lmeval_rnn.model as rnn_model
from lmeval_rnn import RNN
from lmeval_rnn.model import parse_budget
from lmeval_rnn.sizes import cpu_bf16

TEXT = "".join(
    f"the time traveller {w} {i % 7} times.\n"
    for i, w in enumerate(["said", "smiled", "went", "came"] * 12)
)
# device=cpu: the tests compare with numbers computed on the CPU (and device=auto would
# pick a GPU where there is one); benchmarks/rnn_gpu_check.py checks the GPU path
TINY = {
    "hidden": 12,
    "dropout": 0.0,
    "steps": 8,
    "batch": 4,
    "epochs": 2,
    "budget": "none",
    "threads": 1,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def data():
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(TEXT)
    return tok, vocab, tok.encode(TEXT)


def fitted(data, **params) -> RNN:
    _, vocab, ids = data
    model = RNN(vocab, **{**TINY, **params})
    model.fit(ids)
    return model


@pytest.fixture(scope="module", params=["rnn", "gru", "lstm"])
def trained(request, data) -> RNN:
    return fitted(data, cell=request.param, layers=2 if request.param == "lstm" else 1)


def test_rnn_cell_one_step_by_hand(data):
    """d2l 8.5: H_1 = tanh(X_1 W_xh + H_0 W_hh + b_h), O_1 = H_1 W_hq + b_q, H_0 = 0."""
    _, vocab, ids = data
    model = fitted(data, cell="rnn", epochs=1)
    sd = {k: v.double().numpy() for k, v in model._net.state_dict().items()}
    w_xh, w_hh, b_h = sd["core.W_xh.0"], sd["core.W_hh.0"], sd["core.b_h.0"]
    w_hq, b_q = sd["head.W_hq"], sd["head.b_q"]
    assert w_xh.shape == (len(vocab), 12) and w_hq.shape == (12, len(vocab))

    def log_softmax(o):
        return o - np.log(np.exp(o - o.max()).sum()) - o.max()

    h0 = np.zeros(12)
    h1 = np.tanh(np.eye(len(vocab))[vocab.eos_id] @ w_xh + h0 @ w_hh + b_h)  # start input
    h2 = np.tanh(np.eye(len(vocab))[ids[0]] @ w_xh + h1 @ w_hh + b_h)
    expected = [log_softmax(h1 @ w_hq + b_q)[ids[0]], log_softmax(h2 @ w_hq + b_q)[ids[1]]]
    np.testing.assert_allclose(model.score(ids[:2]), expected, atol=1e-6)


def test_d2l_initialisation(data):
    _, vocab, _ = data
    model = RNN(vocab, cell="rnn", hidden=200, device="cpu")
    model._build(torch.device("cpu"))
    sd = model._net.state_dict()
    assert float(sd["core.W_hh.0"].std()) == pytest.approx(0.01, rel=0.05)
    assert not sd["core.b_h.0"].any() and not sd["head.b_q"].any()
    assert model.num_params == len(vocab) * 200 + 200 * 200 + 200 + 200 * len(vocab) + len(vocab)


def test_chunked_scoring_equals_one_token_at_a_time(trained, data, monkeypatch):
    _, _, ids = data
    one_by_one = trained._score(ids[:300], chunk=1)
    np.testing.assert_allclose(trained.score(ids[:300]), one_by_one, atol=1e-5)
    monkeypatch.setattr(rnn_model, "SCORE_CHUNK", 7)  # chunk borders carry the state
    np.testing.assert_allclose(trained.score(ids[:300]), one_by_one, atol=1e-5)
    assert trained.score(ids[:300]).dtype == np.float64


def test_score_is_the_next_token_distribution(trained, data):
    """out[i] = log p(ids[i] | ids[:i]); every distribution sums to one, the first too."""
    _, _, ids = data
    logp = trained.score(ids[:60])
    for i in (0, 1, 17, 59):
        dist = trained.next_token_logprobs(ids[:i])
        assert np.exp(dist).sum() == pytest.approx(1.0, abs=1e-5)
        assert dist[ids[i]] == pytest.approx(logp[i], abs=1e-5)
    assert np.all(logp <= 0) and np.all(np.isfinite(logp))
    assert len(trained.score(ids[:0])) == 0


def test_stream_mode_starts_from_unk(data):
    tok = lmeval.CharTokenizer(lines=False)
    vocab = tok.fit(TEXT)
    model = RNN(vocab, **{**TINY, "epochs": 1})
    model.fit(tok.encode(TEXT))
    assert model.start_id == vocab.unk_id
    assert np.exp(model.next_token_logprobs(np.array([], dtype=np.int64))).sum() == (
        pytest.approx(1.0, abs=1e-5)
    )


def test_save_load_same_scores_and_weights_only(trained, data, tmp_path):
    _, vocab, ids = data
    path = tmp_path / "model.pt"
    trained.save(path)
    raw = torch.load(path, weights_only=True)  # no arbitrary pickles inside
    assert raw["vocab"] == vocab.to_dict() and raw["config"]["cell"] == trained.config["cell"]
    loaded = RNN.load(path)
    np.testing.assert_array_equal(loaded.score(ids[:200]), trained.score(ids[:200]))
    assert loaded.history == trained.history and loaded.vocab == vocab
    assert loaded.num_params == trained.num_params
    assert loaded.to("cpu") is loaded and loaded.details()["device"] == "cpu"


@pytest.mark.parametrize(
    "params",
    [
        {"cell": "rnn", "layers": 2, "embedding": 3},
        {"cell": "gru", "layers": 2},
        {"cell": "gru", "embedding": 4},
        {"cell": "lstm", "layers": 3, "embedding": 5, "dropout": 0.2},
    ],
)
def test_every_configuration_loads_back(data, tmp_path, params):
    """The shapes a checkpoint is checked against (computed, not built) are the network's."""
    _, _, ids = data
    model = fitted(data, epochs=1, **params)
    model.save(tmp_path / "model.pt")
    loaded = RNN.load(tmp_path / "model.pt")
    assert loaded.num_params == model.num_params == model.memory_estimate().params
    np.testing.assert_array_equal(loaded.score(ids[:100]), model.score(ids[:100]))


def test_generating_from_a_loaded_model(trained, data, tmp_path):
    """The state is carried from step to step (linear in the length), after a load too."""
    tok, vocab, _ = data
    trained.save(tmp_path / "model.pt")
    loaded = RNN.load(tmp_path / "model.pt")
    prefix = tok.encode_prefix("the time")
    out = loaded.generate(prefix, 40, temperature=0.9, seed=5)
    assert len(out) == 40 and out.dtype == np.int64
    assert out.min() >= 0 and out.max() < len(vocab)
    np.testing.assert_array_equal(out, trained.generate(prefix, 40, temperature=0.9, seed=5))
    assert len(loaded.generate(np.array([], dtype=np.int64), 7)) == 7
    assert len(loaded.generate(prefix, 0)) == 0


def test_damaged_checkpoints_are_one_line_errors(trained, tmp_path):
    path = tmp_path / "model.pt"
    trained.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(lmeval.LmevalError, match="not a readable rnn checkpoint"):
        RNN.load(path)
    path.write_bytes(b"hello")
    with pytest.raises(lmeval.LmevalError):
        RNN.load(path)
    with open(path, "wb") as handle:
        torch.save({"format": "something else"}, handle)
    with pytest.raises(lmeval.LmevalError, match="not an rnn checkpoint"):
        RNN.load(path)
    with pytest.raises(lmeval.LmevalError, match="not found"):
        RNN.load(tmp_path / "missing.pt")


def test_the_largest_seed_trains(data):
    model = fitted(data, epochs=1, seed=2**64 - 1)
    assert np.all(np.isfinite(model.score(data[2][:50])))


def test_smallest_budgets_are_taken(data):
    _, vocab, _ = data
    assert RNN(vocab, budget="0.001s").config["budget"] == "0.001s"
    assert RNN(vocab, budget="1tok").config["budget"] == "1tok"
    assert RNN(vocab, budget="0.5ktok").config["budget"] == "500tok"


def test_same_seed_same_numbers(data):
    _, _, ids = data
    a, b = fitted(data, cell="gru", seed=3), fitted(data, cell="gru", seed=3)
    np.testing.assert_array_equal(a.score(ids[:100]), b.score(ids[:100]))
    c = fitted(data, cell="gru", seed=4)
    assert not np.array_equal(a.score(ids[:100]), c.score(ids[:100]))


def test_generate_greedy_and_seeded(trained, data):
    tok, _, ids = data
    prefix = tok.encode("the time")[:-1]
    greedy = trained.generate(prefix, 20, temperature=0)
    assert len(greedy) == 20 and greedy.dtype == np.int64
    # greedy = the argmax of the next-token distribution after each prefix
    assert greedy[0] == int(np.argmax(trained.next_token_logprobs(prefix)))
    assert greedy[1] == int(np.argmax(trained.next_token_logprobs(np.r_[prefix, greedy[:1]])))
    a = trained.generate(prefix, 30, temperature=0.8, seed=1)
    np.testing.assert_array_equal(a, trained.generate(prefix, 30, temperature=0.8, seed=1))


def test_history_and_details_are_json(trained):
    details = json.loads(json.dumps(trained.details()))
    assert details["device"] == "cpu" and details["threads"] == 1
    assert details["stop_reason"] in {"epochs", "early stopping"}
    assert details["tokens_trained"] > 0
    row = details["history"][0]
    assert set(row) >= {"epoch", "train_ppl", "valid_ppl", "tokens_per_s", "seconds", "lr"}
    # nats as measured; perplexity through the core's one formula, never capped
    for part in ("train", "valid"):
        assert row[f"{part}_ppl"] == lmeval.perplexity(row[f"{part}_nats"]) > 1


def test_perplexity_is_one_formula_with_no_cap():
    assert lmeval.perplexity(1.0) == math.e and lmeval.perplexity(0.0) == 1.0
    assert lmeval.perplexity(60.0) == math.exp(60.0)  # exp(min(nll, 50)) capped it
    assert lmeval.perplexity(1e4) == math.inf and math.isnan(lmeval.perplexity(math.nan))


def test_random_partition_and_given_validation(data):
    _, _, ids = data
    model = fitted(data, partition="random", optimizer="sgd", schedule="plateau", epochs=3)
    assert len(model.history) == 3
    model.fit(ids[:1500], ids[1500:])
    assert np.all(np.isfinite(model.score(ids[:50])))


class FakeBar:
    """Records progress updates; on the ``interrupt_at``-th one (or each of several),
    ``signum`` (Ctrl-C by default) arrives."""

    def __init__(
        self, interrupt_at: int | tuple[int, ...] | None = None, signum: int = signal.SIGINT
    ) -> None:
        self.updates: list[dict] = []
        self.interrupt_at = (interrupt_at,) if isinstance(interrupt_at, int) else interrupt_at
        self.signum = signum
        self.opened: list[tuple] = []

    def update(self, **fields) -> None:
        self.updates.append(fields)
        if self.interrupt_at and len(self.updates) in self.interrupt_at:
            signal.raise_signal(self.signum)

    @contextmanager
    def __call__(self, description, total=None, unit=""):
        self.opened.append((description, total, unit))
        yield self


def test_progress_reports_epochs_and_speed(data, monkeypatch):
    bar = FakeBar()
    monkeypatch.setattr(lmeval, "progress", bar)
    fitted(data, epochs=3, patience=0)
    # no budget: the bar counts batches over the 3 epochs
    assert len(bar.opened) == 1 and bar.opened[0][0] == "train rnn"
    assert bar.opened[0][2] == "batch" and bar.opened[0][1] > 0
    infos = [u["info"] for u in bar.updates if "info" in u]
    assert any("epoch 3" in i and "valid ppl" in i and "tok/s" in i for i in infos)


class Unexpected(Exception):
    """A signal reached the handler from before training: training did not catch it."""


@contextmanager
def handlers_of_the_caller():
    """SIGINT and SIGTERM handled as a caller (the CLI) would: training must take them
    over and give them back. A signal training failed to catch raises here, instead
    of ending the test process (SIGTERM's default)."""

    def caller(signum, frame):
        raise Unexpected(signal.Signals(signum).name)

    before = {sig: signal.signal(sig, caller) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caller
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_at_end_of_batch_and_keeps_best(data, monkeypatch, signum):
    _, _, ids = data
    bar = FakeBar(interrupt_at=3, signum=signum)
    monkeypatch.setattr(lmeval, "progress", bar)
    with handlers_of_the_caller() as caller:
        model = fitted(data, epochs=50, patience=0)
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is caller
    assert model.details()["stop_reason"] == "interrupted"
    assert model.details()["interrupted"] is True  # scored, never cached
    assert 1 <= len(model.history) < 50
    best = model.details()["best_epoch"]  # the state kept is the best validated one
    assert model.history[best - 1]["valid_ppl"] == min(r["valid_ppl"] for r in model.history)
    assert np.all(np.isfinite(model.score(ids[:50])))


def test_an_ignored_signal_stays_ignored_and_training_goes_on(data, monkeypatch):
    """A process told to ignore Ctrl-C (a bench worker, whose parent decides) trains
    to its end: the fit is not cut short, and says so (``interrupted`` is false)."""
    bar = FakeBar(interrupt_at=3, signum=signal.SIGINT)
    monkeypatch.setattr(lmeval, "progress", bar)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        model = fitted(data, epochs=2, patience=0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert model.details()["stop_reason"] == "epochs"
    assert model.details()["interrupted"] is False and len(model.history) == 2


@pytest.mark.parametrize(
    "second", [signal.SIGINT, signal.SIGTERM], ids=["then-ctrl-c", "then-sigterm"]
)
def test_a_second_signal_aborts_training(data, monkeypatch, second):
    bar = FakeBar(interrupt_at=2, signum=signal.SIGTERM)
    real = bar.update

    def update(**fields):
        real(**fields)
        if len(bar.updates) == 3:  # still in the same batch's bookkeeping
            signal.raise_signal(second)

    monkeypatch.setattr(bar, "update", update)
    monkeypatch.setattr(lmeval, "progress", bar)
    with handlers_of_the_caller() as caller:
        with pytest.raises(KeyboardInterrupt):
            fitted(data, epochs=50, patience=0)
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is caller


def test_token_budget_stops_training(data):
    model = fitted(data, budget="500tok", epochs=50)
    assert model.details()["stop_reason"] == "budget"
    assert 500 <= model.details()["tokens_trained"] < 500 + 4 * 8 + 1


def test_time_budget_stops_training(data):
    model = fitted(data, budget="1s", epochs=10_000, patience=0)
    # stopping for the budget is the behaviour; how long it overran depends on the machine
    assert model.details()["stop_reason"] == "budget"
    assert len(model.history) < 10_000


class SimulatedClock:
    """A clock that only the network's work advances, so that a time budget is exact.

    A training forward call (gradients on) costs ``batch`` seconds, as if with its
    backward pass; a validation call costs ``token`` seconds per token read.
    """

    def __init__(self, batch: float, token: float) -> None:
        self.now, self.batch, self.token = 1000.0, batch, token

    def perf_counter(self) -> float:
        return self.now

    def install(self, monkeypatch) -> None:
        from lmeval_rnn import cells, training

        real = cells.CharNet.forward

        def forward(net, x, state=None):
            self.now += self.batch if torch.is_grad_enabled() else self.token * x.numel()
            return real(net, x, state)

        monkeypatch.setattr(cells.CharNet, "forward", forward)
        monkeypatch.setattr(training, "time", self)
        monkeypatch.setattr(rnn_model, "time", self)
        monkeypatch.setattr(lmeval, "progress", FakeBar())


@pytest.mark.parametrize(
    ("budget", "token", "over"),
    [
        # 50 batches an epoch (0.5 s), a validation of 0.16 s, as estimated from them:
        (0.3, 1e-4, "batch"),  # the first epoch does not fit, nor would its validation
        (0.55, 1e-4, "batch"),  # the first epoch fits, its validation would not
        (2.0, 1e-4, "batch"),  # several epochs
        # a validation 10x slower than estimated: the deadline cuts it after one call
        (0.3, 1e-3, "chunk"),
    ],
)
def test_time_budget_holds_with_validation(data, monkeypatch, budget, token, over):
    """A time budget covers training and validation: training stops when the next batch
    and the validation would not fit, so the run is over by at most one batch; a
    validation slower than its estimate stops at the deadline (one call over) and ends
    the run. Timed on a simulated clock, so that the numbers are exact."""
    from lmeval_rnn.training import VALID_CHUNK

    _, vocab, ids = data
    clock = SimulatedClock(batch=0.01, token=token)
    clock.install(monkeypatch)
    model = RNN(vocab, **{**TINY, "budget": f"{budget}s", "epochs": 1000, "patience": 0})
    model.fit(ids, ids)  # validation: all 1,584 ids, read as 16 streams
    details = model.details()
    assert details["stop_reason"] == "budget"
    margin = clock.batch if over == "batch" else 16 * VALID_CHUNK * token
    assert details["train_seconds"] <= budget + margin + 1e-9
    assert sum(row["seconds"] for row in model.history) <= details["train_seconds"] + 1e-9
    assert details["best_epoch"] == len(model.history)
    if over == "batch":  # and it did not stop much earlier than it had to
        assert details["train_seconds"] > budget - 0.2
    else:  # the cut validation was the last thing the run did
        assert len(model.history) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", "60s"),
        ("2m", "120s"),
        ("1.5h", "5400s"),
        ("90 sec", "90s"),
        ("5Mtok", "5000000tok"),
        ("500ktok", "500000tok"),
        ("none", "none"),
    ],
)
def test_budget_parsing(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "60",
        "abc",
        "5 parsecs",
        "-1s",
        "0s",
        "0tok",
        "0.0001s",  # rounds to 0s: a time budget counts milliseconds
        "0.0004s",
        "0.4tok",  # rounds to 0 tokens
        "0.0000001ktok",
        "9" * 400 + "tok",  # a float's infinity
        "9" * 400 + "s",
    ],
)
def test_bad_budgets(text, data):
    _, vocab, _ = data
    with pytest.raises(ValueError):
        parse_budget(text)
    with pytest.raises(lmeval.UsageError, match="budget"):
        RNN(vocab, budget=text)


@pytest.mark.parametrize(
    "params",
    [
        {"cell": "transformer"},
        {"hidden": 0},
        {"dropout": 1.5},
        {"optimizer": "rmsprop"},
        {"device": "tpu"},
        {"partition": "shuffled"},
        {"precision": "fp8"},
        {"hiden": 5},
        {"steps": "many"},
        {"seed": -1},
        {"seed": 2**64},  # torch takes 0 to 2**64 - 1, numpy no negative seed
        {"seed": "99999999999999999999"},
        {"threads": -1},
        {"threads": (os.cpu_count() or 1) + 1},  # far beyond, torch crashes the process
    ],
)
def test_bad_parameters_are_usage_errors(params, data):
    _, vocab, _ = data
    with pytest.raises(lmeval.UsageError):
        RNN(vocab, **params)


def test_unavailable_devices_say_what_to_do(data):
    _, vocab, ids = data
    if not torch.cuda.is_available():
        with pytest.raises(lmeval.LmevalError, match="device=cuda.*device=auto"):
            RNN(vocab, **{**TINY, "device": "cuda"}).fit(ids)


def test_unfitted_model_says_so(data):
    _, vocab, ids = data
    with pytest.raises(lmeval.LmevalError, match="not trained"):
        RNN(vocab).score(ids)


def test_importing_the_plugin_does_not_import_torch():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import lmeval_rnn"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "torch" not in out.stderr


def test_anneal_schedule_holds_then_lowers_the_rate():
    from lmeval_rnn.training import annealed

    assert annealed(2e-3, 0.0) == annealed(2e-3, 0.7) == 2e-3
    assert annealed(2e-3, 0.85) == pytest.approx(1e-3 * 1.02)  # half way down the cosine
    assert annealed(2e-3, 1.0) == pytest.approx(4e-5)


def test_with_a_budget_a_stall_at_the_full_rate_does_not_stop_training(data):
    # validation wanders at a high rate; the anneal is where the gain comes, so patience
    # counts only its epochs (with patience=1 this run would stop at its 4th epoch)
    model = fitted(data, lr=0.05, patience=1, epochs=40, budget="40000tok", schedule="anneal")
    history = model.details()["history"]
    stalls = [
        i for i in range(1, len(history)) if history[i]["valid_ppl"] >= history[i - 1]["valid_ppl"]
    ]
    assert stalls and history[stalls[0]]["lr"] == 0.05  # it stalled at the full rate ...
    assert history[-1]["lr"] < 0.05  # ... and trained on into the anneal


def test_fused_recurrences_have_exact_gradients():
    from lmeval_rnn.cells import GRURecurrence, TanhRecurrence

    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    assert torch.autograd.gradcheck(
        TanhRecurrence.apply, (randn(5, 3, 4), randn(3, 4), randn(4, 4))
    )
    args = (randn(5, 3, 12), randn(3, 4), randn(12, 4), randn(12))
    assert torch.autograd.gradcheck(GRURecurrence.apply, args)


@pytest.mark.parametrize("one_hot", [True, False])
def test_fused_gru_is_torch_gru(one_hot):
    """Same parameters, same outputs, same gradients as torch.nn.GRU (two layers)."""
    from lmeval_rnn.cells import FusedGRU

    torch.manual_seed(0)
    fused = FusedGRU(7, 5, 2, 0.0, one_hot).double()
    plain = torch.nn.GRU(7, 5, 2).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randint(7, (6, 3)) if one_hot else torch.randn(6, 3, 7, dtype=torch.float64)
    x_plain = torch.nn.functional.one_hot(x, 7).double() if one_hot else x
    h0 = torch.randn(2, 3, 5, dtype=torch.float64)
    (out, h), (out_p, h_p) = fused(x, h0), plain(x_plain, h0)
    torch.testing.assert_close(out, out_p)
    torch.testing.assert_close(h, h_p)
    with torch.no_grad():  # scoring takes torch's own loop: the same numbers
        out_eval, h_eval = fused.eval()(x, h0)
    torch.testing.assert_close(out_eval, out.detach())
    torch.testing.assert_close(h_eval, h.detach())
    (out.sum() + h.square().sum()).backward()
    (out_p.sum() + h_p.square().sum()).backward()
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.slow
def test_a_million_tokens_of_shakespeare_learn_the_text(shared):
    """A sanity check of training quality: one million tokens (about 30 s on two cores)
    of the defaults get below 3 bits per character; a token budget, so that the result
    does not depend on the machine's speed."""
    text = (shared / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    cut = len(text) * 9 // 10
    tok = lmeval.CharTokenizer()
    vocab = tok.fit(text[:cut])
    model = RNN(vocab, budget="1Mtok", device="cpu")  # the bound was measured on the CPU
    model.fit(tok.encode(text[:cut]))
    logp = model.score(tok.encode(text[cut : cut + 20_000]))
    assert -logp.sum() / np.log(2) / 20_000 < 3.0


def test_validation_past_the_deadline_returns_the_mean_so_far(trained, data):
    """Validation reads rows as separate streams; past a deadline it stops after one chunk."""
    from lmeval_rnn.training import mean_nll

    _, _, ids = data
    cols = len(ids) // 2
    rows = [trained.score(ids[:cols]), trained.score(ids[cols : 2 * cols])]
    valid = torch.as_tensor(ids, dtype=torch.int64)  # as fit hands it to training
    full, complete = mean_nll(trained._net, valid, trained.start_id, rows=2, chunk=50)
    assert complete and full == pytest.approx(-np.concatenate(rows).mean(), abs=1e-5)
    first, complete = mean_nll(
        trained._net, valid, trained.start_id, rows=2, chunk=50, deadline=0.0
    )
    assert not complete
    assert first == pytest.approx(-np.concatenate([r[:50] for r in rows]).mean(), abs=1e-5)


def test_divergence_from_the_start_is_a_clear_error(data):
    with pytest.raises(lmeval.LmevalError, match="diverged in epoch 1"):
        fitted(data, cell="gru", optimizer="sgd", lr=1e38, clip=0)


def test_divergence_later_keeps_the_best_finite_state(data, monkeypatch):
    from lmeval_rnn import training

    calls = {"n": 0}
    real = training.mean_nll

    def nan_from_epoch_two(*args, **kwargs):
        calls["n"] += 1
        nll, complete = real(*args, **kwargs)
        return (nll if calls["n"] == 1 else float("nan")), complete

    monkeypatch.setattr(training, "mean_nll", nan_from_epoch_two)
    model = fitted(data, epochs=5, patience=0)
    assert model.details()["stop_reason"] == "diverged"
    assert model.details()["best_epoch"] == 1 and len(model.history) == 2
    assert np.isfinite(model.score(data[2])).all()


@pytest.mark.parametrize(
    "budget, limits",
    [
        ("300h", (1_080_000.0, None)),
        ("1000000s", (1_000_000.0, None)),
        ("0.5m", (30.0, None)),
        ("2.5ktok", (None, 2500)),
    ],
)
def test_long_and_fractional_budgets_read_back(budget, limits):
    from lmeval_rnn.model import budget_limits, parse_budget

    assert budget_limits(parse_budget(budget)) == limits


def test_budget_given_from_python_as_a_number_is_a_clear_error(data):
    with pytest.raises(lmeval.UsageError, match="expected a time like 60s"):
        RNN(data[1], budget=60)


@pytest.mark.skipif(cpu_bf16(), reason="this CPU has bf16 instructions: bf16 is taken")
def test_bf16_on_a_cpu_without_it_is_refused_before_training(data):
    with pytest.raises(lmeval.UsageError, match="no bf16 instructions.*precision=fp32"):
        RNN(data[1], precision="bf16", device="cpu")


@pytest.mark.skipif(not cpu_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_on_a_cpu_with_it_trains_and_scores_in_fp32(data, tmp_path):
    _, vocab, ids = data
    model = fitted(data, precision="bf16")
    assert model.details()["precision"] == "bf16"
    logs = model.score(ids)
    assert logs.dtype == np.float64 and np.all(np.isfinite(logs))
    # the weights stay fp32: a saved model scores the same on any machine
    model.save(tmp_path / "m")
    again = RNN.load(tmp_path / "m")
    np.testing.assert_array_equal(again.score(ids), logs)
