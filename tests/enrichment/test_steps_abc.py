"""Steps A–C on real chDB with a loopback Gamma (real httpx) or an offline snapshot."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.bus import EventBus
from engine.control import Control
from engine.enrichment.steps_abc import run_step_a, run_step_b, run_step_c
from engine.events import Failure, MutationStatus
from engine.runner import JobContext
from engine.settings import describe, load_settings
from tests.conftest import with_settings
from tests.enrichment.abc_data import cond, gamma_market, seed_market, seed_trades, trade
from tests.enrichment.gamma_server import GammaServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_ctx(settings):
    bus = EventBus()
    events: list = []
    bus.add_listener(events.append)
    return JobContext("full-enrichment", settings, Control("full-enrichment", bus), bus), events


def failures(events) -> list[Failure]:
    return [e for e in events if isinstance(e, Failure)]


def dims(ch) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in ch.query(
        "SELECT market_id, condition_id, canonical_category, source, question FROM $db.markets_dim FINAL").rows}


@pytest.mark.anyio
async def test_step_a_fetches_missing_markets_by_condition(settings, ch) -> None:
    seed_trades(ch, [trade(1, market=1), trade(2, market=2), trade(3, market=3), trade(4, market=4)])
    seed_market(ch, 1, "Sports")  # already present: not fetched
    gamma = [gamma_market(2, category="NBA"), gamma_market(3, category="", events=[{"id": "e3", "category": "Crypto"}])]
    with GammaServer(gamma) as srv:
        ctx, events = make_ctx(with_settings(settings, polymarket_base_url=srv.url))
        res = await run_step_a(ctx, ch)
    assert (res.missing, res.written, res.not_found) == (3, 2, ["m4"])
    got = dims(ch)
    # keyed by the trades' market id (not Gamma's numeric id), category canonicalized
    assert got["m2"][:3] == (cond(2), "Sports", "gamma") and got["m3"][1] == "Crypto"
    asked = [c for r in srv.market_requests() for c in r.get("condition_ids", [])]
    assert cond(1) not in asked and cond(2) in asked
    assert [f.where for f in failures(events)] == ["m4"]
    # rerun: still only m4 missing; nothing new written
    with GammaServer(gamma) as srv:
        ctx, _ = make_ctx(with_settings(settings, polymarket_base_url=srv.url))
        again = await run_step_a(ctx, ch)
    assert (again.missing, again.written) == (1, 0)
    assert int(ch.scalar("SELECT count() FROM $db.markets_dim")) == 3


@pytest.mark.anyio
async def test_step_a_focus_file_refetches_present_markets(settings, ch, tmp_path: Path, monkeypatch) -> None:
    seed_trades(ch, [trade(1, market=1), trade(2, market=2)])
    seed_market(ch, 1, "Politics")
    seed_market(ch, 2, "Politics")
    focus = tmp_path / "focus_market.txt"
    focus.write_text("# the runbook's workflow\nm2\nnot-a-market\n")
    monkeypatch.setenv("FOCUS_FILE", str(focus))  # the runbook sets it in the environment
    with GammaServer([gamma_market(1, category="Sports"), gamma_market(2, category="Sports",
                                                                       question="Refetched?")]) as srv:
        # Settings load after the variable is set, with no explicit focus_file: FOCUS_FILE reaches
        # Step A through Settings, as in a real run.
        env_settings = load_settings(**{**settings.model_dump(exclude={"focus_file"}),
                                        "polymarket_base_url": srv.url})
        assert env_settings.focus_file == focus
        ctx, events = make_ctx(env_settings)
        res = await run_step_a(ctx, ch)
    assert (res.missing, res.focus, res.written) == (0, 2, 1)
    got = dims(ch)
    assert got["m2"][1:] == ("Sports", "gamma", "Refetched?")
    assert got["m1"][1] == "Politics"  # not in the focus file: untouched
    assert [f.where for f in failures(events)] == ["not-a-market"]
    # `opsconsole config` names the variable and where it came from
    row = next(r for r in describe(env_settings) if r.name == "FOCUS_FILE")
    assert (row.value, row.source) == (str(focus), "environment (FOCUS_FILE)")
    # Step A reads the setting, not the process environment (a .env file sets it just as well)
    monkeypatch.delenv("FOCUS_FILE")
    with GammaServer([gamma_market(2, category="Sports", question="Refetched?")]) as srv:
        ctx, _ = make_ctx(with_settings(settings, polymarket_base_url=srv.url, focus_file=focus))
        again = await run_step_a(ctx, ch)
    assert (again.focus, again.requested) == (2, 1)


def test_focus_file_setting_blank_means_none(monkeypatch) -> None:
    monkeypatch.setenv("FOCUS_FILE", "  ")
    assert load_settings().focus_file is None
    monkeypatch.setenv("FOCUS_FILE", "runtime/focus_market.txt")
    assert load_settings().focus_file == Path("runtime/focus_market.txt")


@pytest.mark.anyio
async def test_step_a_offline_snapshot_and_degraded_modes(settings, ch, tmp_path: Path) -> None:
    seed_trades(ch, [trade(1, market=1), trade(2, market=2)])
    ctx, events = make_ctx(settings)
    res = await run_step_a(ctx, ch, offline=True)
    assert res.error and res.written == 0
    assert "no Gamma snapshot" in failures(events)[0].reason
    # unreachable Gamma: degrade with a Failure, never crash
    ctx, events = make_ctx(with_settings(settings, polymarket_base_url="http://127.0.0.1:9"))
    res = await run_step_a(ctx, ch)
    assert "unavailable" in res.error and failures(events)[0].where == "gamma"
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps([gamma_market(1), gamma_market(2, category="Weather")]))
    ctx, _ = make_ctx(settings)
    res = await run_step_a(ctx, ch, snapshot=snap)
    assert res.written == 2 and dims(ch)["m2"][1:3] == ("Weather", "snapshot")


@pytest.mark.anyio
async def test_step_b_one_statement_for_all_markets(settings, ch) -> None:
    seed_trades(ch, [trade(i, market=1 + i % 5) for i in range(1, 21)] + [trade(99, market=42)])
    for n, cat in [(1, "Politics"), (2, "Sports"), (3, "Crypto"), (4, "Culture"), (5, "Economy")]:
        seed_market(ch, n, cat)
    before = int(ch.scalar("SELECT count() FROM system.mutations WHERE database = {d:String}", {"d": ch.database}))
    ctx, events = make_ctx(settings)
    res = await run_step_b(ctx, ch)
    after = int(ch.scalar("SELECT count() FROM system.mutations WHERE database = {d:String}", {"d": ch.database}))
    assert res.statements == 1 and after - before == 1  # one mutation for five markets
    cats = dict(ch.query("SELECT trade_id, canonical_category FROM $db.trades_raw").rows)
    assert cats["t1"] == "Sports" and cats["t3"] == "Culture" and cats["t5"] == "Politics" and cats["t99"] == ""
    assert any(isinstance(e, MutationStatus) for e in events)
    # rerun with nothing changed: no mutation at all; a changed dim: one more statement
    assert (await run_step_b(ctx, ch)).statements == 0
    seed_market(ch, 1, "Weather")
    res = await run_step_b(ctx, ch)
    assert res.statements == 1 and res.rows_to_update == 4
    assert ch.scalar("SELECT canonical_category FROM $db.trades_raw WHERE trade_id = 't5'") == "Weather"
    assert ch.scalar("SELECT count() FROM system.tables WHERE database = {d:String} AND engine = 'Join'",
                     {"d": ch.database}) == 0


@pytest.mark.anyio
async def test_step_c_refreshes_and_rejects_invalid_resolutions(settings, ch) -> None:
    seed_trades(ch, [trade(i, market=i) for i in range(1, 8)])
    gamma = [
        gamma_market(1, prices=("1", "0")),
        gamma_market(2, prices=("0", "1")),
        gamma_market(3, prices=("0.5", "0.5")),
        gamma_market(4, prices=("0.9995", "0.0005")),                 # closed, not final
        gamma_market(5, prices=("0.7", "0.7")),                       # does not sum to 1
        gamma_market(6, closed=False, prices=("0.4", "0.6")),         # still open
        gamma_market(7, prices=("1", "0"), umaResolutionStatus="proposed"),
    ]
    with GammaServer(gamma) as srv:
        ctx, events = make_ctx(with_settings(settings, polymarket_base_url=srv.url))
        res = await run_step_c(ctx, ch)
    assert (res.candidates, res.written, res.still_open) == (7, 3, 1)
    got = {r[0]: (r[1], r[2]) for r in ch.query(
        "SELECT market_id, payouts, resolved_outcome FROM $db.market_resolutions FINAL").rows}
    assert got == {"m1": ([Decimal(1), Decimal(0)], "YES"), "m2": ([Decimal(0), Decimal(1)], "NO"),
                   "m3": ([Decimal("0.5"), Decimal("0.5")], "SPLIT")}
    reasons = {f.where: f.reason for f in failures(events)}
    assert "not final payouts" in reasons[cond(4)] and "not final payouts" in reasons[cond(5)]
    assert "not resolved yet" in reasons[cond(7)]
    rejects = ch.query("SELECT condition_id, reason FROM $db.resolution_rejects WHERE source = 'gamma'").rows
    assert {r[0] for r in rejects} == {cond(4), cond(5), cond(7)}
    # the next run only asks for conditions still without a resolution
    with GammaServer(gamma) as srv:
        ctx, _ = make_ctx(with_settings(settings, polymarket_base_url=srv.url))
        again = await run_step_c(ctx, ch)
        asked = {c for r in srv.market_requests() for c in r.get("condition_ids", [])}
    assert again.candidates == 4 and cond(1) not in asked
    assert int(ch.scalar("SELECT count() FROM $db.resolution_rejects")) == 3  # not duplicated


@pytest.mark.anyio
async def test_step_c_offline_degrades(settings, ch) -> None:
    seed_trades(ch, [trade(1, market=1)])
    ctx, events = make_ctx(settings)
    res = await run_step_c(ctx, ch, offline=True)
    assert res.written == 0 and "not refreshed" in failures(events)[0].reason
