from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.events import Event
from engine.pipeline.job import PipelineJob
from engine.pipeline.options import PipelineOptions
from engine.runner import JobOutcome, run_job
from engine.settings import Settings, load_settings
from tests.pipeline.fakes import GammaApp, GeminiApp, LoopbackServer, OpenAIApp, gamma_market

OPENAI_KEY = "sk-test-loopbackSECRETkey-123456"
GEMINI_KEY = "AIzaTestLoopbackSecretKey0123456789"
FAST = [  # no SDK-level retries unless a test asks for them: failures show up at once
    "openai:research:openai_web_search.max_retries=0", "openai:forecast:gpt5.max_retries=0",
    "gemini:research:gemini_grounded.max_retries=0", "gemini:forecast:gemini_simple.max_retries=0",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def three_events() -> list[dict[str, Any]]:
    return [
        gamma_market("101", "Fed cuts in December?", ("E1", "Fed December")),
        gamma_market("102", "Fed holds in December?", ("E1", "Fed December"), yes=0.3),
        gamma_market("201", "BTC above 120k?", ("E2", "Bitcoin year end"), yes=0.4),
        gamma_market("301", "Snow on Christmas?", None, yes=0.2),
    ]


@pytest.fixture
def gamma() -> Iterator[GammaApp]:
    app = GammaApp(three_events())
    server = LoopbackServer(app)
    app.url = server.url  # type: ignore[attr-defined]
    yield app
    server.close()


@pytest.fixture
def openai_app() -> Iterator[OpenAIApp]:
    app = OpenAIApp()
    server = LoopbackServer(app)
    app.url = server.url  # type: ignore[attr-defined]
    yield app
    server.close()


@pytest.fixture
def gemini_app() -> Iterator[GeminiApp]:
    app = GeminiApp()
    server = LoopbackServer(app)
    app.url = server.url  # type: ignore[attr-defined]
    yield app
    server.close()


@pytest.fixture
def make_settings(tmp_path: Path, pg_url: str, gamma: GammaApp, openai_app: OpenAIApp, gemini_app: GeminiApp) -> Callable[..., Settings]:
    def build(name: str = "runtime", **extra: Any) -> Settings:
        values: dict[str, Any] = dict(
            runtime_dir=tmp_path / name, postgres_url=pg_url, polymarket_base_url=gamma.url,  # type: ignore[attr-defined]
            openai_api_key=OPENAI_KEY, openai_base_url=openai_app.url + "/v1",  # type: ignore[attr-defined]
            gemini_api_key=GEMINI_KEY, gemini_base_url=gemini_app.url,  # type: ignore[attr-defined]
            ingestion_page_size=2,
        )
        values.update(extra)
        return load_settings(**values)

    return build


class Run:
    def __init__(self, outcome: JobOutcome, job: PipelineJob, events: list[Event]) -> None:
        self.outcome, self.job, self.events = outcome, job, events

    @property
    def summary(self) -> dict[str, Any]:
        assert self.job.summary is not None
        return self.job.summary


async def run_pipeline(settings: Settings, options: PipelineOptions,
                       on_event: Callable[[Event, Control[Any]], None] | None = None) -> Run:
    bus = EventBus()
    events: list[Event] = []
    job = PipelineJob(options)
    control = Control(job.name, bus, job.live_settings())

    def listen(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event, control)

    bus.add_listener(listen)
    outcome = await run_job(job, settings, bus, control, handle_signals=False)
    return Run(outcome, job, events)


def opts(**kw: Any) -> PipelineOptions:
    kw.setdefault("experiment_overrides", list(FAST))
    kw.setdefault("window_days", 30)
    kw.setdefault("gamma_backoff_s", 0.01)
    return PipelineOptions(**kw)


def rows(pg_url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(sql, params).fetchall()


def count(pg_url: str, table: str) -> int:
    return rows(pg_url, f"SELECT count(*) FROM {table}")[0][0]
