"""What the figures were measured on: printed with every report."""

from __future__ import annotations

import os
import platform

import psutil


def machine_line() -> str:
    import chdb

    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), {mem:.1f} GiB RAM, "
        f"Python {platform.python_version()}, chDB {chdb.__version__} (ClickHouse {chdb.engine_version}), "
        f"{platform.system()} {platform.release()}"
    )
