"""`opsconsole pause|resume|stop JOB`: the job's Control, through its socket (runtime/<job>.sock)."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from console.commands import settings_from
from engine.endpoint_client import connect
from engine.errors import BadInput, OpsError
from engine.events import StateChanged

_HELP = {
    "pause": "pause a running job at its next unit boundary (after a checkpoint); waits until it is paused",
    "resume": "resume a paused job",
    "stop": "stop a running job gracefully (finish the unit, checkpoint, exit 0); waits until it has stopped",
}

_EXIT_NOTE = ("exit codes: 0 done; 4 the command does not apply (e.g. pause a paused job); "
              "5 no such job is running")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    for cmd, text in _HELP.items():
        p = sub.add_parser(cmd, help=text, description=text + ".", epilog=_EXIT_NOTE)
        p.add_argument("job", metavar="JOB", help="job name, as `opsconsole status` shows it (e.g. full-enrichment)")
        if cmd != "resume":
            p.add_argument("--no-wait", action="store_true", help="return once the job has accepted the command")
        if cmd == "stop":
            p.add_argument("--reason", default="", help="why (written to the job's log)")
        p.set_defaults(func=run, control_command=cmd)


async def control(runtime: Path, job: str, cmd: str, *, wait: bool = True, reason: str = "") -> str:
    """Send `cmd`; with `wait`, return once the job reports the state it leads to. The text says
    what happened; OpsError when the command does not apply or the job is not running."""
    async with connect(runtime, job) as client:
        states = client.bus.subscribe()  # before the command: its state changes cannot be missed
        args = {"reason": reason} if reason else {}
        reply = await client.command(cmd, **args)
        if not reply.ok:
            raise BadInput(f"{job}: {reply.error}")
        state = str((reply.data or {}).get("state", ""))
        if not wait or cmd == "resume":
            return f"{job}: {cmd} accepted (now {state})"
        async for event in states:
            if not isinstance(event, StateChanged):
                continue
            if cmd == "pause" and event.state.value == "paused":
                return f"{job}: paused" + (f" ({event.reason})" if event.reason else "")
            if event.state.final:
                if cmd == "pause":
                    raise BadInput(f"{job}: the job ended ({event.state.value}) before it paused")
                return f"{job}: {event.state.value}" + (f" ({event.reason})" if event.reason else "")
        # The connection ended without a final state (the job was killed, or said bye first).
        if cmd == "stop":
            return f"{job}: {client.closed_reason or 'ended'}"
        raise OpsError(f"{job}: the connection ended before the job paused ({client.closed_reason})")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    cmd = args.control_command
    wait = not getattr(args, "no_wait", False)
    reason = getattr(args, "reason", "") or ""
    text = anyio.run(lambda: control(settings.runtime, args.job, cmd, wait=wait, reason=reason))
    print(text)
    return 0
