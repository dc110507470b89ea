"""Identical queries asked while one is being computed share its answer: several consoles polling
the gates cost the job one computation at a time, and an asker that leaves does not cancel it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.endpoint import JobEndpoint
from engine.endpoint_client import connect


@pytest.mark.anyio
async def test_concurrent_identical_queries_share_one_computation(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    calls: list[dict[str, Any]] = []
    release = anyio.Event()

    async def gates(args: dict[str, Any]) -> Any:
        calls.append(args)
        await release.wait()
        return [{"name": "pnl_nulls", "status": "PASS", "actual": len(calls), "expected": "0"}]

    bus = EventBus()
    endpoint = JobEndpoint("selftest", bus, Control("selftest", bus), runtime, queries={"gates": gates})
    assert await endpoint.open()
    replies: list[Any] = []
    try:
        async with connect(runtime, "selftest") as a, connect(runtime, "selftest") as b, \
                connect(runtime, "selftest") as c:

            async def ask(client: Any) -> None:
                replies.append(await client.command("gates"))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for client in (a, b, c):
                        tg.start_soon(ask, client)
                    # All three are with the endpoint before the computation may finish.
                    while sum(cl.queries for cl in endpoint.clients) < 3:
                        await anyio.sleep(0.01)
                    release.set()
                assert len(calls) == 1
                assert [r.ok for r in replies] == [True, True, True]
                assert all(r.data == replies[0].data for r in replies)
                # Once answered, the next ask computes again (nothing is cached).
                assert (await a.command("gates")).data[0]["actual"] == 2
                assert len(calls) == 2
                # Different args are a different query.
                await a.command("gates", refresh=True)
                assert len(calls) == 3
    finally:
        await endpoint.aclose()


@pytest.mark.anyio
async def test_the_first_asker_leaving_does_not_cancel_the_answer_for_the_others(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    release = anyio.Event()
    calls: list[dict[str, Any]] = []

    async def gates(args: dict[str, Any]) -> Any:
        calls.append(args)
        await release.wait()
        return ["answer"]

    bus = EventBus()
    endpoint = JobEndpoint("selftest", bus, Control("selftest", bus), runtime, queries={"gates": gates})
    assert await endpoint.open()
    try:
        with anyio.fail_after(30):
            async with connect(runtime, "selftest") as stays:
                async with connect(runtime, "selftest") as leaves:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(leaves.command, "gates")
                        while sum(cl.queries for cl in endpoint.clients) < 1:
                            await anyio.sleep(0.01)
                        tg.cancel_scope.cancel()
                # `leaves` is gone; its question is still being answered.
                async with anyio.create_task_group() as tg:
                    result: list[Any] = []

                    async def ask() -> None:
                        result.append(await stays.command("gates"))

                    tg.start_soon(ask)
                    while sum(cl.queries for cl in endpoint.clients) < 1:
                        await anyio.sleep(0.01)
                    release.set()
                assert result[0].ok and result[0].data == ["answer"]
                assert len(calls) == 1  # the computation the first asker started, not a new one
    finally:
        await endpoint.aclose()
