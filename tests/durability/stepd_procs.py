"""Helpers for the Step D durability tests: real `opsconsole` processes on their own chDB path and
their own Postgres database, and checksums read by a separate small process (chDB allows one data
path per process, and the test process already has the session's path open)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import OPSCONSOLE, REPO, _with_db, subprocess_env

KILLED = -signal.SIGKILL

# Checksums of everything Step D and Step E produce; also the work-list pairs at given offsets.
DUMP = """
import json, sys
from engine.settings import load_settings
from engine.stores.clickhouse import open_clickhouse
from engine.enrichment.stepd import pnl_checksum, step_d_missing, pair_at
ch = open_clickhouse(load_settings())
outcomes = ch.query(
    "SELECT count(), sumWithOverflow(cityHash64(wallet_address, condition_id, market_id, toString(resolved_outcome), "
    "toString(final_side), won, resolved_at, toString(canonical_category), num_trades, toString(final_shares), "
    "toString(realized_pnl_usd))) FROM $db.wallet_resolution_outcomes").rows[0]
print(json.dumps({
    "pnl": list(pnl_checksum(ch)), "outcomes": [int(outcomes[0]), int(outcomes[1])], "missing": step_d_missing(ch),
    "trades": int(ch.scalar("SELECT count() FROM $db.trades_raw")),
    "pairs_at": {str(o): list(pair_at(ch, o)) for o in json.loads(sys.argv[1])},
}))
"""


def fresh_pg_database(server_uri: str) -> str:
    """A new empty database on the session's embedded server (for fixtures wider than one test)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(server_uri, name)


@dataclass
class Site:
    """One isolated installation: runtime dir, chDB path, ClickHouse database, Postgres URL."""

    root: Path
    postgres_url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Path:
        return self.root / "rt"

    @property
    def state_file(self) -> Path:
        return self.runtime / "full-enrichment.state.json"

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(
            OPSCONSOLE_RUNTIME_DIR=str(self.runtime), CLICKHOUSE_PATH=str(self.root / "ch"),
            CLICKHOUSE_DATABASE="demo", POSTGRES_URL=self.postgres_url, **{**self.extra, **extra},
        )

    def run(self, *args: str, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*OPSCONSOLE, *args], env=self.env(**extra), cwd=REPO, capture_output=True, text=True,
                             timeout=timeout)
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        return out

    def spawn(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        """Start the CLI with its output read continuously (see `Drain`); `finish` collects it."""
        proc = subprocess.Popen([*OPSCONSOLE, *args], env=self.env(**extra), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.drains = (Drain(proc.stdout), Drain(proc.stderr))  # type: ignore[attr-defined]
        return proc

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def pairs_done(self) -> int:
        state = self.state()
        return int(state["pairs_done"]) if state else -1

    def wait_for_checkpoint(self, proc: subprocess.Popen[str], after: int, seconds: float = 120) -> bool:
        """Wait until the checkpoint on disk is past `after` pairs (True) or the process ended (False)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.pairs_done() > after:
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.01)
        raise AssertionError(f"no checkpoint past {after} pairs within {seconds}s")

    def checksums(self, offsets: list[int] | None = None) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", DUMP, json.dumps(offsets or [])], env=self.env(), cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)

    def remote_checkpoint(self) -> dict[str, Any] | None:
        with psycopg.connect(self.postgres_url) as conn:
            row = conn.execute("SELECT state FROM ops_job_checkpoints WHERE job = 'full-enrichment' AND step = 'D'").fetchone()
        return None if row is None else (row[0] if isinstance(row[0], dict) else json.loads(row[0]))


class Drain(threading.Thread):
    """Reads a child's pipe as it is written. Unread, a pipe holds 64 KiB: a chatty child (JSON
    events per batch) then blocks in its own write and stops making progress, which a test would
    misread as the behaviour under test (a stalled Step D, a missing mirror failure)."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.chunks: list[str] = []
        self.start()

    def run(self) -> None:
        for chunk in iter(lambda: self.pipe.read(8192), ""):
            self.chunks.append(chunk)

    def text(self) -> str:
        self.join()
        return "".join(self.chunks)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = proc.drains  # type: ignore[attr-defined]
    return out.text(), err.text()


def json_events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the final gates table etc. are plain lines
    return events


def local_checkpoints(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "CheckpointSaved" and e["where"] == "local"]


def reference(root: Path, postgres_url: str, scale: str) -> dict[str, Any]:
    """An uninterrupted demo run (one big batch) and its checksums."""
    site = Site(root, postgres_url)
    out = site.run("demo", "--scale", scale, "--batch-size", "100000", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sums = site.checksums()
    assert sums["missing"] == 0 and sums["outcomes"][0] > 0
    return sums
