"""What one pipeline run is asked to do (built by `opsconsole pipeline`, or directly by tests)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from engine.errors import BadInput
from engine.pipeline.gamma import Window

DEFAULT_WINDOW_DAYS = 7


@dataclass
class PipelineOptions:
    suites: list[str] | None = None
    stage: str = "both"
    include_research: list[str] = field(default_factory=list)
    include_forecast: list[str] = field(default_factory=list)
    experiment_overrides: list[str] = field(default_factory=list)
    override_files: list[Path] = field(default_factory=list)
    window_days: int | None = None
    target_date: date | None = None
    limit: int | None = None
    source: Path | None = None
    event_batch_size: int | None = None  # None: PIPELINE_EVENT_BATCH_SIZE (default 4)
    dry_run: bool = False
    debug_dump_dir: Path | None = None  # None: PIPELINE_DEBUG_DUMP_DIR or runtime/debug-dumps
    no_debug_dump: bool = False
    summary_path: Path | None = None
    run_id: str | None = None  # with worker=True: join this open worker run
    # `pipeline --worker`: share one run with other processes/machines through Postgres.
    worker: bool = False
    worker_name: str | None = None
    lease_s: float | None = None  # None: PIPELINE_WORKER_LEASE_S (default 60)
    # HTTP tuning for Gamma (tests shorten the backoff; operators rarely need to).
    gamma_attempts: int = 6
    gamma_backoff_s: float = 0.5
    gamma_timeout_s: float = 30.0

    def validate(self) -> None:
        if self.window_days is not None and self.target_date is not None:
            raise BadInput("--window-days and --target-date are mutually exclusive")
        if self.window_days is not None and not 0 <= self.window_days <= 3650:
            raise BadInput(f"--window-days must be between 0 and 3650, not {self.window_days}")
        if self.limit is not None and self.limit < 1:
            raise BadInput(f"--limit must be at least 1, not {self.limit}")
        if self.event_batch_size is not None and not 1 <= self.event_batch_size <= 256:
            raise BadInput(f"--event-batch-size must be between 1 and 256, not {self.event_batch_size}")
        if self.source is not None and not Path(self.source).is_file():
            raise BadInput(f"--source {self.source}: no such file")

    def window(self, now: datetime | None = None) -> Window | None:
        """The close-date window; None means no window (only with --source and no window flag)."""
        if self.target_date is not None:
            start = datetime.combine(self.target_date, time(0, 0, 0), tzinfo=timezone.utc)
            return Window(start, start + timedelta(days=1) - timedelta(seconds=1))
        if self.window_days is None and self.source is not None:
            return None
        days = DEFAULT_WINDOW_DAYS if self.window_days is None else self.window_days
        now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
        return Window(now, now + timedelta(days=days))


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
