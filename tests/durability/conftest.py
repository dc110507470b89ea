"""Fixtures shared by the Step D crash and signal tests: one uninterrupted reference run per demo
scale per session (the demo data is deterministic for a seed, so every test compares against it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.durability.stepd_procs import fresh_pg_database, reference


@pytest.fixture(scope="session")
def reference_small(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> dict[str, Any]:
    return reference(tmp_path_factory.mktemp("ref-small"), fresh_pg_database(pg_server), "small")


@pytest.fixture(scope="session")
def reference_medium(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> dict[str, Any]:
    return reference(tmp_path_factory.mktemp("ref-medium"), fresh_pg_database(pg_server), "medium")
