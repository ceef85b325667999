"""A remote header read has one overall deadline: a server trickling a byte at a time cannot hang plan."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from planner.errors import OfflineError
from planner.model import load_model


class _Trickle(http.server.BaseHTTPRequestHandler):
    """HEAD: a 10 MB file; GET (ranged): 206, then one byte every 0.2 s, for 8 s at most."""

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "10000000")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(206)
        self.send_header("Content-Length", "1048576")
        self.end_headers()
        end = time.monotonic() + 8
        try:
            for b in b"GGUF" + b"\x03" + b"\0" * 100:
                if time.monotonic() > end:
                    break
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


@pytest.fixture
def trickle_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_trickling_server_is_abandoned_at_the_deadline(trickle_server, monkeypatch):
    monkeypatch.setenv("PLANNER_REMOTE_TIMEOUT", "2")
    t = time.monotonic()
    with pytest.raises(OfflineError, match="took more than 2 s"):
        load_model(f"{trickle_server}/model.gguf")
    assert time.monotonic() - t < 6
