"""`opsconsole status`: the running jobs (asked over their sockets) and the last outcome of the others
(read from their runtime files)."""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from console.commands import settings_from
from engine.processes import pid_exists, pid_file_owner
from engine.endpoint_client import RunningJob, running_jobs

ENRICHMENT_STATE = "full-enrichment.state.json"
_LOG_SUFFIX = ".console.log"
_START = re.compile(r"^(?P<ts>\S+) START\s+(?P<job>\S+) pid=(?P<pid>\d+)")
_END = re.compile(r"^(?P<ts>\S+) END\s+(?P<job>\S+) state=(?P<state>\S+) exit=(?P<exit>-?\d+)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "status",
        help="running jobs (state, step, progress, last checkpoint) and the last outcome of the others",
        description="Ask every job socket in runtime/ for its state; for jobs not running, show how "
        "their last run ended (the END line of runtime/<job>.console.log; a run with no END line was "
        "killed: 'interrupted') and the Step D checkpoint.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _iso(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_record(job: RunningJob) -> dict[str, Any]:
    snap = job.snapshot
    progress = snap.progress.get(snap.step) or (next(iter(snap.progress.values())) if snap.progress else None)
    checkpoint = max(snap.checkpoints.values(), key=lambda c: c.ts, default=None)
    return {
        "job": job.hello.job,
        "pid": job.hello.pid,
        "state": snap.state.value,
        "step": snap.step,
        "done": progress.done if progress else None,
        "total": progress.total if progress else None,
        "unit": progress.unit if progress else "",
        "started_at": _iso(job.hello.started_at),
        "last_checkpoint": None if checkpoint is None else {
            "where": checkpoint.where, "step": checkpoint.step, "at": _iso(checkpoint.ts),
            "batch_idx": checkpoint.batch_idx, "pairs_done": checkpoint.pairs_done, "cursor": checkpoint.cursor,
        },
        "failures": snap.failures_total,
    }


def _tail(path: Path, size: int = 256 * 1024) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            length = fh.tell()
            fh.seek(max(0, length - size))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()



def _last_start(path: Path, block: int = 1 << 20, limit: int = 1 << 30) -> re.Match[str] | None:
    """The log's last START line, read backwards a block at a time: a long run's START lies far
    before its tail (a seed-scale Step D at batch 300 wrote 213 KB of checkpoint lines; 10x seed has
    ten times the batches).
    Stops after `limit` bytes."""
    try:
        with path.open("rb") as fh:
            pos = size = fh.seek(0, os.SEEK_END)
            carry = b""
            while pos > 0 and size - pos < limit:
                step = min(block, pos)
                pos -= step
                fh.seek(pos)
                lines = (fh.read(step) + carry).split(b"\n")
                carry = lines.pop(0) if pos > 0 else b""  # maybe the end of a line the next block starts
                for raw in reversed(lines):
                    if b" START " in raw and (m := _START.match(raw.decode("utf-8", errors="replace"))):
                        return m
    except OSError:
        return None
    return None


def last_outcome(runtime: Path, job: str) -> dict[str, Any]:
    """How the last run of `job` ended, from runtime/<job>.console.log."""
    record: dict[str, Any] = {"job": job, "outcome": "unknown", "exit": None, "started_at": "", "ended_at": ""}
    start = end = None
    log = runtime / f"{job}{_LOG_SUFFIX}"
    for line in _tail(log):
        if m := _START.match(line):
            start, end = m, None  # an END before this START belongs to an earlier run
        elif m := _END.match(line):
            end = m
    if start is None:  # the last run began before the tail: its START is further back
        start = _last_start(log)
    if start is not None:
        record["started_at"] = start["ts"]
        record["pid"] = int(start["pid"])
    if end is not None:
        record.update(outcome=end["state"], exit=int(end["exit"]), ended_at=end["ts"])
    elif start is not None:
        pid = int(start["pid"])
        # START without END: killed (SIGKILL, power loss) - or alive but not answering on its socket.
        record["outcome"] = "running (not answering on its socket)" if pid_exists(pid) and _pid_file(runtime, job) == pid \
            else "interrupted"
    return record


def _pid_file(runtime: Path, job: str) -> int | None:
    return pid_file_owner(runtime / f"{job}.pid")


def enrichment_checkpoint(runtime: Path, running: bool) -> dict[str, Any] | None:
    path = runtime / ENRICHMENT_STATE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    status = str(raw.get("status") or "")
    if status == "running" and not running:
        status = "interrupted"  # a checkpoint of an unfinished Step D whose process is gone
    return {
        "file": str(path), "status": status, "batch_idx": raw.get("batch_idx"), "pairs_done": raw.get("pairs_done"),
        "pairs_total": raw.get("pairs_total"), "updated_at": raw.get("updated_at"),
    }


def collect(runtime: Path) -> dict[str, Any]:
    running = anyio.run(running_jobs, runtime)
    live = {r.hello.job for r in running}
    others = []
    try:
        logs = sorted(p for p in runtime.glob(f"*{_LOG_SUFFIX}") if p.is_file())
    except OSError:
        logs = []
    for log in logs:
        job = log.name[: -len(_LOG_SUFFIX)]
        if job not in live:
            others.append(last_outcome(runtime, job))
    return {
        "runtime": str(runtime),
        "running": [running_record(r) for r in running],
        "not_running": others,
        "step_d_checkpoint": enrichment_checkpoint(runtime, "full-enrichment" in live),
    }


def _progress(rec: dict[str, Any]) -> str:
    if rec["done"] is None:
        return "-"
    total = f"/{rec['total']}" if rec["total"] is not None else ""
    return f"{rec['done']}{total} {rec['unit']}".strip()


def render(data: dict[str, Any]) -> str:
    lines: list[str] = []
    if data["running"]:
        lines.append("running:")
        for r in data["running"]:
            cp = r["last_checkpoint"]
            cp_text = (f"{cp['where']} {cp['at']} batch_idx={cp['batch_idx']} cursor={json.dumps(cp['cursor'], sort_keys=True)}"
                       if cp else "none yet")
            lines.append(f"  {r['job']:<18} pid {r['pid']:<7} {r['state']:<9} step {r['step'] or '-':<10} "
                         f"{_progress(r):<18} started {r['started_at']}")
            lines.append(f"  {'':<18} last checkpoint: {cp_text}" + (f"; failures: {r['failures']}" if r["failures"] else ""))
    else:
        lines.append("no job is running")
    if data["not_running"]:
        lines.append("last runs:")
        for r in data["not_running"]:
            when = f"ended {r['ended_at']}" if r["ended_at"] else (f"started {r['started_at']}" if r["started_at"] else "")
            code = f" exit {r['exit']}" if r["exit"] is not None else ""
            lines.append(f"  {r['job']:<18} {r['outcome']}{code}  {when}".rstrip())
    cp = data["step_d_checkpoint"]
    if cp:
        done = f"{cp['pairs_done']}/{cp['pairs_total']}" if cp.get("pairs_total") else f"{cp['pairs_done']}"
        hint = " (resume: opsconsole enrich --step D --resume)" if cp["status"] in ("interrupted", "stopped") else ""
        lines.append(f"Step D checkpoint: {cp['status']}, batch {cp['batch_idx']}, pairs {done}, "
                     f"updated {cp['updated_at']}{hint}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = collect(settings.runtime)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(render(data))
    return 0
