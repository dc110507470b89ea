"""A small hand-checkable world: stored forecasts written through the pipeline's own repository,
and a loopback Gamma that knows how their markets resolved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.events import Event
from engine.pipeline.normalize import EventGroup, group_by_event, normalize_market
from engine.pipeline.repository import PipelineRepository
from engine.runner import JobOutcome, run_job
from engine.scoring.job import ScoreJob, ScoreOptions
from engine.settings import Settings, load_settings
from engine.stores.postgres import Postgres
from tests.scoring.gamma_closed import GammaClosed, closed_market, open_market

BASELINE = "baseline:forecast:market_prices"
OPENAI = "openai:forecast:gpt5"
GEMINI = "gemini:forecast:gemini_simple"
EARLY = datetime(2026, 11, 1, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 15, tzinfo=timezone.utc)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def resolutions() -> list[dict[str, Any]]:
    """101 resolved Yes, 102 No, 201 Yes, 202 50/50 (void), 301 still open; 302 is gone from Gamma."""
    return [closed_market("101", "1", "0"), closed_market("102", "0", "1"), closed_market("201", "1", "0"),
            closed_market("202", "0.5", "0.5"), open_market("301")]


@pytest.fixture
def gamma() -> Iterator[GammaClosed]:
    server = GammaClosed(resolutions())
    yield server
    server.close()


@pytest.fixture
def score_settings(tmp_path: Path, pg_url: str, gamma: GammaClosed) -> Settings:
    return load_settings(runtime_dir=tmp_path / "runtime", postgres_url=pg_url, polymarket_base_url=gamma.url)


def _open(mid: str, event: str) -> dict[str, Any]:
    m = open_market(mid)
    m["events"] = [{"id": event, "title": f"Event {event}"}]
    return m


def yes(p: float) -> dict[str, float]:
    return {"Yes": p, "No": round(1 - p, 10)}


async def seed(settings: Settings) -> None:
    """Stored forecasts (p of "Yes" per market), written the way the pipeline writes them."""
    pg = await Postgres(settings).open()
    try:
        repo = PipelineRepository(pg)
        await repo.migrate()
        markets = [normalize_market(_open(mid, ev)) for mid, ev in
                   [("101", "E1"), ("102", "E1"), ("201", "E2"), ("202", "E2"), ("301", "E3"), ("302", "E3")]]
        for group in group_by_event(markets):
            await repo.save_event(group, "run-1")
        # The same market seen again under another event key (regrouped upstream): a second forecast.
        await repo.save_event(EventGroup("E1b", "E1b", "Event E1 again", None, ()), "run-2")

        def result(event: str, name: str, config_hash: str, probs: dict[str, Any], tokens: tuple[int, int] = (0, 0),
                   cost: float = 0.0) -> dict[str, Any]:
            suite, stage, variant = name.split(":")
            return {"event_key": event, "name": name, "suite": suite, "stage": stage, "variant": variant,
                    "config_hash": config_hash, "config": {"kind": variant}, "probabilities": probs,
                    "payload": {}, "research_keys": [], "model": None, "tokens_in": tokens[0],
                    "tokens_out": tokens[1], "cost_usd": cost, "run_id": "run-1"}

        rows = [
            result("E1", BASELINE, "b1", {"101": yes(0.6), "102": yes(0.3)}),
            result("E2", BASELINE, "b1", {"201": yes(0.4), "202": yes(0.5)}),
            result("E3", BASELINE, "b1", {"301": yes(0.2), "302": yes(0.7)}),
            result("E1", OPENAI, "o1", {"101": yes(0.9), "102": yes(0.2)}, (100, 50), 0.02),
            result("E2", OPENAI, "o1", {"201": yes(0.7), "202": yes(0.5)}, (200, 100), 0.04),
            result("E3", OPENAI, "o1", {"301": yes(0.6), "302": yes(0.6)}, (10, 10), 0.01),
            # an old row from before probabilities were validated: 101 is out of range, 102 is fine
            result("E1", GEMINI, "g1", {"101": {"Yes": 1.3, "No": -0.3}, "102": yes(0.1)}),
        ]
        for row in rows:
            assert await repo.save_result(row)
        later = result("E1b", OPENAI, "o1", {"101": yes(0.5)})
        assert await repo.save_result(later)
        await pg.execute("UPDATE experiment_results SET created_at = %s", (EARLY,))
        await pg.execute("UPDATE experiment_results SET created_at = %s WHERE event_key = 'E1b'", (LATER,))
    finally:
        await pg.close()


class Run:
    def __init__(self, outcome: JobOutcome, job: ScoreJob, events: list[Event]) -> None:
        self.outcome, self.job, self.events = outcome, job, events

    @property
    def summary(self) -> dict[str, Any]:
        assert self.job.summary is not None
        return self.job.summary

    def variant(self, name: str) -> dict[str, Any]:
        (v,) = [v for v in self.summary["variants"] if v["experiment"] == name]
        return v


async def run_score(settings: Settings, options: ScoreOptions | None = None,
                    on_event: Callable[[Event, Control[Any]], None] | None = None,
                    batch_size: int | None = None) -> Run:
    bus = EventBus()
    events: list[Event] = []
    job = ScoreJob(options or ScoreOptions(gamma_backoff_s=0.01, gamma_attempts=2))
    control = Control(job.name, bus, job.live_settings())
    if batch_size is not None:
        control.update_live({"batch_size": batch_size})

    def listen(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event, control)

    bus.add_listener(listen)
    outcome = await run_job(job, settings, bus, control, handle_signals=False)
    return Run(outcome, job, events)


def score_rows(settings: Settings) -> dict[tuple[str, str, str, str], tuple[Any, ...]]:
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url.get_secret_value()) as conn:
        rows = conn.execute("SELECT event_key, experiment_name, config_hash, market_id, status, probability, "
                            "outcome, brier, log_loss, updated_at FROM forecast_scores").fetchall()
    return {r[:4]: r[4:] for r in rows}
