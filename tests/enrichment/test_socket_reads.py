"""`opsconsole gates` asked while the enrichment job is still opening its store: the job offers
the read from its first moment and answers once the store is open (it used to answer "not
offered by this job", and the command then called the store simply "in use")."""

from __future__ import annotations

from typing import Any

import anyio

from console.commands.owner import ask_running_jobs
from engine.bus import EventBus
from engine.control import Control
from engine.endpoint_client import job_answers
from engine.enrichment import job as job_module
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.runner import run_job


def test_gates_asked_while_the_store_opens_are_answered_once_it_is_open(settings, ch, monkeypatch) -> None:
    generate_demo(ch, "small", seed=3)
    opened = anyio.Event()
    released: list[anyio.Event] = []

    async def slow_open(_settings: Any) -> Any:
        gate = anyio.Event()
        released.append(gate)
        await gate.wait()  # the store opens only when the test says so
        opened.set()
        return ch

    monkeypatch.setattr(job_module, "aopen_clickhouse", slow_open)
    job = EnrichmentJob(["D"], batch_size=1, full=True, remote_checkpoints=False, run_gates=False)

    async def go() -> tuple[str, Any]:
        bus = EventBus()
        control: Control[Any] = Control(job.name, bus, job.live_settings())
        answer: list[tuple[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_job(job, settings, bus, control, handle_signals=False, resources={}))
            with anyio.fail_after(60):
                while not (released and await job_answers(settings.runtime, job.name)):
                    await anyio.sleep(0.01)

            async def ask() -> None:
                answer.append(await ask_running_jobs(settings.runtime, "gates", timeout=60))

            tg.start_soon(ask)
            await anyio.sleep(0.3)  # the question is in while the store is still opening
            assert not opened.is_set() and not answer
            released[0].set()
            with anyio.fail_after(60):
                while not answer:
                    await anyio.sleep(0.01)
            control.stop("test over")
        return answer[0]

    name, gates = anyio.run(go)
    assert name == job.name
    assert {g["name"] for g in gates} >= {"markets_missing_dim", "pnl_nulls"}
