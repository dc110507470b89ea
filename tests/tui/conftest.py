"""Console tests drive the real app with Pilot. Waiting is on the app's own state
(`JobScreen.wait_for`), never on sleeps; the global pytest timeout catches a hang."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio
