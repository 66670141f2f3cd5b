"""A hostile or broken server, or a tampered cache, never hangs, floods or fools a download.

Every server here is a raw TCP server on 127.0.0.1 (never the network) that
answers each connection with one behaviour: the right file, a short body, an
endless one, one byte at a time, a redirect loop, an error status, garbage or
silence. Each case checks the one-line message and that nothing was cached.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hostile import leftovers, run_lmeval

from lmeval import LmevalError, RemoteText

DATA = "".join(f"line {i} of a book the server may or may not send.\n" for i in range(40)).encode()
SHA1 = hashlib.sha1(DATA).hexdigest()
DEADLINE = 1.0

Handler = Callable[[socket.socket, threading.Event], None]


def head(length: int | None, status: str = "200 OK", extra: str = "") -> bytes:
    size = "" if length is None else f"Content-Length: {length}\r\n"
    return f"HTTP/1.1 {status}\r\n{size}{extra}Connection: close\r\n\r\n".encode()


def ok(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(head(len(DATA)) + DATA)


def short_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(head(len(DATA)) + DATA[:100])


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(head(None))
    while not stop.is_set():
        conn.sendall(b"x" * 65536)


def drip(prefix: bytes, byte: bytes) -> Handler:
    """Send ``prefix``, then ``byte`` every 0.1 s: each read gets data within any timeout."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        while not stop.wait(0.1):
            conn.sendall(byte)

    return handler


def status(line: str, extra: str = "") -> Handler:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head(0, line, extra))

    return handler


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6 \x1b[31mred\r\n")


def hang_up(conn: socket.socket, stop: threading.Event) -> None:
    pass  # the request was read: closing now is an answer that is no answer


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(5)


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """serve(handler) -> URL of a file on a new server that answers every request with it."""
    stops: list[threading.Event] = []

    def one(handler: Handler, conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                handler(conn, stop)
            except OSError:  # the client gave up: what a server sees
                pass

    def accept(listener: socket.socket, handler: Handler, stop: threading.Event) -> None:
        with listener:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                conn.settimeout(10)
                threading.Thread(target=one, args=(handler, conn, stop), daemon=True).start()

    def start(handler: Handler) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.05)
        stop = threading.Event()
        stops.append(stop)
        threading.Thread(target=accept, args=(listener, handler, stop), daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/book.txt"

    yield start
    for stop in stops:
        stop.set()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEVAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def book(url: str, **kwargs) -> RemoteText:
    kwargs.setdefault("deadline", DEADLINE)
    return RemoteText("book", url, SHA1, len(DATA), "a test book", **kwargs)


def refused_url() -> str:
    """The URL of a port where nothing listens."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/book.txt"


def assert_nothing_cached(cache) -> None:
    assert not cache.exists() or not list(cache.iterdir()), list(cache.iterdir())


def assert_fails(ds: RemoteText, cache, *words: str) -> str:
    """``ds.load()`` fails with one line naming the data set, the URL, the remedy and
    ``words``; nothing is cached. Returns the message."""
    with pytest.raises(LmevalError) as info:
        ds.load()
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    for word in ("'book'", ds.url, "--text FILE", *words):
        assert word in message, f"{word!r} not in {message!r}"
    assert not ds.cached
    assert_nothing_cached(cache)
    return message


def test_the_right_file_is_downloaded_and_cached(serve, cache):
    ds = book(serve(ok))
    assert ds.load() == DATA.decode() and ds.cached
    assert ds.path.read_bytes() == DATA and not leftovers(cache)


@pytest.mark.parametrize(
    "handler, words",
    [
        (short_body, [f"ended after 100 of {len(DATA)} bytes"]),
        (endless_body, [f"sent more than the expected {len(DATA)} bytes"]),
        (garbage, ["not HTTP", "SSH-2.0"]),
        (hang_up, ["closed the connection without an HTTP answer"]),
        (status("404 Not Found"), ["HTTP 404 Not Found"]),
        (status("500 Internal Server Error"), ["HTTP 500 Internal Server Error"]),
        (status("302 Found", "Location: /book.txt\r\n"), ["redirects in a loop", "HTTP 302"]),
        (status("302 Found", "Location: file:///etc/passwd\r\n"), ["HTTP 302", "cannot be"]),
        (status("599 \x1b[2JWhatever"), ["HTTP 599"]),
    ],
    ids=["short", "endless", "garbage", "hang-up", "404", "500", "loop", "file-redirect", "599"],
)
def test_a_bad_answer_is_one_line_and_caches_nothing(serve, cache, handler, words):
    message = assert_fails(book(serve(handler)), cache, *words)
    assert "\x1b" not in message  # nothing the server wrote reaches the terminal raw


def test_connection_refused(cache):
    assert_fails(book(refused_url()), cache, "Connection refused", "check the network")


@pytest.mark.parametrize(
    "handler",
    [drip(head(len(DATA)), b"x"), drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")],
    ids=["body", "headers"],
)
def test_a_drip_feed_is_stopped_by_the_deadline(serve, cache, handler):
    ds = book(serve(handler))
    start = time.monotonic()
    assert_fails(ds, cache, f"took longer than {DEADLINE:g} s")
    assert time.monotonic() - start < DEADLINE + 0.5


def test_a_silent_server_is_stopped_by_the_timeout(serve, cache):
    ds = book(serve(silent), timeout=0.3, deadline=5)
    start = time.monotonic()
    assert_fails(ds, cache, "sent nothing for 0.3 s")
    assert time.monotonic() - start < 1.5


def test_a_bad_timeout_or_deadline_is_refused():
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive numbers of seconds"):
            book("http://127.0.0.1:9/book.txt", deadline=bad)


def tamper(ds: RemoteText) -> bytes:
    """Cache ``ds`` with the same number of bytes but another text; returns them."""
    bad = DATA.replace(b"book", b"BOOK")
    ds.path.parent.mkdir(parents=True, exist_ok=True)
    ds.path.write_bytes(bad)
    return bad


def test_a_tampered_cache_is_downloaded_again(serve, cache):
    ds = book(serve(ok))
    tamper(ds)
    assert ds.cached  # listing reads only the size; load() checks the SHA-1
    assert ds.load() == DATA.decode()
    assert ds.path.read_bytes() == DATA and not leftovers(cache)


def test_a_tampered_cache_that_cannot_be_replaced_is_refused(cache):
    ds = book(refused_url())
    bad = tamper(ds)
    with pytest.raises(LmevalError) as info:
        ds.load()
    message = str(info.value)
    for word in ("'book'", ds.url, "damaged (wrong SHA-1)", f"delete {ds.path}", "--text FILE"):
        assert word in message, f"{word!r} not in {message!r}"
    assert ds.path.read_bytes() == bad and not leftovers(cache)  # left for the user to see


@pytest.mark.parametrize("content", [DATA[:-1], DATA + b"more", b""])
def test_a_cache_of_the_wrong_size_is_not_available_offline(serve, cache, content):
    ds = book(serve(ok))
    ds.path.parent.mkdir(parents=True)
    ds.path.write_bytes(content)
    assert not ds.cached
    assert ds.load() == DATA.decode() and ds.cached


PLUGIN = """
import lmeval


@lmeval.hookimpl
def register_datasets(register):
    register(
        lmeval.RemoteText(
            name="book", url={url!r}, sha1={sha1!r}, size={size}, description="a test book",
            timeout={deadline}, deadline={deadline},
        )
    )
"""


def lmeval_compare_book(tmp_path, url: str):
    """``lmeval compare`` on the data set ``book`` at ``url``, registered by a plugin file."""
    plugin = tmp_path / "bookplugin.py"
    plugin.write_text(PLUGIN.format(url=url, sha1=SHA1, size=len(DATA), deadline=DEADLINE))
    return run_lmeval(
        "compare", "--plugin", plugin, "--dataset", "book", "-m", "uniform", "--format", "json",
        cwd=tmp_path, memory_mb=2048, timeout=60,
        env={"LMEVAL_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip


def test_cli_downloads_a_tampered_cache_again(tmp_path, serve, cache):
    ds = book(serve(ok))
    tamper(ds)
    run = lmeval_compare_book(tmp_path, ds.url)
    assert run.code == 0, run.stderr
    assert ds.path.read_bytes() == DATA and not leftovers(cache)


def test_cli_refuses_a_tampered_cache_it_cannot_replace(tmp_path, cache):
    ds = book(refused_url())
    bad = tamper(ds)
    run = lmeval_compare_book(tmp_path, ds.url)
    run.assert_one_line_error(1, "'book'", ds.url, "damaged", f"delete {ds.path}", "--text FILE")
    assert ds.path.read_bytes() == bad and not leftovers(cache)


@pytest.mark.parametrize(
    "handler, words",
    [
        (drip(head(len(DATA)), b"x"), [f"took longer than {DEADLINE:g} s"]),
        (endless_body, [f"sent more than the expected {len(DATA)} bytes"]),
    ],
    ids=["drip", "endless"],
)
def test_cli_stops_a_hostile_server(tmp_path, serve, cache, handler, words):
    url = serve(handler)
    run = lmeval_compare_book(tmp_path, url)
    run.assert_one_line_error(1, "'book'", url, "--text FILE", *words)
    assert_nothing_cached(cache)
