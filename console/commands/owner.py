"""Reads answered by the job that holds the embedded store.

Embedded chDB lets one process open its data directory. While a job has it, `opsconsole gates`
and `opsconsole mutations` ask that job over its socket instead of being refused.
"""

from __future__ import annotations

from typing import Any

import anyio

from engine.endpoint_client import connect, running_jobs
from engine.errors import LockHeld, OpsError
from engine.settings import Settings


def ask_owner(settings: Settings, query: str, refused: LockHeld) -> tuple[str, Any]:
    """(job name, the data) from the first running job that answers `query`; re-raises
    `refused` (the store's own message, naming the holder) when none does."""

    async def ask() -> tuple[str, Any] | None:
        for job in await running_jobs(settings.runtime):
            try:
                async with connect(settings.runtime, job.hello.job) as client:
                    reply = await client.command(query)
            except OpsError:
                continue
            if reply.ok:
                return job.hello.job, reply.data
        return None

    answer = anyio.run(ask)
    if answer is None:
        raise refused
    return answer


def typed(kind: type[Any], records: Any) -> list[Any]:
    """The reply's records as the engine's dataclasses (GateResult, MutationInfo)."""
    from engine.wire import dataclass_from_record

    return [dataclass_from_record(kind, r) for r in (records or [])]
