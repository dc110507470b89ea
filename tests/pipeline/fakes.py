"""Loopback HTTP servers speaking just enough Gamma, OpenAI Responses and Gemini generateContent.

They run stdlib ThreadingHTTPServer in a thread; the real httpx client and the official SDKs talk
to them over TCP. Each records every request so tests can count calls (e.g. "zero repeated LLM
calls") and can be told to misbehave: 429 with Retry-After, 500, malformed JSON, truncated,
wrong-schema, refused or out-of-range model output, per market.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers (~40 ms on loopback) — a stall real APIs do not have.
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items()}
        status, headers, payload = self.server.app(self.command, parts.path, query, body, dict(self.headers))  # type: ignore[attr-defined]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class LoopbackServer:
    def __init__(self, app: Callable[..., Reply]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = app  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- Gamma ----------------------------------------------------------------------------------------
class GammaApp:
    """GET /markets with limit/offset paging over `markets`; `script` replies come first."""

    def __init__(self, markets: list[Any]) -> None:
        self.markets = markets
        self.script: list[Reply | str] = []  # consumed one per request before normal paging
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str, query: dict[str, Any], body: bytes, headers: dict[str, str]) -> Reply:
        with self.lock:
            self.requests.append(query)
            special = self.script.pop(0) if self.script else None
        if special == "malformed":
            return 200, {"Content-Type": "application/json"}, b'[{"id": "1", "question": '
        if special is not None and not isinstance(special, str):
            return special
        if path != "/markets":
            return _json(404, {"error": "not found"})
        limit = int(query.get("limit", 100))
        offset = int(query.get("offset", 0))
        return _json(200, self.markets[offset: offset + limit])


def gamma_market(mid: str | None, question: str, event: tuple[str, str] | None, yes: float = 0.6,
                 end: str = "2026-12-20T12:00:00Z", **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "question": question, "conditionId": f"0xcond{mid}", "slug": re.sub(r"[^a-z0-9]+", "-", question.lower()).strip("-"),
        "endDate": end, "outcomes": json.dumps(["Yes", "No"]),
        "outcomePrices": json.dumps([str(yes), str(round(1 - yes, 4))]),
        "clobTokenIds": json.dumps([f"{mid}1", f"{mid}2"]), "volume": "1234.5", "liquidity": "99.5",
        "closed": False, "active": True,
        "events": [{"id": event[0], "title": event[1], "slug": event[1].lower().replace(" ", "-")}] if event else [],
    }
    if mid is not None:
        m["id"] = mid
    m.update(extra)
    return m


# --- LLM helpers --------------------------------------------------------------------------------------
def markets_in(text: str) -> list[dict[str, Any]]:
    match = re.search(r"MARKETS_JSON: (\[.*?\])\n", text + "\n")
    return json.loads(match.group(1)) if match else []


def good_forecast(markets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"forecasts": [{"market_id": m["market_id"], "probabilities": [
        {"outcome": m["outcomes"][0], "probability": 0.6}, {"outcome": m["outcomes"][1], "probability": 0.4}]}
        for m in markets], "rationale": "because"}


def bad_forecast(mode: str, markets: list[dict[str, Any]]) -> str:
    if mode == "truncated":
        return json.dumps(good_forecast(markets))[:40]
    if mode == "wrong_schema":
        return json.dumps({"answer": "yes", "confidence": 0.7})
    if mode == "out_of_range":
        data = good_forecast(markets)
        data["forecasts"][0]["probabilities"][0]["probability"] = 1.7
        return json.dumps(data)
    if mode == "unnormalized":
        data = good_forecast(markets)
        for f in data["forecasts"]:
            f["probabilities"][1]["probability"] = 0.6  # 0.6 + 0.6: must be normalized to 0.5/0.5
        return json.dumps(data)
    return json.dumps(good_forecast(markets))


class _LlmApp:
    """Shared bookkeeping: call counts per kind, per-market misbehaviour, optional barrier."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.modes: dict[tuple[str, str], str] = {}  # (kind, market_id or "*") -> mode
        self.barrier: threading.Barrier | None = None  # make concurrent runners meet inside a call
        self.lock = threading.Lock()

    def mode_for(self, kind: str, markets: list[dict[str, Any]]) -> str:
        for m in markets:
            mode = self.modes.get((kind, m["market_id"]))
            if mode:
                return mode
        return self.modes.get((kind, "*"), "ok")

    def record(self, kind: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.calls[kind] += 1
            self.bodies.append({"kind": kind, **body})
        if self.barrier is not None and kind == "research":
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                pass


class OpenAIApp(_LlmApp):
    def __call__(self, method: str, path: str, query: dict[str, Any], body: bytes, headers: dict[str, str]) -> Reply:
        if path != "/v1/responses" or method != "POST":
            return _json(404, {"error": {"message": "not found"}})
        req = json.loads(body)
        kind = "forecast" if (req.get("text") or {}).get("format", {}).get("type") == "json_schema" else "research"
        self.record(kind, req)
        markets = markets_in(req.get("input", ""))
        mode = self.mode_for(kind, markets)
        if mode == "500":
            return _json(500, {"error": {"message": "internal error", "type": "server_error"}})
        if mode == "429":
            return _json(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"retry-after-ms": "10", "Retry-After": "0"})
        if mode == "malformed":
            return 200, {"Content-Type": "application/json"}, b'{"id": "resp_x", "output": ['
        status = "completed"
        content: list[dict[str, Any]]
        if mode == "refusal":
            content = [{"type": "refusal", "refusal": "I can't help with that."}]
        elif kind == "research":
            content = [{"type": "output_text", "text": f"Findings for {len(markets)} market(s).", "annotations": [
                {"type": "url_citation", "url": "https://example.com/news", "title": "News", "start_index": 0, "end_index": 5}]}]
        else:
            content = [{"type": "output_text", "text": bad_forecast(mode, markets), "annotations": []}]
        if mode == "truncated":
            status = "incomplete"
        resp = {
            "id": f"resp_{self.calls[kind]}", "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": req.get("model"), "output": [{"type": "message", "id": "msg_1", "status": "completed",
                                                   "role": "assistant", "content": content}],
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": req.get("tools", []),
            "usage": {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        }
        return _json(200, resp)


class GeminiApp(_LlmApp):
    def __call__(self, method: str, path: str, query: dict[str, Any], body: bytes, headers: dict[str, str]) -> Reply:
        match = re.match(r"^/v1(?:beta|alpha)?/models/([^:]+):generateContent$", path)
        if not match or method != "POST":
            return _json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
        req = json.loads(body)
        cfg = req.get("generationConfig") or {}
        kind = "forecast" if cfg.get("responseMimeType") == "application/json" else "research"
        self.record(kind, {"model": match.group(1), "headers": headers, **req})
        text = "".join(p.get("text", "") for c in req.get("contents", []) for p in c.get("parts", []))
        markets = markets_in(text)
        mode = self.mode_for(kind, markets)
        if mode in ("500", "429"):
            code = int(mode)
            return _json(code, {"error": {"code": code, "message": "try later", "status": "UNAVAILABLE" if code == 500 else "RESOURCE_EXHAUSTED"}},
                         {"Retry-After": "0"})
        if mode == "malformed":
            return 200, {"Content-Type": "application/json"}, b'{"candidates": [{"content": '
        finish = "STOP"
        if kind == "research":
            out = f"Grounded findings for {len(markets)} market(s)."
        else:
            out = bad_forecast(mode, markets)
        if mode == "refusal":
            finish, out = "SAFETY", ""
        if mode == "truncated":
            finish = "MAX_TOKENS"
        cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": out}] if out else []}, "finishReason": finish, "index": 0}
        if kind == "research":
            cand["groundingMetadata"] = {"groundingChunks": [{"web": {"uri": "https://example.org/a", "title": "A"}}]}
        return _json(200, {"candidates": [cand], "modelVersion": match.group(1),
                           "usageMetadata": {"promptTokenCount": 80, "candidatesTokenCount": 30, "totalTokenCount": 110}})
