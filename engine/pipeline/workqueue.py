"""The shared run's event queue on Postgres, for `opsconsole pipeline --worker`.

Claims use `SELECT ... FOR UPDATE SKIP LOCKED`, so two workers claiming at the same instant get
different events and never wait on each other; each claim carries a lease (`lease_expires_at`)
that the holder renews while it works. A worker that dies stops renewing; once its lease runs out
the event is claimable again. Completion, the worker's accounting and finalization are each one
transaction, so a crash between any two statements leaves a state the others can finish from.
SQL lives in engine/pipeline/sql.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from engine.errors import BadInput
from engine.pipeline import sql
from engine.redact import redact_obj
from engine.stores.postgres import Postgres

MAX_ATTEMPTS = 3  # leases that ran out on one event before it is failed instead of retried


def run_key(parts: dict[str, Any]) -> str:
    """Deterministic key of the work a run does; workers started with the same options share it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def worker_id(name: str | None) -> str:
    # host and pid make it unique across machines and restarts; the name is for the operator.
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{name}" if name else base


@dataclass
class JoinedRun:
    run_id: str
    created: bool
    window_start: datetime | None
    window_end: datetime | None


@dataclass
class Claim:
    event_key: str
    seq: int
    payload: dict[str, Any]
    attempts: int
    previous: str | None  # the worker whose lease ran out, when this is a takeover


@dataclass
class QueueCounts:
    total: int = 0
    pending: int = 0
    claimed: int = 0
    done: int = 0
    failed: int = 0
    with_failures: int = 0

    @property
    def remaining(self) -> int:
        return self.pending + self.claimed


class WorkQueue:
    def __init__(self, pg: Postgres, worker: str, lease_s: float) -> None:
        self.pg, self.worker, self.lease_s = pg, worker, lease_s
        self.run_id = ""

    def _p(self, **extra: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "worker": self.worker, "lease_s": self.lease_s, **extra}

    # --- joining ---------------------------------------------------------------------------------
    async def create_or_join(self, *, key: str, run_id: str | None, new_run_id: str,
                             window_start: datetime | None, window_end: datetime | None,
                             options: dict[str, Any], git_sha: str, environment: str) -> JoinedRun:
        """Join `run_id` (must be an open worker run made with the same options) or the open run with
        `key`; else create one, holding its ingestion lease. Serialized per key by an advisory lock."""

        async def go(conn: Any) -> JoinedRun:
            if run_id is not None:
                cur = await conn.execute(sql.WORKER_RUN, {"run_id": run_id})
                row = await cur.fetchone()
                if row is None:
                    raise BadInput(f"--run-id {run_id}: no such run in processing_runs")
                rid, status, mode, rkey, ws, we, _fin = row
                if mode != "workers":
                    raise BadInput(f"--run-id {run_id}: that run was not started with --worker; only worker runs can be joined")
                if status != "running":
                    raise BadInput(f"--run-id {run_id}: that run is already {status}; nothing to join")
                if rkey != key:
                    raise BadInput(f"--run-id {run_id}: that run was started with different options (suites, stage, "
                                   "variants, overrides, limit, window or source); start this worker with the same flags")
                joined = JoinedRun(rid, False, ws, we)
            else:
                await conn.execute(sql.LOCK_RUN_KEY, {"run_key": key})
                cur = await conn.execute(sql.FIND_OPEN_WORKER_RUN, {"run_key": key})
                row = await cur.fetchone()
                if row is not None:
                    joined = JoinedRun(row[0], False, row[1], row[2])
                else:
                    await conn.execute(sql.INSERT_WORKER_RUN, {
                        "run_id": new_run_id, "window_start": window_start, "window_end": window_end,
                        "options": Jsonb(redact_obj(options)), "git_sha": git_sha, "environment": environment,
                        "host": socket.gethostname(), "pid": os.getpid(), "run_key": key, "worker": self.worker,
                        "lease_s": self.lease_s,
                    })
                    joined = JoinedRun(new_run_id, True, window_start, window_end)
            await conn.execute(sql.UPSERT_WORKER, {"run_id": joined.run_id, "worker": self.worker,
                                                   "host": socket.gethostname(), "pid": os.getpid()})
            return joined

        joined = await self.pg.run(go)
        self.run_id = joined.run_id
        return joined

    async def state(self) -> tuple[str, bool, str | None]:
        """(run status, queue complete?, finalized_by)."""
        row = await self.pg.fetch_one(sql.RUN_QUEUE_STATE, {"run_id": self.run_id})
        if row is None:
            raise BadInput(f"run {self.run_id} disappeared from processing_runs")
        return row["status"], bool(row["ready"]), row["finalized_by"]

    # --- ingestion -------------------------------------------------------------------------------
    async def claim_ingest(self) -> bool:
        return await self.pg.execute(sql.CLAIM_INGEST, self._p()) > 0

    async def release_ingest(self) -> None:
        await self.pg.execute(sql.RELEASE_INGEST, self._p())

    async def enqueue(self, events: list[tuple[str, dict[str, Any]]], ingest_stats: dict[str, Any],
                      worker_stats: dict[str, Any]) -> None:
        """Every event and the 'queue complete' mark in one transaction: all or nothing."""

        async def go(conn: Any) -> None:
            for seq, (event_key, payload) in enumerate(events):
                await conn.execute(sql.ENQUEUE_EVENT, {"run_id": self.run_id, "event_key": event_key, "seq": seq,
                                                       "payload": Jsonb(payload)})
            await conn.execute(sql.QUEUE_READY, {"run_id": self.run_id, "ingest_stats": Jsonb(redact_obj(ingest_stats))})
            await conn.execute(sql.SAVE_WORKER_STATS, self._p(stats=Jsonb(redact_obj(worker_stats))))

        await self.pg.run(go)

    # --- events ----------------------------------------------------------------------------------
    async def claim(self, n: int) -> tuple[list[Claim], list[tuple[str, dict[str, Any], str]]]:
        """Up to n events for this worker, and the poison events this call gave up on."""

        async def go(conn: Any) -> tuple[list[Claim], list[tuple[str, dict[str, Any], str]]]:
            cur = await conn.execute(sql.FAIL_POISON_EVENTS, {"run_id": self.run_id, "max_attempts": MAX_ATTEMPTS})
            poisoned = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
            cur = await conn.execute(sql.CLAIM_EVENTS, self._p(n=n))
            claims = [Claim(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]
            return sorted(claims, key=lambda c: c.seq), poisoned

        return await self.pg.run(go)

    async def heartbeat(self, keys: list[str], ingesting: bool) -> set[str]:
        """Renew this worker's leases; returns the keys still held (a missing one was taken over)."""

        async def go(conn: Any) -> set[str]:
            held: set[str] = set()
            if keys:
                cur = await conn.execute(sql.RENEW_LEASES, self._p(keys=keys))
                held = {r[0] for r in await cur.fetchall()}
            if ingesting:
                await conn.execute(sql.RENEW_INGEST, self._p())
            await conn.execute(sql.WORKER_SEEN, self._p())
            await conn.execute(sql.RUN_HEARTBEAT, self._p())
            return held

        return await self.pg.run(go)

    async def complete(self, event_key: str, had_failures: bool, worker_stats: dict[str, Any]) -> str | None:
        """Mark done and save this worker's accounting together; returns who held the claim
        (None: it was already done by a worker that finished first)."""

        async def go(conn: Any) -> str | None:
            cur = await conn.execute(sql.COMPLETE_EVENT, self._p(event_key=event_key, had_failures=had_failures))
            row = await cur.fetchone()
            await conn.execute(sql.SAVE_WORKER_STATS, self._p(stats=Jsonb(redact_obj(worker_stats))))
            return row[0] if row else None

        return await self.pg.run(go)

    async def save_stats(self, worker_stats: dict[str, Any], *, leaving: bool = False) -> None:
        await self.pg.execute(sql.WORKER_LEFT if leaving else sql.SAVE_WORKER_STATS,
                              self._p(stats=Jsonb(redact_obj(worker_stats))))

    async def release(self, keys: list[str]) -> None:
        if keys:
            await self.pg.execute(sql.RELEASE_CLAIMS, self._p(keys=keys))

    async def counts(self) -> QueueCounts:
        row = await self.pg.fetch_one(sql.QUEUE_COUNTS, {"run_id": self.run_id})
        return QueueCounts(**row) if row else QueueCounts()

    # --- the end ---------------------------------------------------------------------------------
    async def finalize(self, build: Callable[[QueueCounts, dict[str, Any], dict[str, dict[str, Any]]], tuple[str, dict[str, Any], dict[str, Any], str | None]]
                       ) -> dict[str, Any] | None:
        """Finalize the run if it is still running, its queue is complete and no event remains.

        The run row is locked FOR UPDATE first, so concurrent finalizers queue up; the first one
        writes the summary and flips the status, the others then see it is no longer 'running'.
        `build(counts, ingest_stats, worker_stats)` -> (status, counts, summary, error).
        Returns the summary when this worker finalized, else None.
        """

        async def go(conn: Any) -> dict[str, Any] | None:
            cur = await conn.execute(sql.LOCK_RUN_ROW, {"run_id": self.run_id})
            row = await cur.fetchone()
            if row is None or row[0] != "running" or not row[2]:
                return None
            cur = await conn.execute(sql.QUEUE_COUNTS, {"run_id": self.run_id})
            c = QueueCounts(*(await cur.fetchone()))
            if c.remaining:
                return None
            cur = await conn.execute(sql.WORKER_STATS, {"run_id": self.run_id})
            workers = {r[0]: r[1] for r in await cur.fetchall()}
            status, counts, summary, error = build(c, row[1] or {}, workers)
            cur = await conn.execute(sql.FINALIZE_WORKER_RUN, self._p(
                status=status, counts=Jsonb(redact_obj(counts)), summary=Jsonb(redact_obj(summary)), error=error))
            return summary if await cur.fetchone() else None

        return await self.pg.run(go)
