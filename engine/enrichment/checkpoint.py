"""Step D checkpoints: the local file (atomic replace) and its Postgres mirror.

The file keeps the runbook's fields (job, step, batch_idx, pairs_done, last_mutations, updated_at) so
operators' habits and hand-written recovery files still work, plus what an exact resume needs: the
key `cursor` (last pair done in the stable order), the input `fingerprint`, `pairs_total` and the
`batch_size` in use, and the run's `mode` (full, or incremental: only the pairs affected since the
previous complete run). A cursor records *what is done*, so resuming with another batch size neither
skips nor repeats pairs.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import BadInput
from engine.files import atomic_write_json, decode_utf8, read_bounded
from engine.redact import redact

JOB_NAME = "full-enrichment"
STATE_FILE = f"{JOB_NAME}.state.json"
ACCEPTED_JOB_NAMES = (JOB_NAME, "enrichment")  # the runbook's files say "enrichment"


class Cursor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wallet_address: str
    condition_id: str


class StepDCheckpoint(BaseModel):
    """The state file. Only batch_idx and pairs_done are required: the runbook tells operators to
    hand-write exactly those when the file is damaged."""

    model_config = ConfigDict(extra="ignore")
    job: str = JOB_NAME
    step: str = "D"
    batch_idx: int = Field(0, ge=0)
    pairs_done: int = Field(0, ge=0)
    last_mutations: int = Field(0, ge=0)
    updated_at: str = ""
    cursor: Cursor | None = None
    fingerprint: str | None = None
    pairs_total: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    write_strategy: str | None = None
    # running: saved while the run went on (a paused run's, or a killed one's: `opsconsole status`
    # calls it interrupted once its process is gone); stopped: a graceful stop saved it last;
    # done: the run completed. Anything but done is continued with --resume.
    status: Literal["running", "stopped", "done"] = "running"
    # "incremental": the run's work list is only the pairs affected since the previous complete run.
    mode: Literal["full", "incremental"] = "full"

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def state_path(runtime: Path) -> Path:
    return runtime / STATE_FILE


def parse_checkpoint(text: str, where: str) -> StepDCheckpoint:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"checkpoint {where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint='fix it, or write {"job": "enrichment", "step": "D", "batch_idx": N, "pairs_done": N*300} '
            "as the runbook shows, then resume",
        ) from None
    except RecursionError:
        raise BadInput(f"checkpoint {where} is JSON nested too deeply to be a checkpoint") from None
    except ValueError as exc:  # an integer of thousands of digits: Python refuses to convert it
        raise BadInput(f"checkpoint {where} is not usable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"checkpoint {where} must be a JSON object")
    try:
        cp = StepDCheckpoint.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        raise BadInput(f"checkpoint {where} is invalid: {problems}") from None
    if cp.job not in ACCEPTED_JOB_NAMES:
        raise BadInput(f"checkpoint {where} belongs to job {cp.job!r}, not {JOB_NAME!r}")
    if cp.step != "D":
        raise BadInput(f"checkpoint {where} is for step {cp.step!r}; only Step D is checkpointed")
    return cp


def load_local(runtime: Path) -> StepDCheckpoint | None:
    path = state_path(runtime)
    if not path.exists() and not path.is_symlink():
        return None
    # Bounded: a state file symlinked to /dev/zero (or grown huge) is refused, not read forever.
    return parse_checkpoint(decode_utf8(read_bounded(path, "checkpoint file"), path), str(path))


def save_local(runtime: Path, cp: StepDCheckpoint) -> None:
    atomic_write_json(state_path(runtime), cp.document())


# --- the Postgres mirror ---------------------------------------------------------------------
UPSERT = """
INSERT INTO ops_job_checkpoints
    (job, step, batch_idx, pairs_done, last_mutations, cursor, fingerprint, pairs_total, status,
     host, pid, updated_at, batch_size, state)
VALUES (%(job)s, %(step)s, %(batch_idx)s, %(pairs_done)s, %(last_mutations)s, %(cursor)s::jsonb,
        %(fingerprint)s, %(pairs_total)s, %(status)s, %(host)s, %(pid)s, %(updated_at)s, %(batch_size)s,
        %(state)s::jsonb)
ON CONFLICT (job, step) DO UPDATE SET
    batch_idx = EXCLUDED.batch_idx, pairs_done = EXCLUDED.pairs_done,
    last_mutations = EXCLUDED.last_mutations, cursor = EXCLUDED.cursor,
    fingerprint = EXCLUDED.fingerprint, pairs_total = EXCLUDED.pairs_total, status = EXCLUDED.status,
    host = EXCLUDED.host, pid = EXCLUDED.pid, updated_at = EXCLUDED.updated_at,
    batch_size = EXCLUDED.batch_size, state = EXCLUDED.state
"""
SELECT = "SELECT state FROM ops_job_checkpoints WHERE job = %s AND step = 'D'"


class RemoteCheckpoints:
    """Mirrors checkpoints to Postgres. Failures never block or fail the job: `save` returns the
    error text, the caller shows it, and the next checkpoint tries again (it carries the newest
    state, so one success catches the mirror up)."""

    def __init__(self, settings: Any, *, pg: Any = None, timeout_s: float = 5.0, reconnect_every_s: float = 5.0) -> None:
        self.settings = settings
        self.pg = pg
        self._owned = pg is None
        self.timeout_s = timeout_s
        self.reconnect_every_s = reconnect_every_s
        self._next_connect = 0.0
        self.failures = 0  # consecutive
        self.last_error = ""

    async def _connect(self) -> Any:
        if self.pg is not None:
            return self.pg
        now = anyio.current_time()
        if now < self._next_connect:
            raise ConnectionError(f"Postgres unreachable; next reconnect attempt in {self._next_connect - now:.0f}s")
        self._next_connect = now + self.reconnect_every_s
        from engine.stores.postgres import Postgres

        pg = Postgres(self.settings, retry_seconds=min(2.0, self.timeout_s))
        await pg.open(min_size=1, max_size=2, timeout=self.timeout_s)
        try:
            await pg.migrate()
        except BaseException:
            await pg.close()
            raise
        self.pg = pg
        return pg

    async def save(self, cp: StepDCheckpoint, *, final: bool = False) -> str | None:
        """None when mirrored; otherwise the (redacted) reason it was not. `final` skips the
        reconnect back-off: the last checkpoint of a run deserves one more real attempt."""
        if final:
            self._next_connect = 0.0
        doc = cp.document()
        params = {
            "job": JOB_NAME, "step": "D", "batch_idx": cp.batch_idx, "pairs_done": cp.pairs_done,
            "last_mutations": cp.last_mutations, "cursor": json.dumps(doc["cursor"] or {}),
            "fingerprint": cp.fingerprint or "", "pairs_total": cp.pairs_total, "status": cp.status,
            "host": socket.gethostname(), "pid": os.getpid(), "updated_at": cp.updated_at or now_iso(),
            "batch_size": cp.batch_size, "state": json.dumps(doc),
        }
        try:
            with anyio.fail_after(self.timeout_s * 2):
                pg = await self._connect()
                await pg.execute(UPSERT, params)
        except Exception as exc:  # any failure of the mirror is reported, never fatal
            self.failures += 1
            detail = str(exc) or (f"no answer from Postgres within {self.timeout_s * 2:g}s"
                                  if isinstance(exc, TimeoutError) else "")  # TimeoutError has no text of its own
            self.last_error = redact(f"{type(exc).__name__}: {detail}".strip()) or type(exc).__name__
            if self._owned and self.pg is not None and self.failures >= 3:
                # A pool that keeps failing is rebuilt (e.g. the server moved or restarted).
                await self._drop()
            return self.last_error
        self.failures = 0
        self.last_error = ""
        return None

    async def load(self) -> StepDCheckpoint | None:
        try:
            with anyio.fail_after(self.timeout_s * 2):
                pg = await self._connect()
                row = await pg.fetch_one(SELECT, (JOB_NAME,))
        except Exception as exc:
            self.last_error = redact(str(exc)) or type(exc).__name__
            return None
        if not row or not row["state"]:
            return None
        state = row["state"] if isinstance(row["state"], str) else json.dumps(row["state"])
        return parse_checkpoint(state, "in Postgres ops_job_checkpoints")

    async def _drop(self) -> None:
        pg, self.pg = self.pg, None
        if pg is not None:
            try:
                await pg.close()
            except Exception:
                pass

    async def close(self) -> None:
        if self._owned:
            await self._drop()
