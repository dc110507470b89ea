"""ensure_schema: creates what is missing, upgrades tables written by an older build, and is a
no-op (no DDL at all) when everything is already there."""

from __future__ import annotations

from engine.enrichment.schema import ALL_TABLES, ensure_schema


def _columns(ch, table: str) -> list[str]:
    return [str(r[0]) for r in ch.query(
        "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        {"d": ch.database, "t": table}).rows]


def test_missing_tables_views_and_columns_are_created(ch):
    ensure_schema(ch)
    # An older build's work list (no n_trades, no h), with a frozen pair in it; the view is gone.
    ch.command("DROP TABLE $db.step_d_worklist")
    ch.command("CREATE TABLE $db.step_d_worklist (wallet_address String, condition_id String) "
               "ENGINE = MergeTree ORDER BY (wallet_address, condition_id)")
    ch.command("INSERT INTO $db.step_d_worklist VALUES ('0xw', '0xc')")
    ch.command("DROP VIEW $db.wallet_accuracy")
    ch.command("DROP TABLE $db.step_d_meta")

    ensure_schema(ch)

    assert _columns(ch, "step_d_worklist") == ["wallet_address", "condition_id", "n_trades", "h", "a_yes", "a_no", "cost"]
    assert ch.query("SELECT wallet_address, n_trades, h FROM $db.step_d_worklist").rows == [("0xw", 0, 0)]
    names = {str(r[0]) for r in ch.query("SELECT name FROM system.tables WHERE database = {d:String}",
                                          {"d": ch.database}).rows}
    assert set(ALL_TABLES) | {"wallet_accuracy"} <= names


def test_a_complete_schema_runs_no_ddl(ch):
    ensure_schema(ch)
    issued: list[str] = []
    original = ch.command

    def command(statement, *args, **kwargs):
        issued.append(statement)
        return original(statement, *args, **kwargs)

    ch.command = command
    try:
        ensure_schema(ch)
    finally:
        del ch.command
    assert issued == []


def test_an_older_trades_table_gets_its_stored_hash_and_keeps_its_fingerprint(ch):
    """Stores written before `trade_hash` existed: the column is added on the next start, computed
    for the old rows, and the Step D fingerprint a checkpoint recorded stays the same (so --resume
    still accepts it)."""
    from engine.enrichment import schema, sql
    from engine.enrichment.demo import generate_demo
    from engine.enrichment.stepd import input_fingerprint

    generate_demo(ch, "small", seed=4)
    ch.command("ALTER TABLE $db.trades_raw DROP COLUMN IF EXISTS trade_hash")  # as an older build left it
    inline = sql.FINGERPRINT_TRADES.replace(sql._TRADE_HASH, schema.TRADE_HASH)
    before = ch.query(inline).rows[0]

    ensure_schema(ch)

    assert "trade_hash" in _columns(ch, "trades_raw")
    assert ch.query(sql.FINGERPRINT_TRADES).rows[0] == before
    assert ch.scalar(f"SELECT countIf(trade_hash != {schema.TRADE_HASH}) FROM $db.trades_raw") == 0
    assert input_fingerprint(ch).startswith("fp2:")
    # SELECT * leaves it out, so loads and copies that name no columns stay as they were.
    assert "trade_hash" not in ch.query("SELECT * FROM $db.trades_raw LIMIT 1").columns
