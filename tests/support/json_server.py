"""Test-only: a loopback JSON API over a real socket (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive)
that records every request *and the connection it came on*, so tests can prove a client reuses its
connection pool. Replies come from `script` first (one per request), then from `default`.

A scripted reply is (status, headers, body) or one of the faults a flaky proxy produces:
"malformed" (a 200 whose JSON body is cut short), "truncate" (Content-Length promises more than is
sent, then the connection closes).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, dict[str, str], bytes]


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, list[str]]
    connection: int  # one number per TCP connection


class JsonServer:
    def __init__(self, default: Callable[[str, dict[str, list[str]]], Reply] | None = None) -> None:
        self.default = default or (lambda path, query: json_reply({"path": path}))
        self.script: list[Reply | str] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        connections = itertools.count(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a reusing client sends every request on one socket
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:  # once per accepted connection
                super().setup()
                self.connection_no = next(connections)

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                with server.lock:
                    server.seen.append(Seen(parts.path, query, self.connection_no))
                    special = server.script.pop(0) if server.script else None
                if special == "malformed":
                    self._send(200, {"Content-Type": "application/json"}, b'[{"id": "1", "question": ')
                elif special == "truncate":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b'[{"id": ')
                    self.wfile.flush()
                    self.close_connection = True
                elif isinstance(special, tuple):
                    self._send(*special)
                else:
                    self._send(*server.default(parts.path, query))

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def connections(self) -> set[int]:
        return {s.connection for s in self.seen}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> JsonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
