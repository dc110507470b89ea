"""Cluster mode for the ClickHouse server backend (CLICKHOUSE_CLUSTER=<name>): statement rewriting.

The enrichment SQL is written once, for a single server. With a cluster name configured, every
statement passes through these pure functions on its way out (engine/stores/clickhouse.py):

* DDL that changes metadata on one node only (CREATE TABLE/VIEW, DROP, TRUNCATE, EXCHANGE, RENAME)
  gets `ON CLUSTER <name>`, so every replica has the same tables.
* MergeTree-family engines become their Replicated* form with no arguments: the server's
  `default_replica_path` / `default_replica_name` (default `/clickhouse/tables/{uuid}/{shard}`,
  `{replica}`) name the Keeper path, and `ON CLUSTER` gives every replica the same table UUID.
  Memory and Join tables, and tables filled by `CREATE ... AS SELECT`, are a job's helpers and stay
  on the node that runs the job (no ON CLUSTER, engine unchanged).
* Mutations (`ALTER TABLE ... UPDATE/DELETE`, lightweight `UPDATE`, `ALTER ... ADD COLUMN`) on
  Replicated tables are replicated through Keeper by ClickHouse itself; they are sent as they are.
* A classic mutation that calls `joinGet` reads a per-node Join table, which ClickHouse treats as
  non-deterministic on Replicated tables and refuses unless `allow_nondeterministic_mutations = 1`;
  `mutation_settings` sets it. Each replica evaluates a classic mutation itself; the Join table
  exists only on the job's node, so on other replicas such a mutation fails (loudly, through the
  replica-wide wait) rather than reading an empty copy. docs/scaling-out.md says what to use instead.
* `system.mutations` is per replica: the mutation wait reads
  `clusterAllReplicas(<name>, system.mutations)`, so a mutation is pending while any replica has
  not finished it, and a failure on any replica stops the wait.
"""

from __future__ import annotations

import re
from typing import Any

_PART = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_NAME = rf"(?:{_PART}(?:\.{_PART})*)"  # table, db.table, `db`.`table`
_CREATE = re.compile(
    rf"^(\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?(?:TABLE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY|DATABASE)\s+"
    rf"(?:IF\s+NOT\s+EXISTS\s+)?{_NAME})", re.IGNORECASE)
_DROP_TRUNCATE = re.compile(
    rf"^(\s*(?:DROP|TRUNCATE)\s+(?:TABLE|VIEW|DICTIONARY)\s+(?:IF\s+EXISTS\s+)?{_NAME})", re.IGNORECASE)
_TAIL_FORMS = re.compile(r"^\s*(?:EXCHANGE\s+TABLES|RENAME\s+TABLE)\s", re.IGNORECASE)
_ENGINE = re.compile(
    r"\bENGINE\s*=\s*(MergeTree|ReplacingMergeTree|SummingMergeTree|AggregatingMergeTree|CollapsingMergeTree|"
    r"VersionedCollapsingMergeTree)\b(\s*\(([^()]*)\))?", re.IGNORECASE)
_NODE_LOCAL = re.compile(r"\bENGINE\s*=\s*(?:Join|Memory|Set)\b", re.IGNORECASE)
_AS_SELECT = re.compile(r"\bAS\s*\(?\s*(?:SELECT|WITH)\b", re.IGNORECASE)
_CLASSIC_MUTATION = re.compile(r"^\s*ALTER\s+TABLE\s+\S+\s+(?:ON\s+CLUSTER\s+\S+\s+)?(?:UPDATE|DELETE)\b", re.IGNORECASE | re.DOTALL)
_MUTATIONS_FROM = re.compile(r"\bFROM\s+system\.mutations\b", re.IGNORECASE)


def _cluster(name: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$", name):
        from engine.errors import BadInput

        raise BadInput(f"CLICKHOUSE_CLUSTER {name!r}: use letters, digits, '_', '.' or '-'")
    return f"`{name}`"


def replicated_engine(match: re.Match[str]) -> str:
    engine, args = match.group(1), (match.group(3) or "").strip()
    return f"ENGINE = Replicated{engine}({args})"


def on_cluster(statement: str, cluster: str) -> str:
    """The statement as it must be sent to a cluster (unchanged when it needs nothing)."""
    if re.search(r"\bON\s+CLUSTER\b", statement, re.IGNORECASE):
        return statement
    name = _cluster(cluster)
    m = _CREATE.match(statement)
    if m:
        if re.search(r"\bTEMPORARY\b", m.group(1), re.IGNORECASE):
            return statement  # session-local by definition
        if re.search(r"\bTABLE\b", m.group(1), re.IGNORECASE) and (_NODE_LOCAL.search(statement) or _AS_SELECT.search(statement)):
            # A job's helper table (a Join for joinGet, a Memory table, one filled by CREATE ... AS
            # SELECT) lives on the node that runs the job. Creating it ON CLUSTER would leave empty
            # copies on the other nodes, and a classic mutation replayed there would silently read
            # them; node-local, such a mutation fails loudly on the other replicas instead (the
            # replica-wide mutation wait reports it).
            return statement
        out = statement[: m.end()] + f" ON CLUSTER {name}" + statement[m.end():]
        return _ENGINE.sub(replicated_engine, out)
    m = _DROP_TRUNCATE.match(statement)
    if m:
        return statement[: m.end()] + f" ON CLUSTER {name}" + statement[m.end():]
    if _TAIL_FORMS.match(statement):
        return statement.rstrip().rstrip(";") + f" ON CLUSTER {name}"
    return statement


def mutation_settings(statement: str) -> dict[str, Any]:
    """Per-statement settings a cluster needs: joinGet in a classic mutation of a Replicated table."""
    if _CLASSIC_MUTATION.match(statement) and "joinget(" in statement.lower():
        return {"allow_nondeterministic_mutations": 1}
    return {}


def replica_wide_mutations(query: str, cluster: str) -> str:
    """Read every replica's system.mutations; unqualify `system.mutations.<col>` references."""
    if not _MUTATIONS_FROM.search(query):
        return query
    _cluster(cluster)  # validated: it is written into the statement
    text = re.sub(r"\bsystem\.mutations\.(?=[A-Za-z_])", "", query)
    return _MUTATIONS_FROM.sub(f"FROM clusterAllReplicas('{cluster}', system.mutations)", text)
