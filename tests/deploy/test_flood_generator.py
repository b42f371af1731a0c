"""The flood benchmark's C generator (bench/flood_stream.c) reports what the server answered.

The benchmark's verdict (every genuine notification answered "received", p99) rests on the
generator reading each answer right: its status, its body's first bytes, a connection the server
closes. Timing is the benchmark's business; this only checks the answers, against a small server
that answers like the callback routes (200 "success", 204 with no body, 413 and close)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from bench.callbacks_flood import _build_generator, _length_prefixed, _stream_result


def _server(sock: socket.socket, stop: threading.Event) -> None:
    """Answers by the request's path: /ok 200 "success", /empty 204, /big 413 and closes."""
    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    buf = buf[length:]
                    path = head.split(b" ")[1]
                    if path == b"/ok":
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
                    elif path == b"/empty":
                        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                    else:
                        conn.sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 5\r\n"
                                     b"Connection: close\r\n\r\nlarge")
                        return

    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def _request(path: str, body: bytes = b"x") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_the_c_generator_reads_each_answer(tmp_path: Path) -> None:
    binary = _build_generator(tmp_path)
    requests = [_request("/ok"), _request("/empty"), _request("/big", b"y" * 100_000)]
    (tmp_path / "s.requests").write_bytes(_length_prefixed(requests))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()
    server = threading.Thread(target=_server, args=(sock, stop), daemon=True)
    server.start()
    try:
        subprocess.run([str(binary), str(tmp_path / "s.requests"), "127.0.0.1",
                        str(sock.getsockname()[1]), "300", "30", repr(time.time() + 0.3), "4",
                        "127.0.0.1", "10", str(tmp_path / "s.result")], check=True, timeout=60)
    finally:
        stop.set()
        # the accept loop ends within its 0.2 s timeout; the socket closes after it (closed under
        # a waiting accept, it raised EBADF in the thread: a warning in every run)
        server.join(timeout=10)
        sock.close()
    out = _stream_result(tmp_path / "s.result", True)
    answers = sorted((i, status, head) for i, _, status, head in out["results"])
    assert [i for i, _, _ in answers] == list(range(30))   # each once, none lost
    assert all((status, head) == [(200, b"success"), (204, b""), (413, b"large")][i % 3]
               for i, status, head in answers)
    assert out["errors"] == 0 and out["reconnects"] == 10   # each 413 closed its connection
    assert all(latency >= 0 for _, latency, _, _ in out["results"])
