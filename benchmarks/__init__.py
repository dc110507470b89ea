"""Reproducible performance runs that print figures and ratios (never pass/fail)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory for one benchmark's stores, removed afterwards: a seed-scale run
    leaves gigabytes behind (the attach benchmark ~8 GB), and a disk that fills up slows every
    later measurement. OPSBENCH_KEEP=1 keeps it, to look at the stores."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if not os.environ.get("OPSBENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
