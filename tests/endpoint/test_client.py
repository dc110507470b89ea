"""A console attached to a real job process: snapshot, pause/resume, live settings, stop, two clients."""

from __future__ import annotations

import stat
from pathlib import Path

import anyio
import pytest

from engine.endpoint_client import JobClient, connect, running_jobs
from engine.errors import JobNotRunning
from engine.events import JobState, StateChanged
from tests.endpoint.helpers import WAIT, await_until, output, log_text, start_selftest, units_done, wait_for_socket, wait_until


async def _states(client: JobClient, into: list[str], until: set[str]) -> None:
    async for event in client.events():
        if isinstance(event, StateChanged):
            into.append(event.state.value)
            if event.state.value in until:
                return


@pytest.mark.anyio
async def test_attach_pause_set_live_resume_stop_with_two_clients(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = start_selftest(rt, units=100_000, unit_seconds=0.01)
    try:
        sock = wait_for_socket(rt, proc)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # owner-only
        wait_until(lambda: units_done(rt) >= 3, proc, "a few units")

        async with connect(rt, "selftest") as a, connect(rt, "selftest") as b:
            assert a.hello.job == "selftest" and a.hello.pid == proc.pid and a.hello.protocol == 1
            snap = a.snapshot
            assert snap.state is JobState.RUNNING
            assert snap.progress["selftest"].done >= 3 and snap.progress["selftest"].total == 100_000
            assert snap.checkpoints["local"].cursor["done"] >= 3
            assert snap.live == {"unit_seconds": 0.01}

            seen_a: list[str] = []
            seen_b: list[str] = []
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_states, a, seen_a, {"stopped"})
                    tg.start_soon(_states, b, seen_b, {"stopped"})

                    reply = await a.pause()
                    assert reply.ok and reply.data == {"state": "pausing"}
                    await a.wait_for_state("paused")
                    again = await b.pause()
                    assert not again.ok and "does not apply" in again.error and "paused" in again.error

                    bad = await b.set_live(unit_seconds=-1)
                    assert not bad.ok and "unit_seconds" in bad.error and "greater than or equal to 0" in bad.error
                    unknown = await b.set_live(no_such_setting=1)
                    assert not unknown.ok and "no_such_setting" in unknown.error
                    good = await b.set_live(unit_seconds=0.002)
                    assert good.ok and good.data == {"unit_seconds": 0.002}

                    gates = await a.command("gates")
                    assert not gates.ok and gates.error == "not offered by this job"
                    nonsense = await a.command("no-such-command")
                    assert not nonsense.ok and "unknown command" in nonsense.error

                    held = units_done(rt)
                    assert (await a.resume()).ok
                    # The job is unharmed by the rejected settings: it carries on at the new pace.
                    await await_until(lambda: units_done(rt) >= held + 20, proc, "progress after resume")

                    # A third client now: its snapshot has the log lines and the new live settings.
                    async with connect(rt, "selftest") as c:
                        assert c.snapshot.live == {"unit_seconds": 0.002}
                        assert any("settings changed" in line.message for line in c.snapshot.logs)
                        assert c.snapshot.state is JobState.RUNNING

                    assert (await b.stop()).ok
            assert seen_a == seen_b == ["pausing", "paused", "running", "stopping", "stopped"]
            assert (await a.wait_for_state("stopped")) == a.state and a.state.state is JobState.STOPPED

        assert proc.wait(timeout=WAIT) == 0
        out, err = output(proc)
        assert "Traceback" not in err
        log = log_text(rt)
        assert "selftest paused" in log and "selftest stopped" in log and "stop requested by a console client" in log
        assert not sock.exists()  # removed at the end
        with pytest.raises(JobNotRunning):
            async with connect(rt, "selftest"):
                pass
        assert await running_jobs(rt) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.anyio
async def test_client_sees_the_final_state_and_the_stream_ends(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    proc = start_selftest(rt, units=60, unit_seconds=0.02)
    try:
        wait_for_socket(rt, proc)
        async with connect(rt, "selftest") as client:
            last = None
            with anyio.fail_after(WAIT):
                async for event in client.events():
                    last = event
            assert isinstance(last, StateChanged) and last.state is JobState.DONE
            assert client.closed_reason == "job ended: done"
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
