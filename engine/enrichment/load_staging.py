"""Staging tables and the atomic move of a load into its real table.

A load is built aside and then made visible in one step, so a reader (Step D, Step E, the gates)
sees all of a file's new rows or none of them, and a kill -9 at any moment leaves the same:

1. validated rows go into a private staging table `_load_<table>_p<pid>_h<host>_<rand>` created
   `AS` the target (same columns, engine, sort key and settings);
2. the rows that are new (trades) or new/changed (dimension upserts) are copied into a second
   private table `<staging>_move` and merged into ONE part (`OPTIMIZE … FINAL`); when every
   staged trade is new (no id twice, none in the table: a first load), the staging table itself,
   its line column dropped, is merged instead, saving a copy of every row;
3. `ALTER TABLE target ATTACH PARTITION tuple() FROM <that table>` hard-links that one part into
   the target. Adding one part is one rename in the table's directory: it happened or it did not.
   (An `INSERT … SELECT` is not: it commits a part per block, which is how a killed load left
   1,056,384 of 3M rows behind.)

A process that dies leaves its staging tables behind; `sweep_stale` drops them at the next start,
but only those whose owner is gone: on embedded chDB the data directory is held by one process, so
every staging table not made by this process is stale; on a server, a table is stale when it was
made on this host by a pid that no longer runs (another host's loads are never touched).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import uuid
from collections.abc import Callable
from typing import Any

from engine.processes import pid_exists
from engine.crashpoints import crash_point
from engine.errors import OpsError
from engine.stores.clickhouse import ChdbClickHouse, ClickHouse, ClickHouseError, ident

PREFIX = "_load_"
_NAME = re.compile(r"^_load_(?P<table>[A-Za-z0-9_]+?)_p(?P<pid>\d+)_h(?P<host>[0-9a-f]{8})_[0-9a-f]{6}(_move|_raw)?$")
#: The staging table's own column: where the row was in the file (line, row or list index), so
#: duplicates are found by ClickHouse (spilling to disk) instead of a set in our memory.
LINE = "_line"
#: GROUP BY over every key of a big file spills to disk beyond this, so memory stays bounded.
GROUP_BY_SETTINGS = {"max_bytes_before_external_group_by": 256 * 1024 * 1024}
#: Parts of ~128k rows when copying staged rows: the default squashes into 1M-row blocks, hundreds
#: of MB of wide rows held and sorted at once (the OPTIMIZE that follows merges them, streaming).
INSERT_SETTINGS = {"max_insert_block_size": 131_072, "min_insert_block_size_rows": 131_072,
                   "min_insert_block_size_bytes": 64 * 1024 * 1024}
#: OPTIMIZE attempts to get the move table down to one part before the load is refused.
MERGE_ATTEMPTS = 3
#: Staged keys held in one IN set at most (trade ids: about 100 bytes each in ClickHouse's set).
#: Key checks of a bigger file run once per hash bucket of its keys, so their memory is bounded
#: whatever the file's size; every set is built from the staged side, never from the whole target,
#: so a small file loaded into a big table costs little memory too. (At 10x seed, one set of the
#: target's 24.5M ids took the load to 3.6 GB.)
SET_KEYS = 2_000_000


class LoadStopped(OpsError):
    """SIGTERM/SIGINT before the move: the staging tables were dropped, nothing was loaded."""


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def staging_name(table: str) -> str:
    return f"{PREFIX}{table}_p{os.getpid()}_h{_host_tag()}_{uuid.uuid4().hex[:6]}"



def is_stale(name: str, *, exclusive: bool) -> bool:
    """Whether staging table `name` belongs to a process that is gone (see the module doc)."""
    m = _NAME.match(name)
    if m is None:
        # Not our pattern (an older version's `_load_<table>_<hex>`): ownerless, so stale only
        # where no other process can be using the store.
        return exclusive
    pid = int(m["pid"])
    if exclusive:
        return pid != os.getpid()
    return m["host"] == _host_tag() and pid != os.getpid() and not pid_exists(pid)


def sweep_stale(ch: ClickHouse) -> list[str]:
    """Drop staging tables left by dead processes; returns their names (for a log line)."""
    names = [r[0] for r in ch.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {p:String})",
        {"db": ch.database, "p": PREFIX},
    ).rows]
    exclusive = isinstance(ch, ChdbClickHouse)
    dropped = []
    for name in names:
        if is_stale(name, exclusive=exclusive):
            ch.command(f"DROP TABLE IF EXISTS $db.{ident(name)}")
            dropped.append(name)
    return dropped


class Staging:
    """A private copy of the target's structure; dropped on exit whatever happened."""

    def __init__(self, ch: ClickHouse, table: str, key: str, columns: list[str], compare: list[str],
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.ch = ch
        self.table = table
        self.key = key
        self.columns = columns
        self.compare = compare
        self.should_stop = should_stop or (lambda: False)
        self.name = staging_name(table)
        self.move_name = f"{self.name}_move"
        self.rows = 0
        self.swept: list[str] = []
        self.has_duplicates = False

    def __enter__(self) -> Staging:
        self.swept = sweep_stale(self.ch)
        self.ch.command(f"CREATE TABLE $db.{ident(self.name)} AS $db.{ident(self.table)}")
        self.ch.command(f"ALTER TABLE $db.{ident(self.name)} ADD COLUMN {LINE} UInt64 DEFAULT 0")
        return self

    def __exit__(self, *exc: object) -> None:
        for name in (self.move_name, f"{self.name}_raw", self.name):
            try:
                self.ch.command(f"DROP TABLE IF EXISTS $db.{ident(name)}")
            except ClickHouseError:
                pass  # the next start's sweep drops it

    @property
    def ref(self) -> str:
        return f"$db.{ident(self.name)}"

    def add(self, rows: list[tuple[Any, ...]] | list[list[Any]], lines: list[int] | None = None) -> None:
        """Stage rows (in `columns` order); `lines` numbers them for the duplicate check."""
        if rows:
            if lines is None:
                self.ch.insert_rows(self.name, self.columns, rows)
            else:
                self.ch.insert_rows(self.name, [*self.columns, LINE],
                                    [(*row, n) for row, n in zip(rows, lines, strict=True)])
            self.rows += len(rows)
            crash_point("load_staged_chunk")

    def _dup_keys(self) -> str:
        return f"SELECT {self.key} FROM {self.ref} GROUP BY {self.key} HAVING count() > 1"

    def buckets(self) -> list[str]:
        """Predicates splitting the staged keys into sets of at most SET_KEYS (one: "1")."""
        n = max(1, math.ceil(self.count() / SET_KEYS))
        return ["1"] if n == 1 else [f"cityHash64({self.key}) % {n} = {i}" for i in range(n)]

    def duplicates(self, limit: int) -> tuple[int, list[tuple[str, int, int]]]:
        """Rows whose key an earlier row of the file has: (how many, the first `limit` of them as
        (key, line, the first copy's line)), in file order. The first copy stays valid. Copies of a
        key share its bucket, so each bucket is checked on its own."""
        total, found = 0, []
        for bucket in self.buckets():
            n = int(self.ch.query(
                f"SELECT sum(n - 1) FROM (SELECT count() AS n FROM {self.ref} WHERE {bucket} GROUP BY {self.key} "
                "HAVING n > 1)", settings=GROUP_BY_SETTINGS).scalar() or 0)
            if not n:
                continue
            total += n
            found += self.ch.query(
                f"SELECT s.{self.key}, s.{LINE}, d.first FROM {self.ref} AS s INNER JOIN ("
                f"SELECT {self.key}, min({LINE}) AS first FROM {self.ref} WHERE {bucket} GROUP BY {self.key} "
                f"HAVING count() > 1) AS d ON s.{self.key} = d.{self.key} WHERE {bucket} AND s.{LINE} != d.first "
                f"ORDER BY s.{LINE} LIMIT {int(limit)}", settings=GROUP_BY_SETTINGS).rows
        self.has_duplicates = total > 0
        found.sort(key=lambda r: int(r[1]))
        return total, [(str(k), int(n), int(f)) for k, n, f in found[:limit]]

    def _in_target(self, bucket: str, columns: str) -> str:
        """The target's rows (`columns`) whose key is staged in `bucket`: a set of at most the
        bucket's size, built from the staged side."""
        return (f"(SELECT {columns} FROM $db.{ident(self.table)} WHERE {self.key} IN "
                f"(SELECT {self.key} FROM {self.ref} WHERE {bucket}))")

    def _first_copies(self) -> str:
        """A filter keeping only the first copy of a key staged more than once (`--skip-invalid`)."""
        if not self.has_duplicates:
            return "1"
        return (f"({self.key}, {LINE}) NOT IN (SELECT {self.key}, {LINE} FROM {self.ref} WHERE {self.key} IN "
                f"({self._dup_keys()}) AND ({self.key}, {LINE}) NOT IN (SELECT {self.key}, min({LINE}) FROM "
                f"{self.ref} WHERE {self.key} IN ({self._dup_keys()}) GROUP BY {self.key}))")

    def count(self) -> int:
        return int(self.ch.scalar(f"SELECT count() FROM {self.ref}") or 0)

    def check_stop(self) -> None:
        if self.should_stop():
            raise LoadStopped("stopped before the move: nothing was loaded (the staging tables were dropped)")

    def conflicts(self) -> int:
        """Trades only: staged ids already in the table with different values. Fills are immutable,
        so they are not overwritten — but the operator must hear about it."""
        if self._target_empty():
            return 0
        cols = ", ".join(c for c in self.columns if c != "canonical_category")
        content = f"cityHash64(toString(tuple({cols})))"
        first = self._first_copies()
        return sum(int(self.ch.scalar(
            f"SELECT count() FROM {self.ref} WHERE {bucket} AND {self.key} IN {self._in_target(bucket, self.key)} "
            f"AND ({self.key}, {content}) NOT IN {self._in_target(bucket, f'{self.key}, {content}')} AND {first}"
        ) or 0) for bucket in self.buckets())

    def _target_empty(self) -> bool:
        return not int(self.ch.scalar(f"SELECT count() FROM $db.{ident(self.table)}") or 0)

    def _new_rows_filter(self, bucket: str = "1") -> str:
        if not self.compare:
            return f"{bucket} AND {self.key} NOT IN {self._in_target(bucket, self.key)}"
        # Dimensions (markets, resolutions): small files and tables, one set of the target's rows.
        # toString(tuple(...)): a NULL (end_date) must hash like any value, not make the hash NULL
        content = "cityHash64(toString(tuple(" + ", ".join(self.compare) + ")))"
        target = f"$db.{ident(self.table)}"
        return f"({self.key}, {content}) NOT IN (SELECT {self.key}, {content} FROM {target} FINAL)"

    def _active_parts(self, table: str) -> int:
        return int(self.ch.scalar(
            "SELECT count() FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active",
            {"db": self.ch.database, "t": table},
        ) or 0)

    def _merge_to_one_part(self, name: str) -> None:
        ref = f"$db.{ident(name)}"
        for _ in range(MERGE_ATTEMPTS):
            if self._active_parts(name) <= 1:
                break
            self.ch.command(f"OPTIMIZE TABLE {ref} FINAL")
        if self._active_parts(name) != 1:
            raise OpsError(f"could not merge the load into one part for an atomic move into {self.table}; "
                           "nothing was loaded", hint="check free disk space, then load the file again")

    def _attach(self, name: str) -> None:
        crash_point("load_before_attach")
        self.check_stop()  # the last moment a stop still leaves the target untouched
        self.ch.command(f"ALTER TABLE $db.{ident(self.table)} ATTACH PARTITION tuple() FROM $db.{ident(name)}")
        crash_point("load_after_attach")

    def _all_new(self) -> bool:
        """Trades whose every staged row is new: no copy of a key in the file, none in the table."""
        if self.compare or self.has_duplicates:
            return False
        if self._target_empty():
            return True
        return not any(int(self.ch.scalar(f"SELECT count() FROM {self._in_target(bucket, self.key)}") or 0)
                       for bucket in self.buckets())

    def move_new(self) -> int:
        """Make the staged rows that are new (trades) or new/changed (dims) visible in the target,
        atomically (module doc); returns how many."""
        self.check_stop()
        if self._all_new():
            # The common first load of a file: the staging table itself becomes the one part (its
            # line column dropped), no copy of every row through a second table.
            new = self.count()
            if not new:
                return 0
            self.ch.command(f"ALTER TABLE {self.ref} DROP COLUMN {LINE}", settings={"mutations_sync": 2})
            crash_point("load_move_built")
            self._merge_to_one_part(self.name)
            self._attach(self.name)
            return new
        cols = ", ".join(self.columns)
        move = f"$db.{ident(self.move_name)}"
        self.ch.command(f"CREATE TABLE {move} AS $db.{ident(self.table)}")
        first = self._first_copies()
        for bucket in self.buckets() if not self.compare else ["1"]:
            self.ch.command(f"INSERT INTO {move} ({cols}) SELECT {cols} FROM {self.ref} "
                            f"WHERE {self._new_rows_filter(bucket)} AND {first}", settings=INSERT_SETTINGS)
        crash_point("load_move_built")
        new = int(self.ch.scalar(f"SELECT count() FROM {move}") or 0)
        if not new:
            return 0
        self._merge_to_one_part(self.move_name)
        self._attach(self.move_name)
        return new
