"""The real app running the real enrichment job on the real embedded stores (chDB + PostgreSQL):
Step D paused at a batch boundary with its checkpoint on disk, batch size edited live, resumed,
finished, then Step E and the gates, all green, recomputed by the console in-process."""

from __future__ import annotations

import json

import pytest
from textual.widgets import OptionList

from console.tui.app import OpsConsoleApp
from console.tui.job_screen import JobScreen
from console.tui.modals import EditLiveScreen
from console.tui.widgets import GatesPanel, StatusHeader
from engine.enrichment.demo import generate_demo
from engine.enrichment.job import EnrichmentJob
from engine.events import JobStarted, JobState

pytestmark = pytest.mark.anyio


async def test_step_d_pause_checkpoint_edit_resume_finish_gates_green(settings, ch) -> None:
    generate_demo(ch, "small", 7)
    job = EnrichmentJob(["D", "E"], batch_size=10, mutation_wait_every=3)
    app = OpsConsoleApp(settings, job=job, gates_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await screen.wait_for(lambda v: v.checkpoint is not None and v.checkpoint.batch_idx >= 2)

        await pilot.press("p")
        assert any(s in str(screen.query_one("#header", StatusHeader).render()) for s in ("PAUSING", "PAUSED"))
        await screen.wait_for(lambda v: v.state is JobState.PAUSED)
        await pilot.pause()
        assert "PAUSED" in str(screen.query_one("#header", StatusHeader).render())
        state = json.loads((settings.runtime / "full-enrichment.state.json").read_text())
        assert state["step"] == "D" and state["status"] == "running"
        assert state["batch_idx"] == screen.view.checkpoint.batch_idx
        assert state["pairs_done"] == screen.view.checkpoint.pairs_done > 0
        total = screen.view.steps["D"].total
        assert total is not None and state["pairs_done"] < total

        # Edit the batch size in the modal; Control.update_live validates and applies it.
        await pilot.press("e")
        modal = app.screen
        assert isinstance(modal, EditLiveScreen)
        modal.query_one("#field-batch_size").value = "500"
        await pilot.press("enter")
        assert isinstance(app.screen, JobScreen)
        assert screen.session.control.live.batch_size == 500
        assert screen.session.control.live.mutation_wait_every == 3

        await pilot.press("r")
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        outcome = screen.session.outcome
        assert outcome is not None and outcome.state is JobState.DONE, outcome
        d = screen.view.steps["D"]
        assert d.done == d.total
        # After the resume the batches were of the new size.
        assert d.detail["batch_size"] == 500
        final = json.loads((settings.runtime / "full-enrichment.state.json").read_text())
        assert final["status"] == "done" and final["pairs_done"] == total

        # The job reported its gates; all green.
        assert screen.view.gates and all(g.status == "PASS" for g in screen.view.gates), screen.view.gates
        # Refresh on demand: the console computes them itself, in a worker thread, reusing the
        # process's chDB session (a second chDB path in one process would fail).
        screen.view.gates = ()
        await pilot.press("g")
        await screen.wait_for(lambda v: bool(v.gates) or bool(v.gates_error))
        await pilot.pause()
        assert not screen.view.gates_error
        assert [g.status for g in screen.view.gates] == ["PASS"] * 5
        body = str(screen.query_one("#gates", GatesPanel).query_one("#gates-body").render())
        assert "pnl_nulls" in body and "FAIL" not in body

        # Mutation details on demand (none pending after the run).
        await pilot.press("m")
        await screen.wait_for(lambda v: v.mutations_pending is not None)
        assert screen.view.mutations_pending == 0
        await pilot.press("q")
    assert app.return_code == 0


async def test_gates_refresh_on_a_timer_from_the_real_store(settings, ch) -> None:
    from console.tui.session import JobSession

    generate_demo(ch, "small", 7)  # Step D has not run: pnl_nulls must FAIL
    session = JobSession.attach("full-enrichment", EnrichmentJob(["D"]).live_settings(), settings=settings)
    # A watched job says what it is in its first event; that is what turns the gates timer on.
    session.bus.publish(JobStarted(job="full-enrichment", panels=EnrichmentJob.panels))
    app = OpsConsoleApp(settings, session=session, gates_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await screen.wait_for(lambda v: bool(v.gates) or bool(v.gates_error))
        assert not screen.view.gates_error, screen.view.gates_error
        first = screen.view.gates_ts
        statuses = {g.name: g.status for g in screen.view.gates}
        assert statuses["pnl_nulls"] == "FAIL" and statuses["markets_missing_dim"] == "PASS"
        # The next poll is scheduled after this one finished, and it comes.
        await screen.wait_for(lambda v: v.gates_ts is not None and v.gates_ts > first)
        await pilot.pause()
        body = str(screen.query_one("#gates-body").render())
        assert "FAIL" in body and "pnl_nulls" in body


async def test_launcher_demo_runs_a_to_e_and_gates_go_green(settings) -> None:
    from console.tui.launcher import LauncherScreen
    from console.tui.modals import ConfirmScreen

    app = OpsConsoleApp(settings, gates_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        launcher = app.screen
        assert isinstance(launcher, LauncherScreen)
        launcher.start("demo")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.session.name == "full-enrichment"
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        assert screen.session.outcome is not None and screen.session.outcome.state is JobState.DONE
        assert all(screen.view.steps[s].done == screen.view.steps[s].total for s in "ABCDE")
        assert [g.status for g in screen.view.gates] == ["PASS"] * 5
        await pilot.press("q")
        assert app.screen is launcher
        await app.workers.wait_for_complete()
        await pilot.pause()
        # Back on the launcher: the run's final checkpoint is shown.
        info = str(launcher.query_one("#checkpoint-info").render())
        assert "step: D" in info and "pairs_done" in info
        await pilot.press("q")


def _env_settings(settings, monkeypatch, **extra: str):
    """Settings as bare `opsconsole` loads them: from the environment (the test's stores + `extra`)."""
    from engine.settings import load_settings

    monkeypatch.setenv("CLICKHOUSE_PATH", str(settings.clickhouse_dir))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", settings.clickhouse_database)
    monkeypatch.setenv("OPSCONSOLE_RUNTIME_DIR", str(settings.runtime))
    monkeypatch.setenv("POSTGRES_URL", settings.postgres_url.get_secret_value())
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return load_settings()


async def test_launcher_step_d_takes_batch_size_from_the_environment(settings, ch, monkeypatch) -> None:
    from console.tui.launcher import LauncherScreen

    env_settings = _env_settings(settings, monkeypatch, BATCH_SIZE="77", MUTATION_WAIT_EVERY="2")
    generate_demo(ch, "small", 7)
    app = OpsConsoleApp(env_settings, gates_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        launcher = app.screen
        assert isinstance(launcher, LauncherScreen)
        entries = launcher.query_one("#entries", OptionList)
        entries.highlighted = entries.get_option_index("step-d")  # chosen with the keys
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.session.name == "full-enrichment"
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        assert screen.session.control.live.batch_size == 77
        assert screen.session.control.live.mutation_wait_every == 2
        d = screen.view.steps["D"]
        assert d.done == d.total and d.total is not None and d.total > 2 * 77
        assert d.detail["batch_size"] == 77 and d.detail["batches_total"] == -(-d.total // 77)
        # The job declared its panels (JobStarted), the console did not guess them from its name.
        assert screen.view.panels == EnrichmentJob.panels
        # Step E has not run: the closing gates FAIL, and the outcome's exit code says so.
        assert {g.name: g.status for g in screen.view.gates}["wallets_with_outcomes"] == "FAIL"
        assert screen.session.outcome is not None and screen.session.outcome.exit_code == 3
        await pilot.press("q")
        assert app.screen is launcher


_LATE_FILLS = """
INSERT INTO $db.trades_raw (trade_id, wallet_address, market_id, condition_id, outcome_index, side, price, shares,
                            usd_value, fee_usd, timestamp, tx_hash, canonical_category, realized_pnl_usd, is_resolved)
SELECT concat(trade_id, '-late'), wallet_address, market_id, condition_id, outcome_index, side, price, shares,
       usd_value, fee_usd, timestamp + 86400, tx_hash, canonical_category, NULL, 0
FROM $db.trades_raw ORDER BY trade_id LIMIT 3
"""


async def _launch_step_d(app: OpsConsoleApp, pilot: object) -> JobScreen:
    entries = app.screen.query_one("#entries", OptionList)
    entries.highlighted = entries.get_option_index("step-d")
    await pilot.press("enter")  # type: ignore[attr-defined]
    screen = app.screen
    assert isinstance(screen, JobScreen)
    await screen.wait_for(lambda v: v.state.final)
    return screen


async def test_launcher_step_d_after_a_complete_run_recomputes_what_changed(settings, ch) -> None:
    """The day after a complete run, new trades have landed: the launcher's Step D recomputes the
    affected pairs. (It used to resume the finished run, which refuses changed inputs: exit 4.)
    A run stopped half-way is continued from its checkpoint instead."""
    from engine.enrichment.checkpoint import load_local

    generate_demo(ch, "small", 7)
    app = OpsConsoleApp(settings, gates_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _launch_step_d(app, pilot)
        assert screen.view.state is JobState.DONE
        assert load_local(settings.runtime).mode == "full"
        await pilot.press("q")

        ch.command(_LATE_FILLS)
        screen = await _launch_step_d(app, pilot)
        assert screen.view.state is JobState.DONE, screen.view.state_reason
        cp = load_local(settings.runtime)
        assert (cp.status, cp.mode) == ("done", "incremental")
        assert 0 < cp.pairs_total <= 3  # only the pairs with late fills
        await pilot.press("q")


async def test_a_job_run_in_the_console_exits_3_when_its_closing_gates_fail(settings, ch) -> None:
    generate_demo(ch, "small", 7)
    app = OpsConsoleApp(settings, job=EnrichmentJob.from_settings(settings, ["D"]), gates_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        assert screen.session.outcome is not None and screen.session.outcome.state is JobState.DONE
        await pilot.press("q")
    assert app.return_code == 3  # what `enrich --step D` returns headless in the same situation
