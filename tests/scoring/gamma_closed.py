"""A loopback Gamma `/markets?id=…` endpoint serving markets by id, as Gamma does: list fields as
JSON-encoded strings, `closed` filtering, and 503s on demand (an outage)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def closed_market(mid: str, yes: str, no: str, closed_time: str = "2026-11-30 12:00:00+00") -> dict[str, Any]:
    return {"id": mid, "question": f"Question {mid}?", "conditionId": f"0xcond{mid}", "slug": f"q-{mid}",
            "outcomes": json.dumps(["Yes", "No"]), "outcomePrices": json.dumps([yes, no]),
            "clobTokenIds": json.dumps([f"{mid}1", f"{mid}2"]), "closed": True, "active": False,
            "closedTime": closed_time, "endDate": "2026-11-30T12:00:00Z",
            # present on real answers; the scoring rule must never look at it
            "umaResolutionStatus": "disputed"}


def open_market(mid: str, yes: str = "0.5") -> dict[str, Any]:
    m = closed_market(mid, yes, str(round(1 - float(yes), 4)))
    m.update(closed=False, active=True, closedTime=None)
    return m


class GammaClosed:
    def __init__(self, markets: list[dict[str, Any]]) -> None:
        self.markets = {m["id"]: m for m in markets}
        self.requests: list[dict[str, list[str]]] = []
        self.fail_ids: set[str] = set()  # a request naming one of these answers 503
        self.lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                qs = parse_qs(parts.query)
                with app.lock:
                    app.requests.append(qs)
                    ids = qs.get("id", [])
                    if parts.path != "/markets":
                        return self._send(404, {"error": "not found"})
                    if app.fail_ids & set(ids):
                        return self._send(503, {"error": "unavailable"})
                    closed = qs.get("closed", [None])[0]
                    out = [m for i in ids if (m := app.markets.get(i)) is not None
                           and (closed is None or m["closed"] == (closed == "true"))]
                self._send(200, out)

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set(self, market: dict[str, Any]) -> None:
        with self.lock:
            self.markets[market["id"]] = market

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
