"""The ClickHouse server backend (clickhouse-connect over real HTTP) and cluster-mode statements.

Over HTTP: gates (pass, then fail when broken), mutation queries, and Step D stop/resume, against
the loopback ClickHouse HTTP endpoint (chDB behind it, tests/support/clickhouse_http.py) or a real
server when CLICKHOUSE_TEST_URL is set. The embedded side of the same tests lives in test_gates.py,
test_mutations.py and test_step_d_resume.py.

Cluster mode (CLICKHOUSE_CLUSTER): no cluster exists on these machines, so what is tested here is
the statement text we would send — every enrichment DDL statement rewritten for a cluster — and
that the real ClickHouse parser (chDB's `formatQuery`) accepts each rewritten statement. Whether a
real cluster executes them (Keeper paths, replica macros) is NOT tested here.
"""

from __future__ import annotations

import json

import pytest

from engine.enrichment import mutations as mutations_mod
from engine.enrichment import schema
from engine.enrichment import sql as esql
from engine.enrichment.checkpoint import state_path
from engine.enrichment.demo import generate_demo
from engine.enrichment.gates import compute_gates
from engine.enrichment.job import EnrichmentJob
from engine.enrichment.mutations import pending_mutations
from engine.enrichment.stepd import pnl_checksum
from engine.errors import BadInput
from engine.events import CheckpointSaved, JobState
from engine.settings import load_settings
from engine.stores.clickhouse import ClickHouse, ClickHouseError, QueryResult, open_clickhouse
from engine.stores.clickhouse_cluster import mutation_settings, on_cluster, replica_wide_mutations
from tests.enrichment.conftest import run_enrichment

http = pytest.mark.parametrize("ch_backend", ["http"], indirect=True)


def _gates(ch) -> dict[str, tuple[str, object]]:
    return {g.name: (g.status, g.actual) for g in compute_gates(ch)}


@http
def test_gates_and_mutation_queries_over_http(ch_backend, settings) -> None:
    ch = ch_backend
    assert ch.backend == "http"
    generate_demo(ch, "small", seed=9)
    assert _gates(ch)["pnl_nulls"][0] == "FAIL"  # nothing computed yet
    outcome, _ = run_enrichment(EnrichmentJob(["D", "E"], batch_size=100, remote_checkpoints=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert {s for s, _ in _gates(ch).values()} == {"PASS"}
    # a pending mutation shows in the gate and in pending_mutations, read over HTTP
    ch.command("ALTER TABLE $db.trades_raw UPDATE fee_usd = fee_usd WHERE throwIf(1, 'held on purpose') = 0",
               settings={"mutations_sync": 0})
    pending = pending_mutations(ch)
    assert len(pending) == 1 and pending[0].table == "trades_raw"
    assert _gates(ch)["pending_mutations"][0] == "FAIL"
    from engine.enrichment.mutations import kill_mutation

    kill_mutation(ch, pending[0].mutation_id)
    market = ch.scalar("SELECT any(market_id) FROM $db.trades_raw WHERE is_resolved = 1")
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL WHERE market_id = {m:String}",
               {"m": market}, settings={"mutations_sync": 2})
    status, actual = _gates(ch)["pnl_nulls"]
    assert status == "FAIL" and actual > 0


@http
def test_step_d_stop_and_resume_over_http_gives_the_identical_table(ch_backend, settings) -> None:
    ch = ch_backend
    generate_demo(ch, "small", seed=3)
    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=23, remote_checkpoints=False, run_gates=False), settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    reference = pnl_checksum(ch)
    ch.command("ALTER TABLE $db.trades_raw UPDATE realized_pnl_usd = NULL, is_resolved = 0 WHERE 1", settings={"mutations_sync": 2})
    assert pnl_checksum(ch) != reference

    def stop_after_two(event, control) -> None:
        if isinstance(event, CheckpointSaved) and event.where == "local" and event.batch_idx >= 2:
            control.stop("test stop")

    outcome, _ = run_enrichment(EnrichmentJob(["D"], batch_size=23, remote_checkpoints=False, run_gates=False),
                                settings, ch, on_event=stop_after_two)
    assert outcome.state is JobState.STOPPED
    state = json.loads(state_path(settings.runtime).read_text())
    assert state["status"] == "stopped" and state["pairs_done"] == state["batch_idx"] * 23
    resumed = EnrichmentJob(["D"], resume=True, batch_size=7, remote_checkpoints=False, run_gates=False)
    outcome, _ = run_enrichment(resumed, settings, ch)
    assert outcome.state is JobState.DONE, outcome.error
    assert pnl_checksum(ch) == reference


# --- cluster mode: the statements we send ---------------------------------------------------------------
def _ddl(database: str = "opsconsole") -> list[str]:
    return [s.replace("$db.", f"`{database}`.") for s in schema.DDL]


def test_cluster_ddl_goes_on_cluster_to_replicated_engines() -> None:
    out = {s.split("(")[0].split()[-1]: on_cluster(s, "prod") for s in _ddl()}
    trades = out["`opsconsole`.trades_raw"]
    assert "CREATE TABLE IF NOT EXISTS `opsconsole`.trades_raw ON CLUSTER `prod` (" in trades
    assert "ENGINE = ReplicatedMergeTree()" in trades and "enable_block_number_column = 1" in trades
    assert "ENGINE = ReplicatedReplacingMergeTree(updated_at)" in out["`opsconsole`.markets_dim"]
    for text in out.values():
        assert " ON CLUSTER `prod`" in text
        assert "ENGINE = MergeTree" not in text and "ENGINE = ReplacingMergeTree" not in text
    view = next(t for t in out.values() if "CREATE VIEW" in t)
    assert "wallet_accuracy ON CLUSTER `prod` AS" in view
    # metadata statements that act on one node get ON CLUSTER; node-local engines stay as they are
    assert on_cluster("DROP TABLE IF EXISTS db.t", "prod") == "DROP TABLE IF EXISTS db.t ON CLUSTER `prod`"
    assert on_cluster("TRUNCATE TABLE db.t", "prod") == "TRUNCATE TABLE db.t ON CLUSTER `prod`"
    assert on_cluster("EXCHANGE TABLES db.a AND db.b", "prod") == "EXCHANGE TABLES db.a AND db.b ON CLUSTER `prod`"
    assert on_cluster("CREATE DATABASE IF NOT EXISTS `x`", "prod") == "CREATE DATABASE IF NOT EXISTS `x` ON CLUSTER `prod`"
    # a job's helper tables stay on the job's node: Join/Memory engines, CREATE ... AS SELECT
    for helper in ("CREATE TABLE db.j (k String, v String) ENGINE = Join(ANY, LEFT, k)",
                   "CREATE TABLE db.m ENGINE = Memory AS SELECT 1 AS x",
                   "CREATE TABLE db.y ENGINE = MergeTree ORDER BY k AS SELECT k FROM db.t",
                   esql.PAYOUTS_CREATE.replace("$db.", "db.")):
        assert on_cluster(helper, "prod") == helper
    # a structure clone (Step E's build table) is a real table: on every node, replicated like its source
    clone = on_cluster("CREATE TABLE db.outcomes_build AS db.outcomes", "prod")
    assert clone == "CREATE TABLE db.outcomes_build ON CLUSTER `prod` AS db.outcomes"
    # mutations replicate through Keeper by themselves: sent unchanged; already-clustered text unchanged
    update = "ALTER TABLE db.trades_raw UPDATE is_resolved = 0 WHERE 1"
    assert on_cluster(update, "prod") == update
    assert on_cluster("DROP TABLE db.t ON CLUSTER `c`", "prod") == "DROP TABLE db.t ON CLUSTER `c`"
    with pytest.raises(BadInput, match="CLICKHOUSE_CLUSTER"):
        on_cluster("DROP TABLE db.t", "bad name; DROP")


def test_cluster_mutation_settings_and_replica_wide_mutation_wait() -> None:
    classic = esql.trades_update_sql("opsconsole", "classic", True)
    assert "joinGet(" in classic and mutation_settings(classic) == {"allow_nondeterministic_mutations": 1}
    assert mutation_settings("ALTER TABLE db.t UPDATE v = 1 WHERE 1") == {}
    lightweight = esql.trades_update_sql("opsconsole", "lightweight", True)
    assert mutation_settings(lightweight) == {}  # patch parts are computed once, on the initiating node
    for text in (mutations_mod._PENDING_SQL, mutations_mod._COUNT_SQL):
        wide = replica_wide_mutations(text, "prod")
        assert "FROM clusterAllReplicas('prod', system.mutations)" in wide and "system.mutations." not in wide
    assert replica_wide_mutations("SELECT 1", "prod") == "SELECT 1"


def test_cluster_statements_parse_in_the_real_clickhouse_parser(ch) -> None:
    statements = [on_cluster(s, "prod") for s in _ddl(ch.database)]
    statements += [on_cluster(s, "prod") for s in ("DROP TABLE IF EXISTS db.t", "TRUNCATE TABLE db.t",
                                                   "EXCHANGE TABLES db.a AND db.b", esql.OUTCOMES_CREATE_BUILD.replace("$db.", "db."))]
    statements += [replica_wide_mutations(mutations_mod._PENDING_SQL.replace("{table_filter}", ""), "prod")]
    for statement in statements:
        # formatQuery runs ClickHouse's own parser and fails on a syntax error; nothing is executed.
        formatted = ch.scalar("SELECT formatQuery({q:String})", {"q": statement})
        assert formatted, statement
    with pytest.raises(ClickHouseError):
        ch.scalar("SELECT formatQuery({q:String})", {"q": "CREATE TABLE t ON CLUSTER (x UInt8)"})


class _Recording(ClickHouse):
    """Captures what `command()` would send; used only to check the cluster hook, never as a store."""

    backend = "recording"

    def __init__(self) -> None:
        super().__init__("opsconsole")
        self.sent: list[tuple[str, dict]] = []

    def _command(self, sql: str, params: dict, settings: dict) -> None:
        self.sent.append((sql, settings))

    def _query(self, sql: str, params: dict, settings: dict) -> QueryResult:
        self.sent.append((sql, settings))
        return QueryResult([], [], [])


def test_cluster_hook_rewrites_every_statement_ensure_schema_sends() -> None:
    rec = _Recording()
    rec.cluster = "prod"
    schema.ensure_schema(rec)
    creates = [s for s, _ in rec.sent if s.lstrip().startswith("CREATE")]
    assert len(creates) == len(schema.DDL) and all("ON CLUSTER `prod`" in s for s in creates)
    rec.command(esql.trades_update_sql("opsconsole", "classic", True), {}, {"mutations_sync": 0})
    assert rec.sent[-1][1] == {"allow_nondeterministic_mutations": 1, "mutations_sync": 0}
    rec.query("SELECT count() FROM system.mutations WHERE is_done = 0")
    assert "clusterAllReplicas('prod', system.mutations)" in rec.sent[-1][0]
    plain = _Recording()
    schema.ensure_schema(plain)
    assert not any("ON CLUSTER" in s for s, _ in plain.sent)  # no cluster configured: unchanged


def test_cluster_setting_needs_a_server(tmp_path) -> None:
    settings = load_settings(runtime_dir=tmp_path / "rt", clickhouse_cluster="prod")
    with pytest.raises(BadInput, match="CLICKHOUSE_CLUSTER needs a ClickHouse server"):
        open_clickhouse(settings)
