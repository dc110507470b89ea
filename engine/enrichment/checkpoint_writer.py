"""Writes Step D's checkpoints: the local file first and always, then the Postgres mirror beside it.

Step D's invariant is "a checkpoint says less than is done, never more". The batch loop keeps the
first half (it only hands over a checkpoint once its batch is written); this writer keeps the rest:

* Checkpoints land in order. `save_next` waits for the checkpoint in flight before starting the
  next one, so the local file only ever moves forward, one checkpoint at a time.
* `settle` waits for the checkpoint in flight. Stop, pause, a failure and the end call it, so what
  is on disk is the newest checkpoint before anything reports or exits.
* The mirror runs in a task of its own, fed in checkpoint order: a slow or unreachable server (a
  restart, a network cut: each attempt can take its full timeout) never holds the batch loop or
  the local checkpoints. While it is failing it skips to the newest state (one success catches it
  up). Leaving `run` drains it; a final checkpoint is mirrored inline.
* Mirror failures are reported (a WARNING line, one Failure event per outage), never fatal; a
  failing local write is fatal and leaves `run` as itself, not wrapped in an exception group.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from engine.crashpoints import crash_point
from engine.enrichment.checkpoint import RemoteCheckpoints, StepDCheckpoint, save_local
from engine.events import CheckpointSaved
from engine.runner import JobContext

T = TypeVar("T")


def _cursor(state: StepDCheckpoint) -> dict[str, Any]:
    return state.cursor.model_dump() if state.cursor else {}


class CheckpointWriter:
    def __init__(self, ctx: JobContext, remote: RemoteCheckpoints | None) -> None:
        self.ctx = ctx
        self.runtime = ctx.settings.runtime
        self.remote = remote
        self.last_saved: StepDCheckpoint | None = None  # the newest checkpoint handed to `save`
        self._inflight: list[anyio.Event] = []
        self._tg: TaskGroup | None = None
        self._to_mirror, self._mirror_queue = anyio.create_memory_object_stream[StepDCheckpoint](math.inf)
        if remote is None:
            self._mirror_queue.close()

    # --- the local file, then the mirror -----------------------------------------------------------
    async def save(self, state: StepDCheckpoint, final: bool = False) -> None:
        """Local checkpoint now; the mirror queued (or, `final`, written before returning)."""
        self.last_saved = state
        # Local first and always: the remote mirror can never hold it back.
        await anyio.to_thread.run_sync(save_local, self.runtime, state)
        self.ctx.emit(CheckpointSaved(job=self.ctx.name, step="D", where="local", cursor=_cursor(state),
                                      pairs_done=state.pairs_done, batch_idx=state.batch_idx))
        if self.remote is None:
            return
        if final:
            await self.mirror(state, final=True)
        else:
            self._to_mirror.send_nowait(state)

    async def mirror(self, state: StepDCheckpoint, final: bool = False) -> None:
        """One attempt to write `state` to Postgres; a failure is logged, never raised."""
        remote = self.remote
        assert remote is not None
        crash_point("between_local_and_remote_checkpoint")
        failures_before = remote.failures
        error = await remote.save(state, final=final)
        ctx = self.ctx
        if error is None:
            ctx.emit(CheckpointSaved(job=ctx.name, step="D", where="remote", cursor=_cursor(state),
                                     pairs_done=state.pairs_done, batch_idx=state.batch_idx))
            if failures_before:
                ctx.log(f"remote checkpoint caught up after {failures_before} failed attempt(s)", step="D")
        elif remote.failures == 1 or remote.failures % 25 == 0:  # an outage is shown, not every retry
            ctx.log(f"remote checkpoint (Postgres) not saved: {error} — the local checkpoint is saved; "
                    f"retrying at the next checkpoint ({remote.failures} consecutive failure(s))", level="WARNING", step="D")
            if remote.failures == 1:
                ctx.failure("remote checkpoint", error, retriable=True, step="D")
        if error is not None and final:
            ctx.log(f"the remote checkpoint in Postgres is behind the local one (pairs_done={state.pairs_done:,} "
                    f"locally): {error}", level="WARNING", step="D")

    async def _mirror_loop(self) -> None:
        async with self._mirror_queue:
            async for state in self._mirror_queue:
                while self.remote is not None and self.remote.failures:  # behind: only the newest state matters
                    try:
                        state = self._mirror_queue.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self.mirror(state)

    # --- checkpoints in the background -------------------------------------------------------------
    async def settle(self) -> None:
        """Wait until the checkpoint in flight (if any) is on disk."""
        while self._inflight:
            await self._inflight.pop().wait()

    async def save_next(self, make: Callable[[], StepDCheckpoint]) -> None:
        """Wait for the checkpoint in flight, then save `make()` in the background (only inside
        `run`). The state is built after the wait, so its `updated_at` is when it is saved."""
        if self._tg is None:
            raise RuntimeError("CheckpointWriter.save_next is only available inside CheckpointWriter.run")
        await self.settle()
        landed = anyio.Event()
        self._inflight.append(landed)
        self._tg.start_soon(self._save_in_background, make(), landed)

    async def _save_in_background(self, state: StepDCheckpoint, landed: anyio.Event) -> None:
        try:
            await self.save(state)
        finally:
            landed.set()

    async def run(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run `body` (the batch loop) beside the mirror task; returns what it returns.

        Whatever way `body` ends, the checkpoint in flight lands and the queued mirror writes finish
        before this returns or raises. A failure of `body` is raised after that, as itself; so is a
        failing background checkpoint write (the local file could not be written)."""
        failure: Exception | None = None
        result: T | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.remote is not None:
                    tg.start_soon(self._mirror_loop)
                try:
                    result = await body()
                except Exception as exc:  # raised outside the task group, unwrapped, once checkpoints landed
                    failure = exc
                await self.settle()
                self._to_mirror.close()  # the mirror writes what is queued, then ends (the task group waits for it)
        except BaseExceptionGroup as group:  # a background checkpoint write failed
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
        finally:
            self._tg = None
        if failure is not None:
            raise failure
        return result  # type: ignore[return-value]  # body returned normally

    # --- a run that finds Step D already complete -----------------------------------------------
    async def catch_up_mirror(self, cp: StepDCheckpoint) -> None:
        """A run killed between its final local checkpoint and the mirror leaves Postgres behind; the
        next run finds Step D complete and brings the mirror up to the local checkpoint."""
        remote, ctx = self.remote, self.ctx
        if remote is None:
            return
        remote.last_error = ""
        mirrored = await remote.load()
        if mirrored is None and remote.last_error:
            ctx.log(f"could not compare the Postgres mirror with the local checkpoint: {remote.last_error}",
                    level="WARNING", step="D")
            return
        if mirrored is not None and mirrored.document() == cp.document():
            return
        behind = "empty" if mirrored is None else f"status {mirrored.status}, pairs_done={mirrored.pairs_done:,}"
        error = await remote.save(cp, final=True)
        if error is None:
            ctx.log(f"the Postgres mirror was behind the local checkpoint ({behind}); brought up to date", step="D")
        else:
            ctx.log(f"the Postgres mirror is behind the local checkpoint ({behind}) and could not be updated: {error}",
                    level="WARNING", step="D")
