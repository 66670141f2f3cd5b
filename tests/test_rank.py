"""Under torchrun, ranks above 0 only help train the models that declare ``distributed``."""

from __future__ import annotations

import numpy as np
import pytest

import lmeval
from lmeval import LanguageModel


class CountingModel(LanguageModel):
    """A uniform model that counts its fits (class-wide) and may declare ``distributed``."""

    name = "counting"
    fits: list[str] = []

    def fit(self, train_ids, valid_ids=None):
        type(self).fits.append(type(self).__name__)

    def score(self, ids):
        return np.full(len(ids), -np.log(len(self.vocab)))

    def next_token_logprobs(self, context_ids):
        return np.full(len(self.vocab), -np.log(len(self.vocab)))


class DistributedModel(CountingModel):
    name = "counting-distributed"
    distributed = True


def host_with_models() -> lmeval.PluginHost:
    host = lmeval.load_host()
    host.models.add("counting", CountingModel, "test")
    host.models.add("counting-distributed", DistributedModel, "test")
    return host


@pytest.fixture
def as_rank(monkeypatch):
    def set_rank(rank: int, world: int = 2) -> None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))

    CountingModel.fits = []
    return set_rank


def test_rank_above_zero_fits_only_distributed_models_and_scores_nothing(as_rank, numbered_text):
    as_rank(1)
    assert (lmeval.rank(), lmeval.world_size(), lmeval.is_main_process()) == (1, 2, False)
    result = lmeval.compare(
        ["a=counting", "b=counting-distributed", "c=ngram:order=2"],
        text=numbered_text(60),
        host=host_with_models(),
    )
    assert result.results == []
    assert result.meta == {"rank": 1, "world_size": 2, "helped_train": ["b"]}
    assert CountingModel.fits == ["DistributedModel"]


def test_rank_zero_compares_everything(as_rank, numbered_text):
    as_rank(0)
    result = lmeval.compare(
        ["a=counting", "b=counting-distributed"],
        text=numbered_text(60),
        host=host_with_models(),
        bootstrap=0,
    )
    assert [r["label"] for r in result.results] == ["a", "b"]
    assert sorted(CountingModel.fits) == ["CountingModel", "DistributedModel"]


def test_alone_means_rank_zero_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (lmeval.rank(), lmeval.world_size(), lmeval.local_rank()) == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")  # a stray RANK without a world is not a rank
    assert lmeval.is_main_process()


def test_torchrun_trains_one_rnn_in_two_processes_as_one_process_does(tmp_path, numbered_text):
    """``torchrun --nproc-per-node 2 -m lmeval compare``: two CPU processes (gloo) each
    train on half the rows of every batch, DDP averages their gradients, rank 0 scores
    and writes. The network is the one a single process trains on the same global
    batch: the same bits per character within 1e-6 relative (float32 gradients summed
    in another order), the same tokens, epochs and stop."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torch's torchrun launcher is not beside this Python")
    text = numbered_text(300)
    # dropout=0: each rank draws its own dropout masks, which one process would not
    spec = "rnn:hidden=32,dropout=0,budget=20000tok,batch=8,steps=16,device=cpu,threads=1"
    out = tmp_path / "ddp.json"
    command = [
        str(torchrun), "--nproc-per-node", "2", "--standalone", "-m", "lmeval", "compare",
        "-m", spec, "--text", str(text), "--format", "json", "-o", str(out), "--bootstrap", "0",
        "-q", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    for _ in range(2):  # the second time its fit is in the cache: every rank trains anyway
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    [row] = json.loads(out.read_text())["results"]
    assert row["details"]["cache"]["hit"] is False
    [alone] = lmeval.compare([spec], text=text, bootstrap=0).results
    assert row.get("error") is None and row["verified"] is True
    assert row["details"]["ranks"] == 2 and "ranks" not in alone["details"]
    for key in ("tokens_trained", "best_epoch", "stop_reason"):
        assert row["details"][key] == alone["details"][key]
    assert row["bits_per_char"] == pytest.approx(alone["bits_per_char"], rel=1e-6)
    assert row["bits_per_char"] < 1.0  # it learned: the uniform row pays about 4.6


def test_torchrun_fits_rows_in_rank_0s_order_when_a_mixture_comes_first(tmp_path, numbered_text):
    """The other ranks train the distributed rows in rank 0's order, which puts a row
    after those it is made from; had they kept the order given, the two networks
    would meet the wrong partner and both fail."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torch's torchrun launcher is not beside this Python")
    out = tmp_path / "ddp.json"
    rnn = "rnn:budget=2000tok,batch=8,steps=16,device=cpu,threads=1"
    command = [
        str(torchrun), "--nproc-per-node", "2", "--standalone", "-m", "lmeval", "compare",
        "-m", "m=mix:of=big+kn", "-m", f"small={rnn},hidden=8", "-m", f"big={rnn},hidden=16",
        "-m", "kn=ngram:order=2", "--text", str(numbered_text(200)), "--format", "json",
        "-o", str(out), "--bootstrap", "0", "-q",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["label"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == ["m", "small", "big", "kn"]
    assert all(r.get("error") is None and r["details"].get("ranks", 2) == 2 for r in rows.values())
