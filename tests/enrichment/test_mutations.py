"""Mutation helpers and `opsconsole mutations` on real chDB: scoped listing, the bounded wait that stops
on latest_fail_reason or at its deadline, kill by id with confirmation, per-table limits."""

from __future__ import annotations

import json
import uuid

import pytest

from console.cli import main
from engine.enrichment.mutations import (
    MutationFailed, MutationTimeout, kill_mutation, mutation_limits, pending_mutations, wait_for_mutations,
)
from engine.errors import BadInput


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_table(ch, name: str = "mt", settings: str = "") -> None:
    ch.command(f"CREATE TABLE $db.{name} (id String, v UInt8) ENGINE = MergeTree ORDER BY id {settings}")
    ch.command(f"INSERT INTO $db.{name} VALUES ('1', 1), ('2', 0)")


def stuck_mutation(ch, name: str = "mt") -> str:
    """A mutation that stays pending: merges (which run mutations) are stopped on the table."""
    ch.command(f"SYSTEM STOP MERGES $db.{name}")
    ch.command(f"ALTER TABLE $db.{name} UPDATE v = 7 WHERE 1", settings={"mutations_sync": 0})
    return pending_mutations(ch, [name])[-1].mutation_id


def failing_mutation(ch, name: str = "mt") -> None:
    ch.command(f"ALTER TABLE $db.{name} UPDATE v = throwIf(id = '2', 'row 2 is poisoned') WHERE 1",
               settings={"mutations_sync": 0})


@pytest.mark.anyio
async def test_wait_stops_with_the_failure_text(ch) -> None:
    make_table(ch)
    failing_mutation(ch)
    seen: list[int] = []
    with pytest.raises(MutationFailed) as exc:
        await wait_for_mutations(ch, tables=["mt"], timeout_s=120, poll_s=0.05, on_status=lambda p: seen.append(len(p)))
    assert "row 2 is poisoned" in str(exc.value) and "mutations --kill" in str(exc.value)
    assert seen and seen[-1] == 1


@pytest.mark.anyio
async def test_wait_times_out_and_returns_when_clear(ch) -> None:
    make_table(ch)
    stuck_mutation(ch)
    with pytest.raises(MutationTimeout, match="1 mutation\\(s\\) still pending after 0.3s; oldest mutation_"):
        await wait_for_mutations(ch, tables=["mt"], timeout_s=0.3, poll_s=0.05)
    # scoped: a wait on other tables does not see it
    await wait_for_mutations(ch, tables=["trades_raw"], timeout_s=0.3, poll_s=0.05)
    ch.command("SYSTEM START MERGES $db.mt")
    await wait_for_mutations(ch, tables=["mt"], timeout_s=120, poll_s=0.05)
    assert ch.scalar("SELECT sum(v) FROM $db.mt") == 14


def test_pending_is_scoped_to_our_database(ch, settings) -> None:
    make_table(ch)
    other = f"t_{uuid.uuid4().hex[:12]}"
    from engine.stores.clickhouse import open_clickhouse

    och = open_clickhouse(settings, other)
    try:
        make_table(och)
        stuck_mutation(och)
        assert pending_mutations(ch) == []
        mid = stuck_mutation(ch)
        [m] = pending_mutations(ch)
        assert (m.database, m.table, m.mutation_id, m.parts_to_do) == (ch.database, "mt", mid, 1)
        assert "UPDATE v = 7" in m.command and m.age_s >= 0 and m.latest_fail_reason == ""
    finally:
        och.command(f"SYSTEM START MERGES `{other}`.mt")
        och.command(f"DROP DATABASE IF EXISTS `{other}`")


def test_kill_by_id_and_unknown_id(ch) -> None:
    make_table(ch)
    mid = stuck_mutation(ch)
    with pytest.raises(BadInput, match="no pending mutation 'mutation_999.txt'"):
        kill_mutation(ch, "mutation_999.txt")
    assert kill_mutation(ch, mid).mutation_id == mid
    assert pending_mutations(ch) == []


def test_limits_per_table(ch) -> None:
    make_table(ch, "a")
    make_table(ch, "b", "SETTINGS number_of_mutations_to_throw = 50, number_of_mutations_to_delay = 20")
    stuck_mutation(ch, "b")
    limits = {lim.table: lim for lim in mutation_limits(ch)}
    assert (limits["a"].to_delay, limits["a"].to_throw, limits["a"].pending) == (500, 1000, 0)
    assert (limits["b"].to_delay, limits["b"].to_throw, limits["b"].pending, limits["b"].headroom) == (20, 50, 1, 49)


@pytest.fixture
def cli_env(monkeypatch, settings, ch):
    monkeypatch.setenv("CLICKHOUSE_PATH", str(settings.clickhouse_dir))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", settings.clickhouse_database)
    monkeypatch.setenv("OPSCONSOLE_RUNTIME_DIR", str(settings.runtime))
    return ch


def test_cli_lists_and_kills_with_confirmation(cli_env, capsys, monkeypatch) -> None:
    ch = cli_env
    make_table(ch)
    failing_mutation(ch)
    import time

    for _ in range(200):  # the failure text appears after the first attempt
        if pending_mutations(ch)[0].latest_fail_reason:
            break
        time.sleep(0.05)
    assert main(["mutations", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pending"] == 1 and "row 2 is poisoned" in doc["mutations"][0]["latest_fail_reason"]
    assert any(lim["table"] == "mt" and lim["headroom"] == 999 for lim in doc["limits"])
    assert main(["mutations"]) == 0
    assert "FAILING:" in capsys.readouterr().out
    mid = doc["mutations"][0]["mutation_id"]
    # no terminal and no --yes: refused, nothing killed
    assert main(["mutations", "--kill", mid]) == 2
    assert "--yes" in capsys.readouterr().err and len(pending_mutations(ch)) == 1
    # a terminal that answers "n": not killed; "y": killed
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["mutations", "--kill", mid]) == 0 and len(pending_mutations(ch)) == 1
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["mutations", "--kill", mid]) == 0 and pending_mutations(ch) == []
    assert main(["mutations", "--kill", mid, "--yes"]) == 4


def test_cli_wait_stops_on_failure_and_returns_when_clear(cli_env, capsys) -> None:
    ch = cli_env
    make_table(ch)
    assert main(["mutations", "--wait", "--poll", "0.05"]) == 0
    assert "no pending mutations" in capsys.readouterr().out
    failing_mutation(ch)
    assert main(["mutations", "--wait", "--poll", "0.05", "--timeout", "120"]) == 1
    assert "row 2 is poisoned" in capsys.readouterr().err
    kill_mutation(ch, pending_mutations(ch)[0].mutation_id)
    stuck_mutation(ch)
    assert main(["mutations", "--wait", "--poll", "0.05", "--timeout", "0.3"]) == 1
    assert "still pending after 0.3s" in capsys.readouterr().err
