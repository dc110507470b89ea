"""One Control per job run: pause, resume, stop, abort and live settings.

Jobs call `await control.boundary()` between units of work (after a Step D batch is written and
checkpointed, before a pipeline event starts). Pause and stop only ever take effect there, which is
what makes them graceful. Keys in the TUI, the headless signal handler and tests all call the same
methods.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import anyio
from pydantic import BaseModel, ValidationError

from engine.bus import EventBus
from engine.errors import BadInput
from engine.events import JobState, LogLine, SettingsChanged, StateChanged

L = TypeVar("L", bound=BaseModel)


class NoLiveSettings(BaseModel):
    pass


class Control(Generic[L]):
    def __init__(self, job: str, bus: EventBus, live: L | None = None) -> None:
        self.job = job
        self.bus = bus
        self.live: L = live if live is not None else NoLiveSettings()  # type: ignore[assignment]
        self.state = JobState.STARTING
        self._pause_requested = False
        self._stop_requested = False
        self._stop_reason = ""
        self._wake = anyio.Event()

    # --- state ---------------------------------------------------------------------------------
    def _set_state(self, state: JobState, reason: str = "") -> None:
        if state is self.state:
            return
        self.state = state
        self.bus.publish(StateChanged(job=self.job, state=state, reason=reason))

    def _poke(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def pause_requested(self) -> bool:
        return self._pause_requested

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    # --- operator actions ------------------------------------------------------------------------
    def pause(self) -> bool:
        """Finish the current unit, checkpoint, then hold. Returns False when it does not apply."""
        if self.state not in (JobState.RUNNING, JobState.STARTING) or self._stop_requested:
            return False
        self._pause_requested = True
        self._set_state(JobState.PAUSING, "pause requested")
        return True

    def resume(self) -> bool:
        if not self._pause_requested or self._stop_requested:
            return False
        self._pause_requested = False
        self._set_state(JobState.RUNNING, "resumed")
        self._poke()
        return True

    def stop(self, reason: str = "stop requested") -> bool:
        """Like pause, then exit cleanly. Idempotent."""
        if self._stop_requested or self.state.final:
            return False
        self._stop_requested = True
        self._stop_reason = reason
        self._set_state(JobState.STOPPING, reason)
        self._poke()
        return True

    def update_live(self, changes: dict[str, Any]) -> L:
        """Validate and apply live settings; they take effect at the next unit of work."""
        new = self.validated(changes)
        self.live = new
        self.bus.publish(SettingsChanged(job=self.job, values=new.model_dump()))
        self.bus.publish(LogLine(job=self.job, level="INFO", message=f"settings changed: {changes}"))
        return new

    def validated(self, changes: dict[str, Any]) -> L:
        """The live settings with `changes` applied, or BadInput naming each problem."""
        merged = {**self.live.model_dump(), **changes}
        try:
            new = type(self.live).model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BadInput(f"invalid setting: {problems}") from None
        unknown = set(changes) - set(type(self.live).model_fields)
        if unknown:
            raise BadInput(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return new

    # --- job side ------------------------------------------------------------------------------
    def started(self) -> None:
        if self.state is JobState.STARTING:
            self._set_state(JobState.PAUSING if self._pause_requested else JobState.RUNNING)

    async def boundary(self) -> bool:
        """Call between units of work, after the last one is durable. False means: stop now."""
        if self._stop_requested:
            return False
        if self._pause_requested:
            self._set_state(JobState.PAUSED, "holding at a unit boundary")
            while self._pause_requested and not self._stop_requested:
                await self._wake.wait()
            if self._stop_requested:
                return False
        return True

    def finish(self, state: JobState, reason: str = "") -> None:
        self._set_state(state, reason)
