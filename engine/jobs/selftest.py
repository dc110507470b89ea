"""A small job that exercises the runtime end to end: units of work, checkpoints, pause, stop.

`opsconsole selftest` runs it; tests use it to prove the Control and signal handling without
needing either store.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from pydantic import BaseModel, Field

from engine.events import CheckpointSaved
from engine.errors import BadInput
from engine.files import atomic_write_json, read_json_bounded
from engine.runner import JobContext


class SelftestLive(BaseModel):
    unit_seconds: float = Field(0.05, ge=0, le=60)


class SelftestJob:
    name = "selftest"
    panels: tuple[str, ...] = ()  # progress, logs and checkpoints only

    def __init__(self, units: int = 100, unit_seconds: float = 0.05, resume: bool = False) -> None:
        self.units = units
        self.unit_seconds = unit_seconds
        self.resume = resume

    def live_settings(self) -> SelftestLive:
        return SelftestLive(unit_seconds=self.unit_seconds)

    def state_path(self, ctx: JobContext) -> Path:
        return ctx.settings.runtime / "selftest.state.json"

    async def run(self, ctx: JobContext) -> None:
        path = self.state_path(ctx)
        done = 0
        if self.resume and path.exists():
            doc = read_json_bounded(path, "state file")
            if not isinstance(doc, dict) or not isinstance(doc.get("done"), int) or doc["done"] < 0:
                raise BadInput(f"{path}: must be a JSON object with a count \"done\" >= 0")
            done = int(doc["done"])
            ctx.log(f"resuming after unit {done}")
        while done < self.units:
            if not await ctx.control.boundary():
                ctx.log(f"stopped after unit {done}; resume with --resume")
                return
            await anyio.sleep(ctx.control.live.unit_seconds)  # one unit of "work"
            done += 1
            await anyio.to_thread.run_sync(atomic_write_json, path, {"done": done, "units": self.units})
            ctx.emit(CheckpointSaved(job=self.name, step="selftest", where="local", cursor={"done": done}, batch_idx=done))
            ctx.progress("selftest", done, self.units, unit="units")
        ctx.log(f"all {self.units} units done")
