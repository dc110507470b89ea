"""Reads answered by the job that holds the embedded store.

Embedded chDB lets one process open its data directory. While a job has it, `opsconsole gates`
and `opsconsole mutations` ask that job over its socket instead of being refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from engine.endpoint_client import connect, socket_files
from engine.errors import LockHeld, OpsError
from engine.settings import Settings

#: How long the owner gets to answer. It holds the store, so it is alive; a job busy with Step D
#: on a loaded machine took longer than the 5 s a status probe allows, and the command then
#: reported the store as simply "in use".
OWNER_TIMEOUT_S = 60.0


async def ask_running_jobs(runtime: Path, query: str, timeout: float = OWNER_TIMEOUT_S) -> tuple[str, Any]:
    """(job name, the data) from the first job on a socket in `runtime` that answers `query`.
    OpsError naming each job asked and why it did not answer, when none did."""
    why: list[str] = []
    for path in socket_files(runtime):
        job = path.name[: -len(".sock")]
        try:
            with anyio.fail_after(timeout):
                async with connect(runtime, job, timeout=timeout) as client:
                    reply = await client.command(query)
        except TimeoutError:
            why.append(f"{job} did not answer within {timeout:g} s")
            continue
        except OpsError as exc:
            why.append(f"{job}: {exc.message}")
            continue
        if reply.ok:
            return job, reply.data
        why.append(f"{job} could not answer: {reply.error}")
    raise OpsError("; ".join(why) or "no job is serving a socket")


def ask_owner(settings: Settings, query: str, refused: LockHeld) -> tuple[str, Any]:
    """(job name, the data) from the running job that answers `query`; when none does, the
    store's own refusal (naming the holder) with what each job said."""
    try:
        return anyio.run(ask_running_jobs, settings.runtime, query)
    except OpsError as exc:
        raise LockHeld(f"{refused.message}; asked the running jobs for the {query}: {exc.message}",
                       hint=refused.hint) from None


def typed(kind: type[Any], records: Any) -> list[Any]:
    """The reply's records as the engine's dataclasses (GateResult, MutationInfo)."""
    from engine.wire import dataclass_from_record

    return [dataclass_from_record(kind, r) for r in (records or [])]
