"""Test-only: a loopback endpoint speaking the ClickHouse HTTP interface, backed by chDB.

There is no ClickHouse server on these machines, yet the server backend (clickhouse-connect over
HTTP) must run the same Step D/E, gates and mutation SQL as the embedded one. This endpoint gives
clickhouse-connect a real HTTP peer: the statement, its bound `param_*` values, its settings, the
requested FORMAT (Native, RowBinary...) and INSERT bodies all travel over HTTP exactly as they would to
a server; chDB executes them. Run it in a process of its own (chDB holds one data path per process).

    python -m tests.support.clickhouse_http --path DIR --port 0 --password PW   # prints "PORT <n>"
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

# URL parameters that belong to the HTTP protocol, not to the query's settings.
_PROTOCOL_PARAMS = {
    "query", "query_id", "session_id", "session_timeout", "session_check", "database", "user", "password",
    "default_format", "compress", "decompress", "enable_http_compression", "wait_end_of_query",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "quota_key", "role",
    "buffer_size", "http_zlib_compression_level", "cancel_http_readonly_queries_on_client_close",
    "date_time_input_format", "output_format_arrow_string_as_string",
}
_FORMAT_AT_END = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>[A-Za-z0-9_]+)\s*$", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code: (\d+)")


class Backend:
    def __init__(self, path: Path, user: str, password: str) -> None:
        from chdb import session

        self.session = session.Session(str(path))
        self.user = user
        self.password = password
        self.lock = threading.Lock()  # one statement at a time: SET/USE are session-wide in chDB
        self.tmp = Path(tempfile.mkdtemp(prefix="chhttp-"))
        self.requests = 0

    def run(self, sql: str, fmt: str, params: dict[str, str], settings: dict[str, str], database: str) -> bytes:
        with self.lock:
            self.requests += 1
            self.session.query(f"USE `{database}`" if database else "USE default")
            applied = []
            try:
                for key, value in settings.items():
                    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                        continue
                    self.session.query(f"SET {key} = {_setting_literal(value)}")
                    applied.append(key)
                res = self.session.query(sql, fmt, params=params or None)
                return res.bytes() if hasattr(res, "bytes") else bytes(res)
            finally:
                for key in applied:
                    try:
                        self.session.query(f"SET {key} = DEFAULT")
                    except Exception:
                        pass


def _setting_literal(value: str) -> str:
    if re.match(r"^-?\d+(\.\d+)?$", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _authorized(self, query: dict[str, str]) -> bool:
            user, password = query.get("user", "default"), query.get("password", "")
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            user = self.headers.get("X-ClickHouse-User", user)
            password = self.headers.get("X-ClickHouse-Key", password)
            return user == backend.user and password == backend.password

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("X-ClickHouse-Server-Display-Name", "chdb-loopback")
            self.send_header("X-ClickHouse-Timezone", "UTC")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, text: str, status: int = 500) -> None:
            m = _CODE.search(text)
            code = m[1] if m else "1"
            self._reply(status, text.encode() + b"\n", {"X-ClickHouse-Exception-Code": code, "Content-Type": "text/plain"})

        def _handle(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/ping":
                self._reply(200, b"Ok.\n")
                return
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Content-Encoding", "identity") not in ("identity", ""):
                self._error("Code: 1. DB::Exception: the loopback endpoint does not take compressed bodies", 400)
                return
            if not self._authorized(query):
                self._error("Code: 516. DB::Exception: default: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)", 403)
                return
            params = {k[len("param_"):]: v for k, v in query.items() if k.startswith("param_")}
            settings = {k: v for k, v in query.items() if k not in _PROTOCOL_PARAMS and not k.startswith("param_")}
            database = query.get("database", "")
            sql = query.get("query")
            data = b""
            if sql is None:
                sql, data = body.decode(), b""
            else:
                data = body
            try:
                insert = _INSERT.match(sql) if data else None
                if insert:
                    # Data arrives in the body in the stated format: read it through file().
                    tmp = backend.tmp / f"{uuid.uuid4().hex}.bin"
                    tmp.write_bytes(data)
                    try:
                        out = backend.run(
                            f"INSERT INTO {insert['target']} SELECT * FROM file('{tmp}', '{insert['fmt']}')",
                            "CSV", params, settings, database,
                        )
                    finally:
                        tmp.unlink(missing_ok=True)
                    fmt = "CSV"
                else:
                    m = _FORMAT_AT_END.search(sql)
                    fmt = m[1] if m else query.get("default_format", "TabSeparated")
                    if m:
                        sql = sql[: m.start()]
                    out = backend.run(sql, fmt, params, settings, database)
            except Exception as exc:  # the engine's own error text, as a server sends it
                self._error(str(exc))
                return
            summary = json.dumps({"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0",
                                  "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(out))})
            self._reply(200, out, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Summary": summary,
                                   "X-ClickHouse-Query-Id": query.get("query_id", ""),
                                   "Content-Type": "application/octet-stream"})

        do_GET = _handle
        do_POST = _handle

    return Handler


def serve(path: Path, host: str, port: int, user: str, password: str) -> ThreadingHTTPServer:
    backend = Backend(path, user, password)
    server = ThreadingHTTPServer((host, port), make_handler(backend))
    server.daemon_threads = True
    return server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", default="default")
    ap.add_argument("--password", default="")
    a = ap.parse_args()
    server = serve(Path(a.path), a.host, a.port, a.user, a.password)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
