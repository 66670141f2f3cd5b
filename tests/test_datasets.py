"""The download path is tested against a local HTTP server, never the network."""

import hashlib
import http.server
import threading
from functools import partial

import pytest

from lmeval import LmevalError
from lmeval.datasets import TIME_MACHINE, PydocTopics, RemoteText


@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_download_verifies_and_caches(http_dir):
    www, base = http_dir
    data = b"It was a dark and stormy night.\n" * 10
    (www / "t.txt").write_bytes(data)
    ds = RemoteText("t", base + "t.txt", hashlib.sha1(data).hexdigest(), len(data), "test")
    assert not ds.cached
    assert ds.load() == data.decode()
    assert ds.cached
    (www / "t.txt").unlink()  # the second load reads the cache, not the server
    assert ds.load() == data.decode()


def test_checksum_mismatch_caches_nothing(http_dir):
    www, base = http_dir
    (www / "t.txt").write_bytes(b"tampered\n")
    ds = RemoteText("t", base + "t.txt", "0" * 40, 9, "test")
    with pytest.raises(LmevalError, match="expected 0000"):
        ds.load()
    assert not ds.cached and not list(ds.path.parent.glob("*"))


def test_offline_download_says_what_to_do(http_dir):
    _, base = http_dir
    ds = RemoteText("t", base + "missing.txt", "0" * 40, 1, "test")
    with pytest.raises(LmevalError, match="cannot download data set 't'.*--text FILE"):
        ds.load()


def test_timemachine_served_locally_matches_d2l_checksum(shared, http_dir, monkeypatch):
    www, base = http_dir
    (www / "timemachine.txt").write_bytes((shared / "corpora" / "timemachine.txt").read_bytes())
    monkeypatch.setattr(TIME_MACHINE, "url", base + "timemachine.txt")
    text = TIME_MACHINE.load()
    assert text.startswith("The Time Machine, by H. G. Wells [1898]")
    assert len(text.encode()) == TIME_MACHINE.size_bytes == 178_979


def test_pydoc_topics_is_offline_english_text():
    ds = PydocTopics()
    text = ds.load()
    assert ds.cached is None and ds.size_bytes == len(text.encode()) > 100_000
    assert "statement" in text and text.endswith("\n")
