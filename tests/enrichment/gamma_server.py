"""A loopback Polymarket Gamma `/markets` endpoint for tests (stdlib ThreadingHTTPServer in a thread).

It filters like Gamma (repeated `condition_ids`, `closed`, `limit`/`offset` paging) and can be told to
misbehave first: queue `faults` such as ("429", {"Retry-After": "1"}), ("500", {}), ("malformed", {}).
Every request is recorded so tests can assert on batching and retries.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class GammaServer:
    def __init__(self, markets: list[dict[str, Any]] | None = None, *, hide_closed_by_default: bool = False) -> None:
        self.markets = list(markets or [])
        self.faults: list[tuple[str, dict[str, str]]] = []
        self.requests: list[dict[str, list[str]]] = []
        self.hide_closed_by_default = hide_closed_by_default
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                with server.lock:
                    server.requests.append({"path": [url.path], **query})
                    fault = server.faults.pop(0) if server.faults else None
                if fault is not None:
                    kind, headers = fault
                    if kind == "malformed":
                        self._send(200, b'[{"id": "1", "conditionId": ', {})
                    elif kind == "notalist":
                        self._send(200, b'{"error": "nope"}', {})
                    else:
                        self._send(int(kind), b'{"error": "fault"}', headers)
                    return
                if url.path != "/markets":
                    self._send(404, b'{"error": "not found"}', {})
                    return
                self._send(200, json.dumps(server.select(query)).encode(), {})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def select(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        rows = self.markets
        if "condition_ids" in query:
            wanted = set(query["condition_ids"])
            rows = [m for m in rows if m.get("conditionId") in wanted]
        closed = query.get("closed", [None])[0]
        if closed is not None:
            rows = [m for m in rows if bool(m.get("closed")) == (closed == "true")]
        elif self.hide_closed_by_default:
            rows = [m for m in rows if not m.get("closed")]
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        return rows[offset:offset + limit]

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> GammaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def market_requests(self) -> list[dict[str, list[str]]]:
        return [r for r in self.requests if r["path"] == ["/markets"]]
