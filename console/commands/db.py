from __future__ import annotations

import argparse

import anyio

from console.commands import settings_from
from engine.stores.postgres import Postgres


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("db", help="Postgres schema: apply or list migrations")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    m = dbsub.add_parser("migrate", help="apply pending migrations (each once, recorded in schema_migrations)")
    m.set_defaults(func=migrate)
    s = dbsub.add_parser("status", help="list applied and pending migrations")
    s.set_defaults(func=status)


def migrate(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with Postgres(settings_from(args)) as pg:
            applied = await pg.migrate()
            if applied:
                for m in applied:
                    print(f"applied {m.version:04d}_{m.name}")
            else:
                print("nothing to apply: the schema is up to date")

    anyio.run(go)
    return 0


def status(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with Postgres(settings_from(args)) as pg:
            applied, pending = await pg.migration_status()
            print(f"applied: {', '.join(f'{v:04d}' for v in applied) or 'none'}")
            print(f"pending: {', '.join(f'{m.version:04d}_{m.name}' for m in pending) or 'none'}")

    anyio.run(go)
    return 0
