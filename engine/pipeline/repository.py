"""Pipeline persistence on Postgres (engine/stores/postgres.py). SQL lives in engine/pipeline/sql.py.

Every write is idempotent: snapshots are upserts, results are inserted once per natural key
(event_key, experiment_name, config_hash) with ON CONFLICT DO NOTHING, so a rerun, a replay or a
second runner racing on the same event never writes a second row. `Postgres.run` retries each unit
of work on transient connection errors.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

import psutil
from psycopg.types.json import Jsonb

from engine.pipeline import sql
from engine.pipeline.gamma import parse_iso
from engine.pipeline.normalize import EventGroup
from engine.redact import redact_obj
from engine.stores.postgres import Postgres

STALE_RUN_S = 3600  # a 'running' row without a heartbeat for an hour belongs to a dead process


def _j(value: Any) -> Jsonb:
    return Jsonb(redact_obj(value))


class PipelineRepository:
    def __init__(self, pg: Postgres) -> None:
        self.pg = pg

    async def migrate(self) -> None:
        await self.pg.migrate()

    # --- runs ------------------------------------------------------------------------------------
    async def start_run(self, run_id: str, *, window: dict[str, str | None], options: dict[str, Any],
                        git_sha: str, environment: str) -> list[str]:
        async def go(conn: Any) -> list[str]:
            cur = await conn.execute(sql.ABANDON_STALE_RUNS, {"stale_s": STALE_RUN_S})
            abandoned = [r[0] for r in await cur.fetchall()]
            # Same host: a run whose process is gone (kill -9, OOM) is finalized now, not in an hour.
            cur = await conn.execute(sql.RUNNING_ON_HOST, {"host": socket.gethostname()})
            for other_id, pid in await cur.fetchall():
                if pid and pid != os.getpid() and not psutil.pid_exists(pid):
                    await conn.execute(sql.ABANDON_RUN, {"run_id": other_id,
                                                         "error": f"abandoned: process {pid} died without finalizing the run"})
                    abandoned.append(other_id)
            await conn.execute(sql.INSERT_RUN, {
                "run_id": run_id, "window_start": parse_iso(window.get("start")), "window_end": parse_iso(window.get("end")),
                "options": _j(options), "git_sha": git_sha, "environment": environment,
                "host": socket.gethostname(), "pid": os.getpid(),
            })
            return abandoned

        return await self.pg.run(go)

    async def heartbeat(self, run_id: str, counts: dict[str, Any]) -> None:
        await self.pg.execute(sql.HEARTBEAT_RUN, {"run_id": run_id, "counts": _j(counts)})

    async def finish_run(self, run_id: str, status: str, counts: dict[str, Any], summary: dict[str, Any], error: str | None) -> None:
        await self.pg.execute(sql.FINISH_RUN, {"run_id": run_id, "status": status, "counts": _j(counts),
                                               "summary": _j(summary), "error": error})

    async def ensure_replay_run(self, run_id: str, git_sha: str, environment: str) -> None:
        await self.pg.execute(sql.INSERT_REPLAY_RUN, {"run_id": run_id, "git_sha": git_sha, "environment": environment,
                                                      "host": socket.gethostname(), "pid": os.getpid()})

    async def run_status(self, run_id: str) -> str | None:
        row = await self.pg.fetch_one(sql.RUN_EXISTS, {"run_id": run_id})
        return row["status"] if row else None

    async def save_experiment_runs(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        async def go(conn: Any) -> None:
            for row in rows:
                await conn.execute(sql.UPSERT_EXPERIMENT_RUN, {**row, "run_id": run_id, "config": _j(row["config"]),
                                                               "counts": _j(row.get("counts", {}))})

        await self.pg.run(go)

    # --- snapshots -------------------------------------------------------------------------------
    async def save_event(self, group: EventGroup, run_id: str) -> None:
        """Event, its markets and contracts in one transaction (all or nothing)."""

        async def go(conn: Any) -> None:
            await conn.execute(sql.UPSERT_EVENT, {
                "event_key": group.event_key, "event_id": group.event_id, "title": group.title, "slug": group.slug,
                "payload": _j({"event_key": group.event_key, "event_id": group.event_id, "market_ids": group.market_ids}),
                "run_id": run_id,
            })
            for m in group.markets:
                end: datetime | None = parse_iso(m.end_date)
                await conn.execute(sql.UPSERT_MARKET, {
                    "market_id": m.market_id, "event_key": group.event_key, "question": m.question,
                    "condition_id": m.condition_id, "slug": m.slug, "end_date": end, "volume": m.volume,
                    "liquidity": m.liquidity, "payload": _j(m.raw), "run_id": run_id,
                })
                for c in m.contracts:
                    await conn.execute(sql.UPSERT_CONTRACT, {
                        "market_id": m.market_id, "outcome_index": c.outcome_index, "outcome": c.outcome,
                        "price": c.price, "token_id": c.token_id, "run_id": run_id,
                    })

        await self.pg.run(go)

    # --- results ---------------------------------------------------------------------------------
    async def stored(self, event_key: str, research: list[str], forecasts: list[str]) -> tuple[dict[tuple[str, str], dict[str, Any]], set[tuple[str, str]]]:
        """(research payloads by (name, hash), forecast keys present) for one event."""
        arts = await self.pg.fetch_all(sql.FIND_ARTIFACTS, {"event_key": event_key, "names": research}) if research else []
        res = await self.pg.fetch_all(sql.FIND_RESULTS, {"event_key": event_key, "names": forecasts}) if forecasts else []
        return ({(r["experiment_name"], r["config_hash"]): r["payload"] for r in arts},
                {(r["experiment_name"], r["config_hash"]) for r in res})

    async def save_artifact(self, row: dict[str, Any]) -> bool:
        """True if this call wrote it; False if it was already there (a rerun, replay or another runner)."""

        async def go(conn: Any) -> bool:
            cur = await conn.execute(sql.INSERT_ARTIFACT, {**row, "config": _j(row["config"]), "payload": _j(row["payload"])})
            return (await cur.fetchone()) is not None

        return await self.pg.run(go)

    async def save_result(self, row: dict[str, Any]) -> bool:
        async def go(conn: Any) -> bool:
            cur = await conn.execute(sql.INSERT_RESULT, {
                **row, "config": _j(row["config"]), "probabilities": Jsonb(row["probabilities"]),
                "payload": _j(row.get("payload", {})), "research_keys": Jsonb(row.get("research_keys", [])),
            })
            return (await cur.fetchone()) is not None

        return await self.pg.run(go)

    async def save_failures(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return

        async def go(conn: Any) -> None:
            for row in rows:
                await conn.execute(sql.INSERT_FAILURE, row)

        await self.pg.run(go)
